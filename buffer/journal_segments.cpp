// Rows in segments (schema 5, issue 16). A row-range DELETE writes every leaf page it empties
// again (to the WAL, then to the file at the checkpoint), about a second after the rows were
// written: that doubled the bytes written per reading. The rows go instead into segment tables
// r_<n>, each a contiguous range of seqs; retention empties a segment whole with a DELETE without
// WHERE, which SQLite turns into freeing its pages (secure_delete is off: no page is rewritten).
// Emptied tables are kept and reused, so the schema only grows with the backlog. The caps that
// must drop unsent rows drop the oldest whole segment (only within the newest one when it is the
// last one left).
#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <string>

#include "buffer/sqlite_journal.h"

namespace gw::buffer::detail {
namespace {

// A segment closes at segment_rows rows (JournalOptions::segment_rows; by default 65,536, about
// 2.5 MB and 6.5 s at 10,000 readings/s, fewer when buffer.max_size is small so that the cap
// still has whole segments to drop), or after kSegmentSpan once some of its rows were confirmed,
// so that at a low rate confirmed rows do not wait for a full segment.
constexpr std::uint64_t kDefaultSegmentRows = 65536;
constexpr std::uint64_t kMinSegmentRows = 256;
constexpr Nanos kSegmentSpan = 60 * kNanosPerSecond;
// Emptied tables kept for reuse; more are dropped (an empty table keeps two pages in use, its
// root and its index's, which counts against a small max_size).
constexpr size_t kMaxSpareSegments = 2;

}  // namespace

OpenResult SqliteJournal::loadSegments(std::uint64_t stored_floor) {
  if (options_.segment_rows > 0) {
    segment_rows_ = options_.segment_rows;
  } else {
    // A segment is at most ~1/16 of max_size (at ~32 bytes a row).
    segment_rows_ =
        options_.max_size_bytes > 0 ? options_.max_size_bytes / 512 : kDefaultSegmentRows;
    segment_rows_ = std::clamp(segment_rows_, kMinSegmentRows, kDefaultSegmentRows);
  }
  std::vector<std::unique_ptr<Segment>> live;
  int rc;
  {
    Stmt s;
    if ((rc = s.prepare(db_.get(),
                        "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB "
                        "'r_[0-9]*'",
                        false)) != SQLITE_OK)
      return failed(rc, "loading segments");
    while ((rc = s.step()) == SQLITE_ROW) {
      const std::string_view name = s.columnText(0);
      int n = -1;
      const auto [end, ec] = std::from_chars(name.data() + 2, name.data() + name.size(), n);
      if (ec != std::errc() || end != name.data() + name.size() || n < 0)
        return {Outcome::kCorrupt, fmt::format("unexpected table {}", name)};
      auto seg = std::make_unique<Segment>();
      seg->n = n;
      live.push_back(std::move(seg));
    }
    if (rc != SQLITE_DONE) return failed(rc, "loading segments");
  }
  const Nanos now = clock_();
  for (auto& seg : live) {
    Stmt s;
    if ((rc = s.prepare(db_.get(), fmt::format("SELECT min(seq), max(seq) FROM r_{}", seg->n),
                        false)) != SQLITE_OK ||
        (rc = s.step()) != SQLITE_ROW)
      return failed(rc, fmt::format("loading segment r_{}", seg->n));
    if (s.columnType(0) != SQLITE_NULL) {
      const std::int64_t lo = s.columnInt(0), hi = s.columnInt(1);
      if (lo < 1 || static_cast<std::uint64_t>(lo) <= stored_floor)
        return {Outcome::kCorrupt, fmt::format("segment r_{}: seq range {}..{} below floor {}",
                                               seg->n, lo, hi, stored_floor)};
      seg->first = static_cast<std::uint64_t>(lo);
      seg->last = static_cast<std::uint64_t>(hi);
    }
    seg->opened = now;
    if ((rc = prepareSegment(*seg)) != SQLITE_OK)
      return failed(rc, fmt::format("preparing statements of segment r_{}", seg->n));
  }
  for (auto& seg : live) {
    if (seg->rows() == 0)
      spare_segments_.push_back(std::move(seg));
    else
      segments_.push_back(std::move(seg));
  }
  std::sort(segments_.begin(), segments_.end(),
            [](const auto& a, const auto& b) { return a->first < b->first; });
  // Lowest table numbers are reused first (taken from the back).
  std::sort(spare_segments_.begin(), spare_segments_.end(),
            [](const auto& a, const auto& b) { return a->n > b->n; });
  for (size_t i = 1; i < segments_.size(); ++i) {
    if (segments_[i]->first <= segments_[i - 1]->last)
      return {Outcome::kCorrupt,
              fmt::format("segments r_{} and r_{} overlap", segments_[i - 1]->n, segments_[i]->n)};
    if (segments_[i]->first != segments_[i - 1]->last + 1)
      log::warn("journal {}: seqs {}..{} are missing between segments r_{} and r_{}", path_,
                segments_[i - 1]->last + 1, segments_[i]->first - 1, segments_[i - 1]->n,
                segments_[i]->n);
  }
  last_seq_ = segments_.empty() ? stored_floor : segments_.back()->last;
  floor_ = segments_.empty() ? last_seq_ : segments_.front()->first - 1;
  return {};
}

void SqliteJournal::maybeRotate(Nanos now) {
  if (!segments_.empty()) {
    Segment& a = *segments_.back();
    if (a.rows() == 0) {
      a.first = last_seq_ + 1;
      a.last = last_seq_;
      a.opened = now;
      return;
    }
    const std::uint64_t confirmed = sinks_.empty() ? 0 : confirmedSeq();
    const bool full = a.rows() >= segment_rows_;
    const bool aged = now - a.opened >= kSegmentSpan && confirmed >= a.first;
    if (!full && !aged) return;
  }
  std::unique_ptr<Segment> seg;
  if (!spare_segments_.empty()) {
    seg = std::move(spare_segments_.back());
    spare_segments_.pop_back();
  } else {
    // A new table, in a transaction of its own (rare: only when the backlog outgrows the tables
    // there are). Should it fail, the newest segment takes the rows beyond its size.
    auto fresh = std::make_unique<Segment>();
    std::vector<int> used;  // the lowest free table number: names stay short
    for (const auto* segs : {&segments_, &spare_segments_})
      for (const auto& s : *segs) used.push_back(s->n);
    std::sort(used.begin(), used.end());
    for (const int n : used)
      if (n == fresh->n) ++fresh->n;
    const std::string sql = segmentTableSql(fresh->n);
    int rc = transaction([&] { return exec(sql.c_str()); });
    if (rc == SQLITE_OK) rc = prepareSegment(*fresh);
    if (rc != SQLITE_OK) {
      logLimited(commit_log_, "journal {}: creating segment table r_{} failed: {}", path_, fresh->n,
                 sqlite::describe(db_.get(), rc));
      return;
    }
    seg = std::move(fresh);
  }
  seg->first = last_seq_ + 1;
  seg->last = last_seq_;
  seg->opened = now;
  segments_.push_back(std::move(seg));
}

int SqliteJournal::clearSegmentsThrough(std::uint64_t upto) {
  dropped_segments_.clear();
  size_t spares = spare_segments_.size();
  for (size_t i = 0; i < segments_.size(); ++i) {
    Segment* seg = segments_[i].get();
    if (seg->rows() == 0 || seg->first > upto) break;
    int rc;
    const bool newest = i + 1 == segments_.size();  // stays, and takes the next rows
    if (seg->last <= upto && !newest && spares >= kMaxSpareSegments) {
      const std::string sql = fmt::format("DROP TABLE r_{}", seg->n);
      rc = exec(sql.c_str());
      if (rc != SQLITE_OK) return rc;
      dropped_segments_.push_back(seg->n);
      continue;
    }
    if (seg->last <= upto) {
      if (!newest) ++spares;
      ResetGuard guard(seg->clear);
      rc = seg->clear.step();
    } else {
      ResetGuard guard(seg->clear_through);
      rc = seg->clear_through.bind(1, i64(upto));
      if (rc == SQLITE_OK) rc = seg->clear_through.step();
    }
    if (rc != SQLITE_DONE) return rc;
  }
  return SQLITE_OK;
}

void SqliteJournal::settleSegments() {
  while (!segments_.empty()) {
    Segment& f = *segments_.front();
    if (f.last > floor_) {
      f.first = std::max(f.first, floor_ + 1);
      return;
    }
    if (segments_.size() == 1) {  // the newest one stays and takes the next rows
      f.first = f.last + 1;
      return;
    }
    if (std::find(dropped_segments_.begin(), dropped_segments_.end(), f.n) ==
        dropped_segments_.end())
      spare_segments_.push_back(std::move(segments_.front()));
    segments_.pop_front();
  }
}

std::uint64_t SqliteJournal::confirmedSeq() const {
  std::uint64_t confirmed = last_seq_;
  for (const auto& [name, st] : sinks_) confirmed = std::min(confirmed, st.cursor);
  return confirmed;
}

std::uint64_t SqliteJournal::segmentFloor(std::uint64_t limit) const {
  std::uint64_t r = floor_;
  for (const auto& seg : segments_) {
    if (seg->rows() == 0) continue;
    if (seg->last > limit) break;
    r = seg->last;
  }
  return r;
}

std::uint64_t SqliteJournal::capStep(std::uint64_t used, std::uint64_t target,
                                     std::uint64_t step_rows) const {
  if (segments_.size() >= 2 && segments_.front()->rows() > 0) return segments_.front()->last;
  const std::uint64_t rows = last_seq_ - floor_;
  if (rows == 0) return floor_;
  const std::uint64_t per_row = std::max<std::uint64_t>(1, used / rows);
  std::uint64_t n = used > target ? (used - target + per_row - 1) / per_row : 0;
  n += n / 16 + 16;  // partly emptied pages free nothing: overshoot a little
  return floor_ + std::min({n, step_rows, rows});
}

}  // namespace gw::buffer::detail
