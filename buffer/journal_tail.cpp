// What a sink may read before a record is durable (issue 16: publish -> Kafka latency), and the
// seq reservation that makes it safe.
//
// A sink used to read only what durableSeq() covered, so every record waited for its group
// commit (commit_interval) and the WAL's fdatasync. readTail() also hands out the records still
// pending in the in-memory batch, in seq order, up to sendableSeq(). Sources are still
// acknowledged only once a record is durable; only a sink may be ahead.
//
// A record sent before its row is durable may be lost in a power cut, and with it the knowledge
// that its seq was used: the next start would give that seq to another reading, and a consumer
// that deduplicates by seq would drop the new one. So a commit reserves seqs ahead, as a database
// sequence caches values: meta 'seq_reserved' is written at open and then in the same
// transaction as rows when fewer than half of kSeqReserve reserved seqs are left, and a record
// is sent only when its seq is within a reservation already durable. Opening goes on after max(last
// row, reservation): a gap after a crash, of at most one reservation. A clean close writes the
// reservation back down to the last seq, so a restart leaves no gap.
#include <fmt/core.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>

#include "buffer/sqlite_journal.h"
#include "core/log.h"

namespace gw::buffer::detail {
namespace {

// Seqs reserved ahead by a commit. At 10,000 readings/s one reservation lasts 1.6 s, so it is
// extended about every 0.8 s (a page of the small meta table: < 1 byte a reading) and a sync
// (tens of ms) always has made it durable before the records reach it. A gap after a crash is at
// most this (or twice a commit's rows, when a commit holds more).
constexpr std::uint64_t kSeqReserve = 16384;

// GW_TEST_NO_SEQ_RESERVATION=1: no reservation, pending records are sent regardless (tests
// only: it shows the seq reuse after a crash that the reservation prevents).
bool noReservation() {
  const char* v = std::getenv("GW_TEST_NO_SEQ_RESERVATION");
  return v != nullptr && std::string_view(v) == "1";
}

}  // namespace

SqliteJournal::~SqliteJournal() {
  if (series_.size() > series_.pinned())  // journal_series.cpp
    log::info(
        "journal {}: {} series, {} past the {} pinned: {} cached in {} slots, {} evictions, {} "
        "lookups by name in SQLite ({} found), {} read back by id",
        path_, series_.size(), series_.size() - series_.pinned(), series_.pinned(),
        series_.cachedCount(), series_.cacheSlots(), series_.evictions(), series_lookups_,
        series_found_, series_loads_);
  // Gives the unused reservation back, so that a clean restart leaves no gap. Only when nothing
  // is pending: pending rows may have been sent, and their seqs must stay used. Should this not
  // reach the disk, the reservation stays: a gap, never a reuse.
  if (!db_ || detached_ || !pending_.empty() || reserved_ <= last_seq_) return;
  const int rc = transaction([&] { return writeReservation(last_seq_); });
  if (rc != SQLITE_OK) {
    log::warn(
        "journal {}: giving the unused seq reservation back failed ({}); the next start "
        "skips seqs {}..{}",
        path_, error_, last_seq_ + 1, reserved_);
    return;
  }
  reserved_ = last_seq_;
  afterCommit();  // the syncer's destructor syncs it
}

OpenResult SqliteJournal::loadReservation(std::map<std::string, SinkState, std::less<>>& stored) {
  if (noReservation()) {
    no_reservation_ = true;
    log::warn("journal {}: GW_TEST_NO_SEQ_RESERVATION=1: seqs are not reserved (tests only)",
              path_);
    return {};
  }
  Stmt s;
  int rc = s.prepare(db_.get(), "SELECT v FROM meta WHERE k = 'seq_reserved'", false);
  if (rc != SQLITE_OK) return failed(rc, "loading the seq reservation");
  rc = s.step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return failed(rc, "loading the seq reservation");
  const std::int64_t v = rc == SQLITE_ROW ? s.columnInt(0) : 0;  // none: written before 16's fix
  if (v < 0) return {Outcome::kCorrupt, fmt::format("seq reservation {}", v)};
  const auto reserved = static_cast<std::uint64_t>(v);
  if (reserved > last_seq_) {
    // Seqs were reserved and not given back: the process ended without closing the journal.
    // Any of them may have reached a sink with a record lost since; none is given out again.
    log::notice(
        "journal {}: seqs {}..{} were reserved before the last stop (a crash or power cut) and "
        "are skipped; rows continue at {}",
        path_, last_seq_ + 1, reserved, reserved + 1);
    const std::uint64_t old_last = last_seq_;
    const bool no_rows = floor_ == last_seq_;
    last_seq_ = reserved;
    if (no_rows) floor_ = reserved;
    // A cursor that had confirmed every row has confirmed the gap too (no row will ever be in
    // it); the others pass it when they next confirm a batch (readTail()).
    for (auto& [name, st] : stored)
      if (st.cursor >= old_last && st.cursor < reserved) {
        st.cursor = reserved;
        st.dirty = true;
      }
  }
  reserved_ = durable_reserved_ = last_seq_;
  // Reserved at once, so that the first records after a start need not wait for a commit to
  // reserve their seqs; everything committed at open is synced before the journal is used
  // (startSyncer()).
  const std::uint64_t ahead = last_seq_ + kSeqReserve;
  if (transaction([&] { return writeReservation(ahead); }) == SQLITE_OK) {
    reserved_ = durable_reserved_ = ahead;
  } else {
    log::warn("journal {}: reserving seqs failed ({}); the first commit reserves them", path_,
              error_);
  }
  return {};
}

std::uint64_t SqliteJournal::reservationFor(size_t rows) const {
  if (rows == 0 || no_reservation_)
    return 0;  // only commits of rows: their durability is known by seq
  const std::uint64_t last = last_seq_ + rows;
  if (reserved_ >= last + kSeqReserve / 2) return 0;
  return last + std::max<std::uint64_t>(kSeqReserve, 2 * static_cast<std::uint64_t>(rows));
}

int SqliteJournal::writeReservation(std::uint64_t reserved) {
  // Prepared each time (about once a second at 10,000 readings/s): no statement to carry over
  // when the connection moves to a written-back copy (journal_guard.cpp).
  Stmt st;
  int rc =
      st.prepare(db_.get(), "INSERT OR REPLACE INTO meta(k, v) VALUES('seq_reserved', ?)", false);
  if (rc == SQLITE_OK) rc = st.bind(1, i64(reserved));
  if (rc == SQLITE_OK) rc = st.step();
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

void SqliteJournal::reserved(std::uint64_t reserved) {
  reserved_ = reserved;
  reserving_.emplace_back(last_seq_, reserved);
}

std::uint64_t SqliteJournal::sendableSeq() const {
  // A commit of rows through seq L is durable once durableSeq() >= L (the WAL is synced in
  // order), and with it the reservation it wrote.
  const std::uint64_t durable = durableSeq();
  if (no_reservation_) return last_seq_ + pending_.size();
  while (!reserving_.empty() && reserving_.front().first <= durable) {
    durable_reserved_ = reserving_.front().second;
    reserving_.pop_front();
  }
  return std::max(durable, std::min(last_seq_ + pending_.size(), durable_reserved_));
}

std::uint64_t SqliteJournal::readTail(std::uint64_t after, size_t limit,
                                      std::vector<ReadingRecord>& out, Reader reader) {
  const std::uint64_t upto = sendableSeq();
  const std::uint64_t committed_upto = std::min(upto, last_seq_);
  size_t n = 0;
  series_.beginCall(reader);
  // A record whose series cannot be read back (past the pinned ids; logged) ends the read
  // before it, as a read error does: the sink asks again.
  const auto stoppedAt = [&] {
    out.resize(n);
    return n > 0 ? out[n - 1].seq : after;
  };
  // Rows of the last commit a sink had not read before it: from memory (issue 16: at a steady
  // rate a sink reads no SQLite page and takes no WAL read lock). Rows retention dropped
  // meanwhile (floor_) are skipped as readRows() skips them.
  const std::uint64_t from = std::max(after, floor_);
  const bool in_tail =
      !tail_.empty() && tail_after_ + tail_.size() == last_seq_ && from >= tail_after_;
  if (after < committed_upto && limit > 0) {
    if (in_tail) {
      if (!readSlice(tail_, tail_blobs_, tail_after_ + 1, from, committed_upto, limit, out, n))
        return stoppedAt();
    } else {
      readRows(false, after, limit, out, reader);
      n = out.size();
      // Past committed_upto only when durableSeq() < sendableSeq() <= last_seq_: drop those.
      while (n > 0 && out[n - 1].seq > committed_upto) --n;
      if (read_failed_) {
        out.resize(n);
        return n > 0 ? out[n - 1].seq : after;
      }
    }
    if (n >= limit) {
      out.resize(n);
      return out[n - 1].seq;
    }
  }
  if (upto > last_seq_ && limit > n && !readPending(after, upto, limit, out, n)) return stoppedAt();
  out.resize(n);
  if (n >= limit) return out[n - 1].seq;
  return std::max(after, upto);
}

void SqliteJournal::keepCommittedTail() {
  if (pending_.empty()) return;  // the last commit's rows stay the tail
  tail_after_ = last_seq_ - pending_.size();
  // Swapped, not copied: pending_ takes the old tail's storage (no allocation per commit).
  tail_.swap(pending_);
  tail_blobs_.swap(pending_blobs_);
  pending_.clear();
  pending_blobs_.clear();
}

bool SqliteJournal::readPending(std::uint64_t after, std::uint64_t upto, size_t limit,
                                std::vector<ReadingRecord>& out, size_t& n) {
  return readSlice(pending_, pending_blobs_, last_seq_ + 1, after, upto, limit, out, n);
}

bool SqliteJournal::readSlice(const std::vector<PendingRow>& rows,
                              const std::vector<std::string>& blobs, std::uint64_t first_seq,
                              std::uint64_t after, std::uint64_t upto, size_t limit,
                              std::vector<ReadingRecord>& out, size_t& n) {
  size_t blob = 0;
  for (size_t i = 0; i < rows.size() && n < limit; ++i) {
    const PendingRow& p = rows[i];
    const std::uint64_t seq = first_seq + i;
    const std::string* x = p.kind != kRowReading ? &blobs[blob++] : nullptr;
    if (seq > upto) break;
    if (seq <= after) continue;
    // Appended a moment ago; past the pinned ids it may have been evicted since (its row
    // written, no sink holding a record of it) and is read back.
    const InternedSeries* series = resolveSeries(p.s, seq);
    if (series == nullptr) return false;
    if (n == out.size()) out.emplace_back();
    ReadingRecord& r = out[n];
    r.seq = seq;
    r.series = series;
    r.event_time = p.t;
    r.value = p.v;
    r.device_time.reset();
    r.reference = TimeReference::kReceive;
    switch (p.kind) {
      case kRowReading:
        r.kind = RecordKind::kReading;
        r.reference = static_cast<TimeReference>(p.c);
        if (p.has_d) r.device_time = wrapSub(p.t, p.d);
        break;
      case kRowAggregate:
        r.kind = RecordKind::kAggregate;
        r.window = WindowStats{};
        r.window.start = p.t;
        r.window.size = p.d;
        // Encoded by this process a moment ago: a failure is a bug.
        if (!decodeWindow(*x, r.window)) {
          log::error("journal: bug: pending aggregate {} cannot be decoded", seq);
          std::abort();
        }
        break;
      case kRowAlert:
        r.kind = RecordKind::kAlert;
        r.alert.assign(*x);
        break;
    }
    ++n;
  }
  return true;
}

}  // namespace gw::buffer::detail
