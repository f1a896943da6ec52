// The journal's WAL checkpoints on a thread of their own (issue 13's loop stall, issue 16's
// fsyncs). A checkpoint copies pages from the -wal into the database file and fsyncs both; on
// the event loop that took tens to hundreds of milliseconds. WAL mode lets a PASSIVE checkpoint
// on a second connection run beside the writer: it copies only frames committed before it
// started and never blocks the writer, which keeps appending. Private to buffer/.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "buffer/sqlite.h"
#include "core/log.h"
#include "core/time.h"

namespace gw::buffer::detail {

class WalCheckpointer {
 public:
  WalCheckpointer();
  /// Stops the thread (a running checkpoint finishes first) and closes the connection without
  /// a checkpoint of its own.
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  /// Opens the checkpoint connection to `path`, replacing any earlier one. Called by the
  /// journal right after its own connection opened the same file (at open and after the file
  /// was written back), so that both are the same file. Waits for a running checkpoint.
  /// `pragmas` are the journal's connectionPragmas(). Returns an SQLite result code; without a
  /// connection the journal checkpoints on its own thread, as before.
  int attach(const std::string& path, const std::string& pragmas);
  /// Closes the connection (the journal's file is going away); waits for a running checkpoint.
  void detach();
  bool attached() const { return attached_.load(std::memory_order_relaxed); }

  /// Asks for a PASSIVE checkpoint and returns at once. Requests while one runs, or within
  /// kMinSpacing of the last one, are merged into the next run.
  void request();

  /// Called on the checkpoint thread with the number of fsyncs a checkpoint made (the -wal's
  /// and journal.db's when it copied frames), so that the WAL sync counts them (WalSyncer::
  /// charge). Set before attach().
  void onSyncs(std::function<void(int)> fn);

  std::uint64_t runs() const { return runs_.load(std::memory_order_relaxed); }
  std::uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }

  /// A run that found commits made while it copied leaves the -wal to grow; the next run
  /// waits at least this long, so a steady stream of commits does not turn into a stream of
  /// small checkpoints (each one two fsyncs).
  static constexpr Nanos kMinSpacing = kNanosPerSecond;

 private:
  void run();

  std::mutex request_mu_;  // requested_, stop_ (held briefly: request() is on the event loop)
  std::condition_variable cv_;
  bool requested_ = false;
  bool stop_ = false;

  std::mutex db_mu_;  // db_ and path_: held by the thread for a whole checkpoint
  sqlite::Db db_;
  std::string path_;
  std::function<void(int)> on_syncs_;
  std::atomic<bool> attached_{false};
  std::atomic<std::uint64_t> runs_{0}, failures_{0};
  log::RateLimiter log_{10 * kNanosPerSecond};  // used by the thread only

  std::thread thread_;  // last: started once the members above exist
};

}  // namespace gw::buffer::detail
