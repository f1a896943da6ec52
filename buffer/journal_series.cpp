// Series past JournalOptions::pinned_series (issue 13: a device inventing names must not grow
// the gateway's memory with every name). The series table in memory (buffer/series_table.h)
// keeps them in a bounded cache; the SQLite table `series` is the authority: a name not in
// memory is looked up there (index series_name on (device, metric, tags), schema 8), an id not
// in memory is read back by its rowid.
//
// What may be evicted (updateEvictable()): an entry whose series row is written (ids below
// persisted_series_), that the current call has not used (SeriesTable::beginCall(): the records
// one read returns stay valid together; readers that hold nothing across calls, the tail view,
// the windows' replay, series(), need no more), and, for each sink that holds records (the
// forwarders: a batch in flight is above its cursor, gateway/forwarder.cpp), whose records
// handed out to that sink (its Reader) all have seqs at or below what that sink confirmed
// (SinkState::confirmed: not its cursor, which retention moves past rows it drops, maybe while
// the sink's worker still sends them). Per sink,
// so that a sink that is down (its cursor still, its forwarder reading the same batch again on
// each retry) keeps the entries of that one batch, not every name the other sinks read and
// confirm meanwhile. The series table has SeriesTable::kReaderSlots slots per entry: holding
// sinks from the last slot's index on share it (the lowest of their confirmed seqs bounds them).
// Gatewayd has at most three holding sinks (Kafka, time-series, file).
#include <fmt/core.h>

#include <algorithm>
#include <limits>
#include <string>
#include <utility>

#include "buffer/sqlite_journal.h"
#include "core/log.h"

namespace gw::buffer::detail {

bool SqliteJournal::lookupSeriesRow(const Series& series, SeriesId& id) {
  id = SeriesTable::kNoId;
  ++series_lookups_;
  const std::string tags = encodeTags(series.tags);
  ResetGuard guard(find_series_);
  int rc = find_series_.bindAll(std::string_view(series.device), std::string_view(series.metric),
                                Blob{tags});
  if (rc == SQLITE_OK) rc = find_series_.step();
  if (rc == SQLITE_ROW) {
    const std::int64_t v = find_series_.columnInt(0);
    if (v >= 0 && static_cast<std::uint64_t>(v) < series_.size()) id = static_cast<SeriesId>(v);
    ++series_found_;
    return true;
  }
  if (rc == SQLITE_DONE) return true;
  logLimited(read_log_, "journal {}: looking series {}/{} up failed: {}", path_, series.device,
             series.metric, sqlite::describe(db_.get(), rc));
  return false;
}

bool readSeriesColumns(const Stmt& row, int first, Series& out) {
  out.device.assign(row.columnText(first));
  out.metric.assign(row.columnText(first + 1));
  out.tags.clear();
  return decodeTags(row.columnBlob(first + 2), out.tags);
}

bool SqliteJournal::loadSeriesRow(SeriesId id, Series& out) {
  ++series_loads_;
  ResetGuard guard(load_series_);
  int rc = load_series_.bind(1, static_cast<std::int64_t>(id));
  if (rc == SQLITE_OK) rc = load_series_.step();
  if (rc == SQLITE_ROW) {
    if (readSeriesColumns(load_series_, 0, out)) return true;
    logLimited(read_log_, "journal {}: series row {} cannot be decoded", path_, id);
    return false;
  }
  logLimited(read_log_, "journal {}: reading series row {} back failed: {}", path_, id,
             rc == SQLITE_DONE ? std::string("no such row") : sqlite::describe(db_.get(), rc));
  return false;
}

const InternedSeries* SqliteJournal::resolveSeries(SeriesId id, std::uint64_t seq) {
  if (const InternedSeries* s = series_.get(id, seq)) return s;
  Series s;
  if (!loadSeriesRow(id, s)) return nullptr;
  series_.load(id, std::move(s));
  return series_.get(id, seq);
}

SeriesId SqliteJournal::internSeries(const Series& series) {
  series_.beginCall();
  SeriesId id = series_.find(series);
  if (id != SeriesTable::kNoId) return id;
  // Not in memory: when something past the pinned ids is not in memory either, SQLite knows
  // whether this name has an id already (unless the table's filter knows it has none). A lookup
  // that fails (logged) gives the name a new id: its readings keep their name, only its id differs
  // from the earlier one's.
  if (series_.incomplete() && series_.mayHaveId(series) && lookupSeriesRow(series, id) &&
      id != SeriesTable::kNoId) {
    series_.load(id, series);
    return id;
  }
  return series_.add(series);
}

const InternedSeries& SqliteJournal::series(SeriesId id) {
  if (id >= series_.size()) {
    log::error("journal: bug: unknown series id {}", id);
    std::abort();
  }
  series_.beginCall();
  const InternedSeries* s = resolveSeries(id, 0);
  if (s == nullptr) {
    log::error("journal {}: series {} cannot be read back from the series table; stopping", path_,
               id);
    std::abort();
  }
  return *s;
}

void SqliteJournal::updateEvictable() {
  SeriesTable::HeldUpto upto;
  upto.fill(std::numeric_limits<std::uint64_t>::max());
  for (size_t k = 0; k < holding_sinks_.size(); ++k) {
    std::uint64_t& slot = upto[std::min(k, SeriesTable::kReaderSlots - 1)];
    slot = std::min(slot, holding_sinks_[k]->confirmed);
  }
  series_.setEvictable(upto, persisted_series_);
}

Journal::Reader SqliteJournal::readerOf(std::string_view sink) const {
  const auto it = sinks_.find(sink);
  if (it == sinks_.end()) return kNoReader;
  for (size_t k = 0; k < holding_sinks_.size(); ++k)
    if (holding_sinks_[k] == &it->second) return static_cast<Reader>(k);
  return kNoReader;
}

bool SqliteJournal::deviceSeriesIds(std::string_view device, std::string& ids) {
  const auto add = [&](std::uint64_t id) {
    ids += fmt::format("{}{}", ids.empty() ? "" : ",", id);
  };
  const size_t pinned = std::min(series_.pinned(), series_.size());
  for (size_t i = 0; i < pinned; ++i)
    if (series_[i].device == device) add(i);
  if (series_.size() <= pinned) return true;
  // Past the pinned ids: the index on (device, metric, tags) finds the rows written, the cache
  // the series not written yet.
  {
    ResetGuard guard(device_series_);
    int rc = device_series_.bindAll(device, static_cast<std::int64_t>(pinned));
    if (rc == SQLITE_OK)
      while ((rc = device_series_.step()) == SQLITE_ROW)
        add(static_cast<std::uint64_t>(device_series_.columnInt(0)));
    if (rc != SQLITE_DONE) {
      logLimited(read_log_, "journal {}: looking the series of {} up failed: {}", path_, device,
                 sqlite::describe(db_.get(), rc));
      return false;
    }
  }
  series_.forEachCached([&](SeriesId id, const InternedSeries& s) {
    if (id >= persisted_series_ && s.device == device) add(id);
  });
  return true;
}

}  // namespace gw::buffer::detail
