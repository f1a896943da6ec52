// buffer.min_free: free space kept on the journal's filesystem (issue 17). A full disk makes
// every commit fail (nothing is acknowledged then, so nothing is lost, but nothing comes in
// either, and the rest of the system suffers). Deleting rows does not give space back to the
// filesystem (SQLite keeps freed pages in the file and reuses them), so the guard works by not
// letting the file grow: below min_free, the oldest rows are dropped until the file has free
// pages for the next commits; the WAL and anything else grow into the min_free headroom.
#include <sys/statvfs.h>

#include <algorithm>

#include "buffer/sqlite_journal.h"

namespace gw::buffer::detail {
namespace {

// Room kept inside the file for the commits until the next check: a tenth of it, twice what the
// last interval took, at least 256 KiB.
std::uint64_t roomFor(std::uint64_t file_bytes, std::uint64_t last_growth) {
  return std::max({file_bytes / 10, 2 * last_growth, std::uint64_t{256} << 10});
}

constexpr Nanos kDiskCheckInterval = kNanosPerSecond;

}  // namespace

std::uint64_t SqliteJournal::keepFree(std::uint64_t step_rows) {
  if (options_.min_free_bytes == 0 && options_.min_free_percent == 0) return 0;
  // Above min_free, the filesystem is asked again (a statvfs(), a system call before every
  // commit otherwise, issue 16) once a second, or sooner when what this journal wrote since
  // could have used up the headroom it had: its WAL frames, counted twice (a checkpoint copies
  // them into the file). A WAL started over since is a checkpoint: checked at once.
  const Nanos now = clock_();
  if (!low_disk_ && disk_checked_at_ != 0 && now >= disk_checked_at_ &&
      now - disk_checked_at_ < kDiskCheckInterval && wal_frames_ >= disk_checked_frames_) {
    const std::uint64_t written = 2 *
                                  static_cast<std::uint64_t>(wal_frames_ - disk_checked_frames_) *
                                  static_cast<std::uint64_t>(page_size_ + kWalFrameHeader);
    if (disk_free_ >= min_free_ && disk_free_ - min_free_ > written) return 0;
  }
  disk_checked_at_ = now;
  disk_checked_frames_ = wal_frames_;
  std::uint64_t avail = 0, total = 0;
  if (options_.disk_space) {
    if (!options_.disk_space(avail, total)) return 0;
  } else {
    struct statvfs st {};
    const fs::path dir = options_.path.parent_path();
    if (::statvfs(dir.empty() ? "." : dir.c_str(), &st) != 0) return 0;
    avail = static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
    total = static_cast<std::uint64_t>(st.f_blocks) * st.f_frsize;
  }
  std::uint64_t threshold = options_.min_free_bytes;
  if (options_.min_free_percent > 0) {
    const std::uint64_t pct = total / 100 * options_.min_free_percent;
    threshold = threshold == 0 ? pct : std::min(threshold, pct);
  }
  disk_free_ = avail;
  min_free_ = threshold;
  if (avail >= threshold) {
    if (low_disk_)
      log::notice("journal {}: free space {} bytes, back above buffer.min_free ({} bytes)", path_,
                  avail, threshold);
    low_disk_ = false;
    return 0;
  }
  if (!low_disk_) {
    usedBytes(low_disk_used_);
    logLimited(retention_log_,
               "journal {}: free space on its filesystem is {} bytes, below buffer.min_free ({} "
               "bytes): the journal stops growing; the oldest unsent rows are dropped to make "
               "room",
               path_, avail, threshold);
  }
  low_disk_ = true;

  std::int64_t pages = 0;
  {
    ResetGuard guard(page_count_);
    if (page_count_.step() != SQLITE_ROW) return 0;
    pages = page_count_.columnInt(0);
  }
  const std::uint64_t file_bytes = static_cast<std::uint64_t>(pages) * page_size_;
  std::uint64_t used = 0, removed = 0;
  if (!usedBytes(used)) return 0;
  const std::uint64_t growth = used > low_disk_used_ ? used - low_disk_used_ : 0;
  const std::uint64_t room = roomFor(file_bytes, growth);
  const std::uint64_t target = file_bytes > room ? file_bytes - room : 0;
  // The -wal gives its space back too (it otherwise keeps journal_size_limit, 4 MiB).
  sqlite3_wal_checkpoint_v2(db_.get(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  wal_frames_ = 0;
  low_disk_used_ = used;
  if (used <= target) return 0;
  const std::uint64_t used_before = used;
  DropTally tally;
  for (int i = 0; i < 16 && used > target; ++i) {
    const std::uint64_t rows = last_seq_ - floor_;
    if (rows == 0) break;
    const std::uint64_t before = floor_;
    if (!removeThrough(capStep(used, target, step_rows), &tally) || !usedBytes(used)) break;
    removed += floor_ - before;
  }
  low_disk_used_ = used;
  reportDrops(tally, fmt::format("to keep buffer.min_free ({} bytes free on the filesystem, "
                                 "min_free {} bytes; {} of {} bytes of the file were in use)",
                                 avail, threshold, used_before, file_bytes));
  return removed;
}

}  // namespace gw::buffer::detail
