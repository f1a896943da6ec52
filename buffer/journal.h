// The SQLite journal: the one source of truth every sink reads from (design: "Journal").
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/reading.h"
#include "core/time.h"

namespace gw::buffer {

struct JournalOptions {
  std::filesystem::path path;                   ///< journal.db
  std::uint64_t max_size_bytes = 512ull << 20;  ///< buffer.max_size
  Nanos max_age = 7 * 86400 * kNanosPerSecond;  ///< buffer.max_age (by event time)
  bool synchronous_full = false;                ///< buffer.synchronous = "full"
  std::vector<std::string> sinks;               ///< one cursor per sink name
};

/// Thrown by open() when the journal cannot be opened or created at all.
class JournalError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct SinkBacklog {
  std::uint64_t cursor = 0;         ///< last seq the sink confirmed
  std::uint64_t backlog = 0;        ///< committed rows above the cursor
  std::uint64_t dropped = 0;        ///< rows dropped by the caps before this sink sent them
  std::optional<Nanos> oldest_unsent;  ///< event time of the oldest unsent row
};

struct JournalStats {
  std::uint64_t last_seq = 0;   ///< highest committed seq
  std::uint64_t rows = 0;       ///< rows in the journal
  std::uint64_t file_bytes = 0; ///< database + WAL size on disk
  std::uint64_t commits = 0;
  std::map<std::string, SinkBacklog> sinks;
  std::optional<std::filesystem::path> moved_aside;  ///< set when a corrupt file was moved aside
};

/// Readings are appended into an in-memory batch and made durable by commit() (group
/// commit: one transaction per batch). Sinks read committed rows after their cursor.
///
/// Threading: single-threaded; the pipeline's event loop owns it. Series returned by
/// series() and pointed to by ReadingRecord stay valid and unchanged until the journal is
/// destroyed, so another thread may read them while the loop goes on.
class Journal {
 public:
  /// Opens or creates the journal: WAL mode, `PRAGMA quick_check`; a corrupt or unreadable
  /// file is moved aside (to `<path>.corrupt-<UTC time>`, with its -wal/-shm) and a new
  /// journal started, logged as an error. Throws JournalError only when even a new journal
  /// cannot be created (permissions, disk).
  static std::unique_ptr<Journal> open(const JournalOptions& options);
  virtual ~Journal() = default;

  /// Interns a series (persisted with the next commit); the same Series gives the same id,
  /// also across restarts.
  virtual SeriesId internSeries(const Series& series) = 0;
  virtual const Series& series(SeriesId id) const = 0;

  /// Buffers a reading for the next commit and returns the seq it will have.
  virtual std::uint64_t append(SeriesId series, double value, Nanos event_time,
                               std::optional<Nanos> device_time, TimeReference reference) = 0;
  /// Number of appended rows not yet committed.
  virtual size_t pending() const = 0;
  /// Writes pending rows, new series and cursor moves in one transaction. On failure (disk
  /// full, I/O error) returns false, logs, and keeps everything pending for the next try.
  virtual bool commit() = 0;

  /// Reads up to `limit` committed readings with seq > `after`, in seq order, into `out`
  /// (cleared first).
  virtual void read(std::uint64_t after, size_t limit, std::vector<ReadingRecord>& out) = 0;

  virtual std::uint64_t cursor(std::string_view sink) const = 0;
  /// Moves a sink's cursor forward (never back); written with the next commit.
  virtual void setCursor(std::string_view sink, std::uint64_t seq) = 0;

  /// Deletes rows every sink has confirmed (at most `step` rows a call, so the loop never
  /// stalls), then enforces max_size/max_age by dropping the oldest unsent rows, counted per
  /// sink and logged. Returns the number of rows removed. Call it on a timer.
  virtual std::uint64_t enforceRetention(Nanos now, size_t step = 10000) = 0;

  virtual JournalStats stats() const = 0;
};

}  // namespace gw::buffer
