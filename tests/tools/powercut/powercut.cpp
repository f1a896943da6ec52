// libpowercut.so: emulates a power cut for one process (LD_PRELOAD; a test tool, not shipped).
//
// A power cut loses what was only in the page cache: every byte written since the last
// fsync/fdatasync of its file. This shim keeps the PRE-IMAGE of every byte range a process
// overwrites in a regular file (write, pwrite, pwrite64, writev, pwritev, ftruncate) and the
// file's size at its last sync; fsync/fdatasync (or sync_file_range with WAIT_BEFORE|WRITE|
// WAIT_AFTER, for its range; sync/syncfs for every file) make what was written durable. On the
// cut signal it puts every not-yet-synced pre-image back, truncates each file to its synced
// size, truncates every `*-shm` file to 0 bytes, and kills the process with SIGKILL: no
// atexit handler, no destructor, no further write runs. The process is stopped (SIGSTOP) while
// a forked child of the shim restores the files, so it dies before any of its threads sees them
// half-restored; the exit status is "killed by SIGKILL" once the files are as after the cut.
//
// Environment:
//   POWERCUT_SIGNAL     signal number that cuts the power (default SIGUSR2)
//   POWERCUT_DIR        only files whose path starts with it are tracked (default: all files);
//                       tests set the daemon's state directory so its log file survives
//   POWERCUT_MAX_BYTES  bound on the pre-images held (default 256 MiB); past it the process
//                       aborts loudly rather than emulate wrongly
//
// What it emulates and what not:
// - The worst case of a cut: nothing unsynced reached the disk (a real kernel may have written
//   some of it back). Writes are not torn inside one call.
// - SQLite's `-shm` (wal-index) is only ever mmapped and never synced: a real cut loses it. The
//   shim truncates it to 0 bytes (SQLite rebuilds it from the WAL on the next open, as after a
//   reboot). Other mmapped writes are not seen.
// - Directory operations (create, rename, unlink) and O_TRUNC at open are taken as durable at
//   once; a file created since its last sync comes back empty (its synced size is 0 only if the
//   shim saw it empty: files are tracked from their first write or truncate).
// - Writes on O_SYNC/O_DSYNC descriptors are durable when they return.
// - Only calls through the dynamic symbols are seen (stdio's internal writes are not).
// - All tracked I/O is serialised by one mutex (also across fsync): fine for a test.
//
// The cut runs on a thread of the shim (the signal handler only writes to a pipe), so it can
// take the mutex: a write in progress finishes first, every later one blocks until the kill.
// Closing a descriptor here would drop the process's POSIX locks (SQLite's): the shim never
// closes one of the process's files.
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace gw::powercut {
namespace {

using WriteFn = ssize_t (*)(int, const void*, size_t);
using PwriteFn = ssize_t (*)(int, const void*, size_t, off_t);
using Pwrite64Fn = ssize_t (*)(int, const void*, size_t, off64_t);
using WritevFn = ssize_t (*)(int, const struct iovec*, int);
using PwritevFn = ssize_t (*)(int, const struct iovec*, int, off_t);
using FtruncateFn = int (*)(int, off_t);
using Ftruncate64Fn = int (*)(int, off64_t);
using FsyncFn = int (*)(int);
using SyncFileRangeFn = int (*)(int, off64_t, off64_t, unsigned int);
using SyncFn = void (*)();
using SyncfsFn = int (*)(int);

struct Real {
  WriteFn write = nullptr;
  PwriteFn pwrite = nullptr;
  Pwrite64Fn pwrite64 = nullptr;
  WritevFn writev = nullptr;
  PwritevFn pwritev = nullptr;
  FtruncateFn ftruncate = nullptr;
  Ftruncate64Fn ftruncate64 = nullptr;
  FsyncFn fsync = nullptr;
  FsyncFn fdatasync = nullptr;
  SyncFileRangeFn sync_file_range = nullptr;
  SyncFn sync = nullptr;
  SyncfsFn syncfs = nullptr;
};

/// What one file (inode) looked like at its last sync, as far as writes since then changed it.
struct FileState {
  std::string path;
  off_t synced_size = 0;
  /// Pre-images of changed bytes below synced_size: offset -> bytes, non-overlapping. The first
  /// pre-image of a byte since the last sync is the synced one; later writes keep it.
  std::map<off_t, std::string> pre_images;
};

struct Shim {
  std::mutex mu;
  std::map<std::pair<dev_t, ino_t>, FileState> files;  // guarded by mu
  size_t held_bytes = 0;                               // guarded by mu
  size_t max_bytes = 256u << 20;
  std::string dir;
  int cut_signal = SIGUSR2;
  int pipe_read = -1;
  int pipe_write = -1;
};

Real real;
Shim* shim = nullptr;  // leaked on purpose: used until the process dies

template <typename Fn>
Fn lookup(const char* name) {
  void* p = dlsym(RTLD_NEXT, name);
  return reinterpret_cast<Fn>(p);
}

void resolve() {
  if (real.write) return;
  real.pwrite = lookup<PwriteFn>("pwrite");
  real.pwrite64 = lookup<Pwrite64Fn>("pwrite64");
  real.writev = lookup<WritevFn>("writev");
  real.pwritev = lookup<PwritevFn>("pwritev");
  real.ftruncate = lookup<FtruncateFn>("ftruncate");
  real.ftruncate64 = lookup<Ftruncate64Fn>("ftruncate64");
  real.fsync = lookup<FsyncFn>("fsync");
  real.fdatasync = lookup<FsyncFn>("fdatasync");
  real.sync_file_range = lookup<SyncFileRangeFn>("sync_file_range");
  real.sync = lookup<SyncFn>("sync");
  real.syncfs = lookup<SyncfsFn>("syncfs");
  real.write = lookup<WriteFn>("write");
}

/// A message on stderr without going through our own write() or stdio's buffers.
void say(const char* fmt_text, ...) __attribute__((format(printf, 1, 2)));
void say(const char* fmt_text, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt_text);
  const int n = std::vsnprintf(buf, sizeof buf, fmt_text, ap);
  va_end(ap);
  if (n <= 0) return;
  const size_t len = static_cast<size_t>(n) < sizeof buf ? static_cast<size_t>(n) : sizeof buf - 1;
  if (syscall(SYS_write, 2, buf, len) < 0) {
    // Nothing else to tell it to.
  }
}

[[noreturn]] void die(const char* what) {
  say("powercut: %s: %s (aborting: the emulation would be wrong)\n", what, std::strerror(errno));
  std::abort();
}

std::string pathOf(int fd) {
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char target[4096];
  const ssize_t n = readlink(link, target, sizeof target - 1);
  if (n < 0) return {};
  return std::string(target, static_cast<size_t>(n));
}

bool endsWith(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

/// The tracked state of fd's file, or nullptr when fd is not a tracked regular file (not a
/// regular file, outside POWERCUT_DIR, or opened O_SYNC/O_DSYNC). Requires shim->mu.
FileState* track(int fd, struct stat& st) {
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return nullptr;
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || (flags & (O_SYNC | O_DSYNC)) != 0) return nullptr;
  auto key = std::make_pair(st.st_dev, st.st_ino);
  auto it = shim->files.find(key);
  if (it != shim->files.end()) return &it->second;
  std::string path = pathOf(fd);
  if (path.empty() || (!shim->dir.empty() && path.compare(0, shim->dir.size(), shim->dir) != 0))
    return nullptr;
  FileState& f = shim->files[key];
  f.path = std::move(path);
  f.synced_size = st.st_size;
  return &f;
}

/// Reads the current bytes [off, off + len) of fd into out (short at end of file).
void readPreImage(int fd, const std::string& path, off_t off, size_t len, std::string& out) {
  out.assign(len, '\0');
  size_t got = 0;
  while (got < len) {
    const ssize_t n = pread(fd, out.data() + got, len - got, off + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EBADF) {
      // A write-only descriptor: read through a second one, kept open for good (closing any
      // descriptor of a file drops the process's POSIX locks on it, SQLite's among them).
      static std::map<std::string, int> readers;
      auto it = readers.find(path);
      if (it == readers.end()) {
        const int r = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (r < 0) die("cannot open a write-only file for its pre-image");
        it = readers.emplace(path, r).first;
      }
      fd = it->second;
      continue;
    }
    if (n < 0) die("pread of a pre-image failed");
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
}

/// Keeps the pre-image of [off, off + len) of fd's file where no pre-image is held yet. Only
/// bytes below the synced size matter: the cut truncates everything above it.
void preserve(int fd, FileState& f, off_t off, size_t len) {
  off_t end = off + static_cast<off_t>(len);
  if (end > f.synced_size) end = f.synced_size;
  off_t pos = off;
  while (pos < end) {
    // The held range that starts at or before pos, if it covers pos, is skipped past.
    auto it = f.pre_images.upper_bound(pos);
    if (it != f.pre_images.begin()) {
      auto prev = std::prev(it);
      const off_t prev_end = prev->first + static_cast<off_t>(prev->second.size());
      if (prev_end > pos) {
        pos = prev_end;
        continue;
      }
    }
    const off_t gap_end = (it != f.pre_images.end() && it->first < end) ? it->first : end;
    std::string bytes;
    readPreImage(fd, f.path, pos, static_cast<size_t>(gap_end - pos), bytes);
    shim->held_bytes += bytes.size();
    if (shim->held_bytes > shim->max_bytes) {
      errno = ENOMEM;
      die("more unsynced pre-images than POWERCUT_MAX_BYTES");
    }
    f.pre_images.emplace(pos, std::move(bytes));
    pos = gap_end;
  }
}

/// Before a write of len bytes at off (or at the current offset / end of file when off < 0).
void beforeWrite(int fd, off_t off, size_t len) {
  struct stat st;
  FileState* f = track(fd, st);
  if (!f || len == 0) return;
  if (off < 0) {
    const int flags = fcntl(fd, F_GETFL);
    off = (flags >= 0 && (flags & O_APPEND) != 0) ? st.st_size : lseek(fd, 0, SEEK_CUR);
    if (off < 0) return;  // not seekable: the write will fail the same way
  }
  preserve(fd, *f, off, len);
}

void synced(int fd) {
  struct stat st;
  FileState* f = track(fd, st);
  if (!f) return;
  for (auto& [off, bytes] : f->pre_images) shim->held_bytes -= bytes.size();
  f->pre_images.clear();
  f->synced_size = st.st_size;
}

void restoreAll() {
  size_t restored = 0;
  std::uint64_t cut_off = 0;
  size_t files = 0;
  for (auto& [key, f] : shim->files) {
    if (endsWith(f.path, "-shm")) {
      if (truncate(f.path.c_str(), 0) != 0 && errno != ENOENT) die("truncating a -shm file");
      ++files;
      continue;
    }
    struct stat st;
    if (stat(f.path.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;  // unlinked: its data went with the directory entry
      die("stat of a tracked file");
    }
    if (st.st_dev != key.first || st.st_ino != key.second) continue;  // replaced by a rename
    if (f.pre_images.empty() && st.st_size == f.synced_size) continue;
    if (st.st_size > f.synced_size)
      cut_off += static_cast<std::uint64_t>(st.st_size - f.synced_size);
    const int fd = open(f.path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) die("opening a tracked file to restore it");
    if (real.ftruncate(fd, f.synced_size) != 0) die("truncating to the synced size");
    for (auto& [off, bytes] : f.pre_images) {
      size_t done = 0;
      while (done < bytes.size()) {
        const ssize_t n = real.pwrite(fd, bytes.data() + done, bytes.size() - done,
                                      off + static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die("writing a pre-image back");
        done += static_cast<size_t>(n);
      }
      restored += bytes.size();
    }
    // The restored state is what "the disk" held: make it so for the next incarnation.
    if (real.fsync(fd) != 0) die("fsync of a restored file");
    ++files;
  }
  // Every open -shm, also one the shim saw no write to (it is only ever mmapped).
  if (DIR* d = opendir("/proc/self/fd")) {
    while (const dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const std::string path = pathOf(std::atoi(e->d_name));
      if (!endsWith(path, "-shm")) continue;
      if (!shim->dir.empty() && path.compare(0, shim->dir.size(), shim->dir) != 0) continue;
      if (truncate(path.c_str(), 0) != 0 && errno != ENOENT) die("truncating a -shm file");
    }
    if (closedir(d) != 0) die("closedir /proc/self/fd");
  }
  say("powercut: power cut: %zu unsynced bytes rolled back, %llu unsynced bytes cut off, in %zu "
      "files; -shm files emptied\n",
      restored, static_cast<unsigned long long>(cut_off), files);
}

/// Waits (at most 10 s) until process pid is stopped (state T in /proc/PID/stat).
void waitStopped(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  for (int i = 0; i < 10000; ++i) {
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open /proc/PID/stat");
    char buf[512];
    const ssize_t n = read(fd, buf, sizeof buf - 1);
    if (close(fd) != 0 || n <= 0) die("read /proc/PID/stat");
    buf[n] = '\0';
    // "pid (comm) S ...": the state follows the last ')'.
    const char* paren = std::strrchr(buf, ')');
    if (paren && paren[1] == ' ' && (paren[2] == 'T' || paren[2] == 't')) return;
    usleep(1000);
  }
  errno = ETIMEDOUT;
  die("the process did not stop for the cut");
}

void* cutThread(void*) {
  char c;
  for (;;) {
    const ssize_t n = read(shim->pipe_read, &c, 1);
    if (n == 1) break;
    if (n < 0 && errno == EINTR) continue;
    die("reading the cut pipe");
  }
  shim->mu.lock();  // held until the process is gone: no tracked write runs after the cut
  // The files are put back by a child while this process is stopped: no thread of it can read
  // a half-restored file (or touch the emptied, still mmapped -shm: SIGBUS) before it dies.
  const pid_t self = getpid();
  const pid_t child = fork();
  if (child < 0) die("fork for the cut");
  if (child == 0) {
    waitStopped(self);
    restoreAll();
    if (kill(self, SIGKILL) != 0) die("kill of the cut process");
    _exit(0);
  }
  if (kill(self, SIGSTOP) != 0) die("SIGSTOP");
  for (;;) pause();  // the child kills us
}

void onCutSignal(int) {
  const int saved = errno;
  const char c = 'x';
  if (syscall(SYS_write, shim->pipe_write, &c, 1) < 0) {
    // The cut thread will not wake: nothing safe to do in a handler.
  }
  errno = saved;
}

__attribute__((constructor)) void init() {
  resolve();
  shim = new Shim;
  if (const char* s = std::getenv("POWERCUT_SIGNAL")) shim->cut_signal = std::atoi(s);
  if (const char* s = std::getenv("POWERCUT_DIR")) shim->dir = s;
  if (const char* s = std::getenv("POWERCUT_MAX_BYTES")) shim->max_bytes = std::strtoull(s, 0, 10);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) die("pipe2");
  shim->pipe_read = fds[0];
  shim->pipe_write = fds[1];
  // The cut thread takes no signals: the handler must not interrupt it holding the mutex.
  sigset_t all, old;
  sigfillset(&all);
  if (pthread_sigmask(SIG_SETMASK, &all, &old) != 0) die("pthread_sigmask");
  pthread_t t;
  if (pthread_create(&t, nullptr, cutThread, nullptr) != 0) die("pthread_create");
  if (pthread_detach(t) != 0) die("pthread_detach");
  if (pthread_sigmask(SIG_SETMASK, &old, nullptr) != 0) die("pthread_sigmask");
  struct sigaction sa {};
  sa.sa_handler = onCutSignal;
  sa.sa_flags = SA_RESTART;
  if (sigemptyset(&sa.sa_mask) != 0 || sigaction(shim->cut_signal, &sa, nullptr) != 0)
    die("sigaction for POWERCUT_SIGNAL");
}

}  // namespace
}  // namespace gw::powercut

using gw::powercut::real;
using gw::powercut::shim;

extern "C" {

ssize_t write(int fd, const void* buf, size_t n) {
  gw::powercut::resolve();
  if (!shim) return real.write(fd, buf, n);
  std::lock_guard lk(shim->mu);
  gw::powercut::beforeWrite(fd, -1, n);
  return real.write(fd, buf, n);
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  gw::powercut::resolve();
  if (!shim) return real.pwrite(fd, buf, n, off);
  std::lock_guard lk(shim->mu);
  gw::powercut::beforeWrite(fd, off, n);
  return real.pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void* buf, size_t n, off64_t off) {
  gw::powercut::resolve();
  if (!shim) return real.pwrite64(fd, buf, n, off);
  std::lock_guard lk(shim->mu);
  gw::powercut::beforeWrite(fd, static_cast<off_t>(off), n);
  return real.pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec* iov, int cnt) {
  gw::powercut::resolve();
  if (!shim) return real.writev(fd, iov, cnt);
  size_t total = 0;
  for (int i = 0; i < cnt; ++i) total += iov[i].iov_len;
  std::lock_guard lk(shim->mu);
  gw::powercut::beforeWrite(fd, -1, total);
  return real.writev(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec* iov, int cnt, off_t off) {
  gw::powercut::resolve();
  if (!shim) return real.pwritev(fd, iov, cnt, off);
  size_t total = 0;
  for (int i = 0; i < cnt; ++i) total += iov[i].iov_len;
  std::lock_guard lk(shim->mu);
  gw::powercut::beforeWrite(fd, off, total);
  return real.pwritev(fd, iov, cnt, off);
}

int ftruncate(int fd, off_t len) {
  gw::powercut::resolve();
  if (!shim) return real.ftruncate(fd, len);
  std::lock_guard lk(shim->mu);
  struct stat st;
  if (gw::powercut::FileState* f = gw::powercut::track(fd, st); f && len < st.st_size)
    gw::powercut::preserve(fd, *f, len, static_cast<size_t>(st.st_size - len));
  return real.ftruncate(fd, len);
}

int ftruncate64(int fd, off64_t len) { return ftruncate(fd, static_cast<off_t>(len)); }

int fsync(int fd) {
  gw::powercut::resolve();
  if (!shim) return real.fsync(fd);
  std::lock_guard lk(shim->mu);
  const int rc = real.fsync(fd);
  if (rc == 0) gw::powercut::synced(fd);
  return rc;
}

int fdatasync(int fd) {
  gw::powercut::resolve();
  if (!shim) return real.fdatasync(fd);
  std::lock_guard lk(shim->mu);
  const int rc = real.fdatasync(fd);
  if (rc == 0) gw::powercut::synced(fd);
  return rc;
}

int sync_file_range(int fd, off64_t off, off64_t n, unsigned int flags) {
  gw::powercut::resolve();
  if (!shim) return real.sync_file_range(fd, off, n, flags);
  std::lock_guard lk(shim->mu);
  const int rc = real.sync_file_range(fd, off, n, flags);
  constexpr unsigned kAll =
      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
  struct stat st;
  gw::powercut::FileState* f =
      rc == 0 && (flags & kAll) == kAll ? gw::powercut::track(fd, st) : nullptr;
  if (!f) return rc;
  // The data of the range is durable, not the file size (no metadata is written).
  const off_t end = n == 0 ? st.st_size : static_cast<off_t>(off + n);
  for (auto it = f->pre_images.begin(); it != f->pre_images.end();) {
    const off_t it_end = it->first + static_cast<off_t>(it->second.size());
    if (it->first >= static_cast<off_t>(off) && it_end <= end) {
      shim->held_bytes -= it->second.size();
      it = f->pre_images.erase(it);
    } else {
      ++it;  // partly covered: kept whole (conservative: more is lost at the cut)
    }
  }
  return rc;
}

void sync() {
  gw::powercut::resolve();
  if (!shim) return real.sync();
  std::lock_guard lk(shim->mu);
  real.sync();
  for (auto& [key, f] : shim->files) {
    struct stat st;
    if (stat(f.path.c_str(), &st) == 0 && st.st_dev == key.first && st.st_ino == key.second)
      f.synced_size = st.st_size;
    f.pre_images.clear();
  }
  shim->held_bytes = 0;
}

int syncfs(int fd) {
  gw::powercut::resolve();
  if (!shim) return real.syncfs(fd);
  std::lock_guard lk(shim->mu);
  const int rc = real.syncfs(fd);
  struct stat fs;
  if (rc != 0 || fstat(fd, &fs) != 0) return rc;
  for (auto& [key, f] : shim->files) {
    if (key.first != fs.st_dev) continue;
    struct stat st;
    if (stat(f.path.c_str(), &st) == 0 && st.st_dev == key.first && st.st_ino == key.second)
      f.synced_size = st.st_size;
    for (auto& [off, bytes] : f.pre_images) shim->held_bytes -= bytes.size();
    f.pre_images.clear();
  }
  return rc;
}

}  // extern "C"
