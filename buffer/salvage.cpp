// Salvage of a damaged journal: the SQLite file format read directly (sqlite.org/fileformat2),
// page by page. Every page that parses as a table b-tree leaf gives its cells; a cell whose
// record has the shape of a journal row (a segment table r_<n>, or table r before version 5) or
// a series row (table series) is kept, whichever table the page belonged to. Pages
// overwritten or cut off are skipped; nothing depends on the b-tree's interior pages or on
// page 1. The -wal's newest committed version of a page replaces the file's.
#include "buffer/salvage.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "buffer/sqlite_journal.h"
#include "core/log.h"

namespace gw::buffer {
namespace {

namespace fs = std::filesystem;

std::string readAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return {};
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         p[3];
}
std::uint16_t be16(const unsigned char* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

// SQLite's varint: big-endian groups of 7 bits, the 9th byte whole. Returns bytes used, 0 if cut.
size_t varint(const unsigned char* p, const unsigned char* end, std::uint64_t& v) {
  v = 0;
  for (size_t i = 0; i < 9; ++i) {
    if (p + i >= end) return 0;
    if (i == 8) {
      v = (v << 8) | p[i];
      return 9;
    }
    v = (v << 7) | (p[i] & 0x7f);
    if ((p[i] & 0x80) == 0) return i + 1;
  }
  return 0;
}

struct Field {
  enum Type { kNull, kInt, kReal, kText, kBlob } type = kNull;
  std::int64_t i = 0;
  double d = 0;
  std::string_view bytes;
};

// A record (header of serial types, then the values). False when it does not parse exactly.
bool parseRecord(const unsigned char* p, size_t n, std::vector<Field>& out) {
  out.clear();
  const unsigned char* end = p + n;
  std::uint64_t header = 0;
  const size_t hl = varint(p, end, header);
  if (hl == 0 || header < hl || header > n) return false;
  const unsigned char* h = p + hl;
  const unsigned char* body = p + header;
  while (h < p + header) {
    std::uint64_t t = 0;
    const size_t l = varint(h, p + header, t);
    if (l == 0) return false;
    h += l;
    Field f;
    size_t len = 0;
    if (t == 0) {
      f.type = Field::kNull;
    } else if (t <= 6 || t == 8 || t == 9) {
      static constexpr size_t kLen[] = {0, 1, 2, 3, 4, 6, 8};
      len = t <= 6 ? kLen[t] : 0;
      f.type = Field::kInt;
      if (t == 8 || t == 9) {
        f.i = t == 8 ? 0 : 1;
      } else {
        if (body + len > end) return false;
        std::uint64_t u = body[0] & 0x80 ? ~std::uint64_t{0} : 0;  // sign-extended
        for (size_t k = 0; k < len; ++k) u = (u << 8) | body[k];
        f.i = static_cast<std::int64_t>(u);
      }
    } else if (t == 7) {
      len = 8;
      if (body + len > end) return false;
      std::uint64_t u = 0;
      for (size_t k = 0; k < 8; ++k) u = (u << 8) | body[k];
      f.type = Field::kReal;
      std::memcpy(&f.d, &u, sizeof f.d);
    } else if (t >= 12) {
      len = (t - 12) / 2;
      if (len > static_cast<size_t>(end - body)) return false;
      f.type = t % 2 == 0 ? Field::kBlob : Field::kText;
      f.bytes = std::string_view(reinterpret_cast<const char*>(body), len);
    } else {
      return false;  // 10, 11: reserved
    }
    body += len;
    out.push_back(f);
  }
  return body == end;
}

struct Row {
  std::int64_t s = 0, t = 0, c = 0, k = 0;
  double v = 0;
  std::optional<std::int64_t> d;
  std::string x;
  bool has_x = false;
};

bool isInt(const Field& f) { return f.type == Field::kInt; }

class Pages {
 public:
  Pages(const fs::path& file) : db_(readAll(file)) {
    const auto* h = reinterpret_cast<const unsigned char*>(db_.data());
    if (db_.size() >= 100 && std::memcmp(h, "SQLite format 3", 16) == 0) {
      const std::uint32_t ps = be16(h + 16) == 1 ? 65536 : be16(h + 16);
      if (ps >= 512 && ps <= 65536 && (ps & (ps - 1)) == 0) page_size_ = ps;
      reserved_ = h[20];
    }
    readWal(withWal(file));
    if (page_size_ == 0) page_size_ = guessPageSize();  // page 1 overwritten, no -wal
  }

  size_t pageSize() const { return page_size_; }
  size_t usable() const { return page_size_ - reserved_; }
  /// Page numbers to read: the file's, then any the -wal adds beyond it (a damaged frame header
  /// cannot make this a loop over billions of empty pages).
  std::vector<std::uint64_t> numbers() const {
    std::vector<std::uint64_t> n;
    const std::uint64_t in_file = db_.size() / page_size_;
    for (std::uint64_t i = 1; i <= in_file; ++i) n.push_back(i);
    for (const auto& [no, data] : wal_)
      if (no > in_file) n.push_back(no);
    return n;
  }
  bool empty() const { return db_.empty() && wal_.empty(); }
  // Page `no` (from 1), or empty when beyond the file.
  std::string_view page(std::uint64_t no) const {
    if (auto it = wal_.find(no); it != wal_.end()) return it->second;
    const std::uint64_t at = (no - 1) * page_size_;
    if (at + page_size_ > db_.size()) return {};
    return std::string_view(db_).substr(at, page_size_);
  }

 private:
  static fs::path withWal(fs::path p) { return p += "-wal"; }

  // Whether the bytes at `p` look like the start of a b-tree page of `ps` bytes: a page type,
  // its cell pointer array and cell content area inside the page, every cell pointer in that
  // area.
  static bool looksLikePage(const unsigned char* p, size_t ps) {
    const unsigned char type = p[0];
    if (type != 0x02 && type != 0x05 && type != 0x0a && type != 0x0d) return false;
    const size_t hdr = type == 0x02 || type == 0x05 ? 12 : 8;
    const size_t ncells = be16(p + 3);
    const size_t content = be16(p + 5) == 0 ? 65536 : be16(p + 5);
    if (hdr + 2 * ncells > ps || content > ps || (ncells > 0 && content < hdr + 2 * ncells))
      return false;
    for (size_t i = 0; i < ncells; ++i) {
      const size_t at = be16(p + hdr + 2 * i);
      if (at < content || at >= ps) return false;
    }
    return true;
  }

  // The page size when neither page 1 nor the -wal gives it (issue 16: new journals have 2 KiB
  // pages, older ones 4 KiB): for each candidate, the page starts that look like b-tree pages.
  // Any multiple of the real size also finds pages at each of its starts, and a divisor finds
  // the real pages (plus the odd stretch of row bytes that looks like one), but a size larger
  // than the real one misses the pages in between: the largest candidate that finds nearly as
  // many as the best one is the real size.
  size_t guessPageSize() const {
    const auto* d = reinterpret_cast<const unsigned char*>(db_.data());
    std::vector<std::pair<size_t, size_t>> found;  // (page size, pages found)
    size_t best = 0;
    for (size_t ps = 512; ps <= 65536; ps *= 2) {
      size_t n = 0;
      for (size_t at = ps; at + ps <= db_.size(); at += ps) n += looksLikePage(d + at, ps) ? 1 : 0;
      found.emplace_back(ps, n);
      best = std::max(best, n);
    }
    size_t guess = 4096;  // SQLite's default, the journal's before 2 KiB pages
    if (best == 0) return guess;
    for (const auto& [ps, n] : found)
      if (n * 10 >= best * 9) guess = ps;
    return guess;
  }

  // Frames of the WAL's current generation (the header's salts) up to its last commit frame.
  void readWal(const fs::path& path) {
    wal_bytes_ = readAll(path);
    const auto* w = reinterpret_cast<const unsigned char*>(wal_bytes_.data());
    if (wal_bytes_.size() < 32 || (be32(w) & 0xfffffffe) != 0x377f0682) return;
    const std::uint32_t ps = be32(w + 8);
    if (ps < 512 || ps > 65536 || (ps & (ps - 1)) != 0) return;
    if (page_size_ != 0 && ps != page_size_) return;
    page_size_ = ps;
    std::map<std::uint64_t, std::string_view> pending;
    for (size_t at = 32; at + 24 + ps <= wal_bytes_.size(); at += 24 + ps) {
      const unsigned char* f = w + at;
      if (std::memcmp(f + 8, w + 16, 8) != 0) break;  // salts: an older generation from here on
      if (be32(f) == 0) break;                        // no page 0: a damaged frame
      pending[be32(f)] = std::string_view(wal_bytes_).substr(at + 24, ps);
      if (be32(f + 4) != 0) {  // a commit frame: what came before it is committed
        for (auto& [no, data] : pending) wal_[no] = data;
        pending.clear();
      }
    }
  }

  std::string db_, wal_bytes_;
  std::map<std::uint64_t, std::string_view> wal_;
  size_t page_size_ = 0;
  size_t reserved_ = 0;
};

// The floor in an index leaf page of table meta: a cell whose record is ('floor', integer).
// The floor only grows, so the largest one found (an older copy of the page may linger in the
// -wal or a free page) is the newest.
void findFloor(const unsigned char* base, size_t page_size, size_t hdr, size_t max_local,
               std::uint64_t& floor) {
  const std::uint16_t ncells = be16(base + hdr + 3);
  if (hdr + 8 + 2u * ncells > page_size) return;
  const unsigned char* end = base + page_size;
  std::vector<Field> rec;
  for (std::uint16_t i = 0; i < ncells; ++i) {
    const std::uint16_t off = be16(base + hdr + 8 + 2 * i);
    if (off < hdr + 8 || off >= page_size) continue;
    const unsigned char* p = base + off;
    std::uint64_t size = 0;
    const size_t l = varint(p, end, size);
    if (l == 0 || size > max_local || size > static_cast<size_t>(end - p - l)) continue;
    if (!parseRecord(p + l, size, rec)) continue;
    if (rec.size() == 2 && rec[0].type == Field::kText && rec[0].bytes == "floor" &&
        isInt(rec[1]) && rec[1].i > 0)
      floor = std::max(floor, static_cast<std::uint64_t>(rec[1].i));
  }
}

}  // namespace

SalvageReport salvageInto(const fs::path& file, Journal& into) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec))
    throw JournalError(fmt::format("{}: not a file", file.string()));
  Pages pages(file);
  if (pages.empty()) throw JournalError(fmt::format("{}: empty or unreadable", file.string()));

  SalvageReport rep;
  const std::vector<std::uint64_t> numbers = pages.numbers();
  rep.pages = numbers.size();
  std::map<std::int64_t, Row> rows;  // by seq
  std::unordered_map<std::int64_t, Series> series;
  std::vector<Field> rec;
  const size_t usable = pages.usable();
  const size_t max_local = usable - 35;  // larger payloads spill to overflow pages

  for (const std::uint64_t no : numbers) {
    const std::string_view page = pages.page(no);
    if (page.empty()) continue;
    const auto* base = reinterpret_cast<const unsigned char*>(page.data());
    const size_t hdr = no == 1 ? 100 : 0;
    const unsigned char type = base[hdr];
    if (type == 0x0a) {  // an index leaf: table meta (WITHOUT ROWID) holds ('floor', seq)
      findFloor(base, page.size(), hdr, max_local, rep.floor);
      continue;
    }
    if (type != 0x0d) continue;  // only table leaves hold rows
    const std::uint16_t ncells = be16(base + hdr + 3);
    if (hdr + 8 + 2u * ncells > page.size()) {
      ++rep.bad_pages;
      continue;
    }
    bool bad = false;
    for (std::uint16_t i = 0; i < ncells; ++i) {
      const std::uint16_t off = be16(base + hdr + 8 + 2 * i);
      const unsigned char* end = base + page.size();
      if (off < hdr + 8 || off >= page.size()) {
        bad = true;
        continue;
      }
      const unsigned char* p = base + off;
      std::uint64_t size = 0, rowid = 0;
      size_t l = varint(p, end, size);
      if (l == 0) {
        bad = true;
        continue;
      }
      p += l;
      if ((l = varint(p, end, rowid)) == 0) {
        bad = true;
        continue;
      }
      p += l;
      if (size > max_local || size > static_cast<size_t>(end - p)) continue;  // overflow: not ours
      if (!parseRecord(p, size, rec)) {
        bad = true;
        continue;
      }
      const auto seq = static_cast<std::int64_t>(rowid);
      // A row of r_<n> (or r): (seq alias NULL, s, t, v, d, c, x[, k]); k missing in rows older
      // than version 3. A segment emptied whole leaves its rows in free pages: below the floor.
      if ((rec.size() == 8 || rec.size() == 7) && rec[0].type == Field::kNull && isInt(rec[1]) &&
          isInt(rec[2]) &&
          (rec[3].type == Field::kNull || rec[3].type == Field::kReal || isInt(rec[3])) &&
          (rec[4].type == Field::kNull || isInt(rec[4])) && isInt(rec[5]) &&
          (rec[6].type == Field::kNull || rec[6].type == Field::kBlob) &&
          (rec.size() == 7 || isInt(rec[7])) && seq > 0) {
        Row r;
        r.s = rec[1].i;
        r.t = rec[2].i;
        r.v = rec[3].type == Field::kNull   ? std::numeric_limits<double>::quiet_NaN()
              : rec[3].type == Field::kReal ? rec[3].d
                                            : static_cast<double>(rec[3].i);
        if (rec[4].type != Field::kNull) r.d = rec[4].i;
        r.c = rec[5].i;
        r.has_x = rec[6].type == Field::kBlob;
        r.x.assign(rec[6].bytes);
        r.k = rec.size() == 8 ? rec[7].i : 0;
        rows[seq] = std::move(r);
      } else if (rec.size() == 4 && rec[0].type == Field::kNull && rec[1].type == Field::kText &&
                 rec[2].type == Field::kText && rec[3].type == Field::kBlob) {
        Series s{std::string(rec[1].bytes), std::string(rec[2].bytes), {}};
        if (detail::decodeTags(rec[3].bytes, s.tags)) series[seq] = std::move(s);
      }
    }
    if (bad) ++rep.bad_pages;
  }

  constexpr size_t kBatch = 5000;
  const auto commit = [&] {
    if (!into.commit())
      throw JournalError("the live journal refused the salvaged rows (commit failed; see above)");
  };
  for (const auto& [seq, r] : rows) {
    if (static_cast<std::uint64_t>(seq) <= rep.floor) {  // deleted: left in a free page
      ++rep.below_floor;
      continue;
    }
    if (rep.first_seq == 0) rep.first_seq = static_cast<std::uint64_t>(seq);
    rep.last_seq = static_cast<std::uint64_t>(seq);
    auto s = series.find(r.s);
    if (s == series.end()) {
      ++rep.no_series;
      continue;
    }
    const SeriesId id = into.internSeries(s->second);
    Nanos event = 0;
    double value = 0;
    std::uint8_t ref = 0;
    if (r.k == detail::kRowReading && !r.has_x &&
        detail::expandReading(r.t, r.v, r.c, r.d ? &*r.d : nullptr, event, value, ref)) {
      std::optional<Nanos> device;
      if (r.d)
        device = static_cast<Nanos>(static_cast<std::uint64_t>(event) -
                                    static_cast<std::uint64_t>(*r.d));
      into.append(id, value, event, device, static_cast<TimeReference>(ref));
      ++rep.readings;
    } else if (r.k == detail::kRowAggregate && r.d && r.has_x) {
      WindowStats w;
      if (!detail::expandAggregate(r.t, *r.d, r.c, w.start, w.size) ||
          !detail::decodeWindow(r.x, w)) {
        ++rep.undecodable;
        continue;
      }
      into.appendAggregate(id, w);
    } else if (r.k == detail::kRowAlert && r.has_x) {
      into.appendAlert(id, r.t, r.v, r.x);
    } else {
      ++rep.undecodable;
      continue;
    }
    ++rep.records;
    ++rep.appended;
    if (into.pending() >= kBatch) commit();
  }
  commit();
  return rep;
}

}  // namespace gw::buffer
