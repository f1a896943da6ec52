// File sink: a JSON-lines archive in a folder (`[file]`), for local archives and debugging.
//
// Each line is one record exactly as the Kafka sink sends it as a record value (reading,
// aggregate, alert: core/record_json.h and the alert record). Files are named by the start of
// their period, UTC: `readings-2026-12-03T22.jsonl` (with `-MM` minutes when `rotate` is not a
// whole number of hours), `.jsonl.gz` with gzip. The period is chosen by the wall time of
// writing, aligned to the epoch, so "1h" rotates on UTC hour boundaries.
//
// Durability, as the forwarder sees it:
//   kDelivered  the batch was written and fsync'ed (a new file's folder entry too)
//   kRetry      any I/O error (ENOSPC, EACCES, EIO, folder removed...), with the OS error text;
//               what was written of the batch is cut off again, so the file stays whole
//   never kRejected: a record that can be serialised can be written.
// With gzip, each batch is one complete gzip member (gzip files may be concatenations of
// members, RFC 1952), so the file is a valid gzip file after every delivered batch and `zcat`
// reads it while it grows. At-least-once: a batch the forwarder re-sends after a crash or an
// error after the write (the folder removed under it) may appear twice.
//
// After a crash the file being written may end in a torn line or gzip member; it is cut back to
// its last complete line or member before anything is appended (the first send() repairs the
// newest file; opening an existing file repairs that one).
//
// Retention, when a file is opened (the first batch after start, each rotation) and when the
// archive grows past max_size: files whose start is older than max_age are removed, then the
// oldest files while the total is above max_size. Whole files only, never the current one,
// only names this sink writes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/component.h"
#include "core/sink.h"
#include "core/time.h"

namespace gw::file {

constexpr Nanos kNanosPerMinute = 60 * kNanosPerSecond;
constexpr Nanos kNanosPerHour = 60 * kNanosPerMinute;
constexpr Nanos kNanosPerDay = 24 * kNanosPerHour;

struct FileOptions {
  std::filesystem::path path;    ///< the archive folder; created (with parents) when missing
  Nanos rotate = kNanosPerHour;  ///< whole minutes that divide a day (the parser checks)
  bool gzip = false;
  std::optional<Nanos> max_age;           ///< by a file's start time
  std::optional<std::uint64_t> max_size;  ///< total bytes of the archive files
  bool send_readings = true;
  bool send_aggregates = true;
  bool send_alerts = true;
  /// Wall time (ns since the epoch, UTC) for rotation and retention; empty means wallNow.
  /// Tests inject their own.
  std::function<Nanos()> clock;
};

/// The name of the file of the period starting at `start`:
/// `readings-YYYY-MM-DDTHH[-MM].jsonl[.gz]`.
std::string archiveFileName(Nanos start, Nanos rotate, bool gzip);

/// Builds the sink; touches no file (the folder is created by the first send()).
/// interrupt() is sticky (meant for shutdown): every later send() returns kRetry at once.
std::unique_ptr<Sink> makeFileSink(FileOptions options);

/// `[file]` for the registry: kind sink, table "file".
Component component();

}  // namespace gw::file
