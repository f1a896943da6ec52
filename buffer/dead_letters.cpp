#include "buffer/dead_letters.h"

#include <fmt/format.h>

#include "buffer/dead_letter_table.h"
#include "buffer/sqlite_journal.h"

namespace gw::buffer {
namespace {

/// Length of the valid UTF-8 sequence of a non-ASCII character at s[i], or 0.
std::size_t utf8Length(std::string_view s, std::size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  std::size_t n = 0;
  std::uint32_t cp = 0;
  if (b >= 0xC2 && b <= 0xDF) {
    n = 2, cp = b & 0x1F;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3, cp = b & 0x0F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4, cp = b & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (c & 0x3F);
  }
  // Overlong forms, surrogates, past U+10FFFF, and C1 controls (U+0080..U+009F) are escaped.
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
      (cp >= 0xD800 && cp <= 0xDFFF) || cp < 0xA0)
    return 0;
  return n;
}

}  // namespace

std::string escapeExcerpt(std::string_view payload, std::size_t max_bytes) {
  std::string out;
  std::size_t i = 0;
  while (i < payload.size() && i < max_bytes) {
    const char c = payload[i];
    const auto u = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (u >= 0x20 && u < 0x7F) {
      out += c;
    } else if (const std::size_t n = u >= 0x80 ? utf8Length(payload, i) : 0; n > 0) {
      if (i + n > max_bytes) break;  // a character is never cut in two
      out.append(payload.substr(i, n));
      i += n;
      continue;
    } else {
      out += fmt::format("\\x{:02x}", u);
    }
    ++i;
  }
  if (i < payload.size()) out += "...";
  return out;
}

std::size_t deadLetterBytes(const DeadLetter& d) {
  return d.source.size() + d.where.size() + d.reason.size() + d.device.size() + d.excerpt.size();
}

namespace detail {

int DeadLetterTable::prepare(sqlite3* db) {
  int rc = insert_.prepare(
      db, "INSERT INTO dead(t, source, w, reason, device, size, x) VALUES(?, ?, ?, ?, ?, ?, ?)");
  // Keeps the newest kDeadLetterMaxRows whose text adds up to at most kDeadLetterMaxBytes.
  if (rc == SQLITE_OK)
    rc = prune_.prepare(
        db, fmt::format("DELETE FROM dead WHERE id < (SELECT coalesce(min(id), 1 << 62) FROM "
                        "(SELECT id, sum(length(CAST(source AS BLOB)) + length(CAST(w AS BLOB)) "
                        "+ length(CAST(reason AS BLOB)) + length(CAST(device AS BLOB)) + "
                        "length(CAST(x AS BLOB))) OVER (ORDER BY id DESC) AS b FROM dead ORDER "
                        "BY id DESC LIMIT {}) WHERE b <= {})",
                        kDeadLetterMaxRows, kDeadLetterMaxBytes));
  if (rc == SQLITE_OK)
    rc = read_.prepare(db,
                       "SELECT id, t, source, w, reason, device, size, x FROM dead ORDER BY id "
                       "DESC LIMIT ?");
  return rc;
}

void DeadLetterTable::add(DeadLetter letter) {
  if (pending_.size() >= kDeadLetterMaxRows) pending_.pop_front();
  if (letter.where.size() > kDeadLetterMaxWhere) letter.where.resize(kDeadLetterMaxWhere);
  if (letter.device.size() > kDeadLetterMaxDevice) letter.device.resize(kDeadLetterMaxDevice);
  pending_.push_back(std::move(letter));
}

int DeadLetterTable::write() {
  int rc = SQLITE_OK;
  for (const auto& d : pending_) {
    sqlite::ResetGuard guard(insert_);
    rc = insert_.bindAll(d.time, std::string_view(d.source), std::string_view(d.where),
                         std::string_view(d.reason), std::string_view(d.device),
                         static_cast<std::int64_t>(d.size), std::string_view(d.excerpt));
    if (rc == SQLITE_OK) rc = insert_.step();
    if (rc != SQLITE_DONE) return rc;
  }
  return sqlite::run(prune_);
}

int DeadLetterTable::read(std::size_t limit, std::vector<DeadLetter>& out) {
  out.clear();
  for (auto it = pending_.rbegin(); it != pending_.rend() && out.size() < limit; ++it)
    out.push_back(*it);
  if (out.size() >= limit) return SQLITE_OK;
  sqlite::ResetGuard guard(read_);
  int rc = read_.bindAll(static_cast<std::int64_t>(limit - out.size()));
  while (rc == SQLITE_OK && (rc = read_.step()) == SQLITE_ROW) {
    DeadLetter& d = out.emplace_back();
    d.id = static_cast<std::uint64_t>(read_.columnInt(0));
    d.time = read_.columnInt(1);
    d.source = read_.columnText(2);
    d.where = read_.columnText(3);
    d.reason = read_.columnText(4);
    d.device = read_.columnText(5);
    d.size = static_cast<std::uint64_t>(std::max<std::int64_t>(0, read_.columnInt(6)));
    d.excerpt = read_.columnText(7);
    rc = SQLITE_OK;
  }
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

}  // namespace detail

void detail::SqliteJournal::addDeadLetter(DeadLetter letter) {
  dead_letters_.add(std::move(letter));
}

std::vector<DeadLetter> detail::SqliteJournal::deadLetters(std::size_t limit) {
  std::vector<DeadLetter> out;
  if (const int rc = dead_letters_.read(limit, out); rc != SQLITE_OK)
    logLimited(read_log_, "journal {}: reading the dead letters failed: {}", path_,
               sqlite::describe(db_.get(), rc));
  return out;
}

}  // namespace gw::buffer
