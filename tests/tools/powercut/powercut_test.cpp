// Checks libpowercut.so: a child (this program again, under LD_PRELOAD) writes, syncs, writes
// more, then cuts the power; afterwards only what was synced may be left.
// Usage: powercut_test PATH/libpowercut.so
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    ++failures;
  }
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "powercut_test child: %s: %s\n", what, std::strerror(errno));
  std::_Exit(2);
}

void writeAll(int fd, const std::string& s) {
  if (write(fd, s.data(), s.size()) != static_cast<ssize_t>(s.size())) fail("write");
}

void pwriteAll(int fd, const std::string& s, off_t off) {
  if (pwrite(fd, s.data(), s.size(), off) != static_cast<ssize_t>(s.size())) fail("pwrite");
}

int openOrFail(const std::string& path, int flags) {
  const int fd = open(path.c_str(), flags, 0644);
  if (fd < 0) fail("open");
  return fd;
}

/// Runs under the shim: every write after the last fsync of its file must be undone.
[[noreturn]] void child(const std::string& dir) {
  // a: synced, then overwritten in place, extended, written with writev and truncated.
  const int a = openOrFail(dir + "/a", O_RDWR | O_CREAT);
  writeAll(a, "0123456789");
  if (fsync(a) != 0) fail("fsync");
  pwriteAll(a, "XX", 2);
  pwriteAll(a, "YYYY", 1);  // overlaps the first pre-image: the synced bytes must still win
  std::string tail = "tail", more = "more";
  iovec iov[2] = {{tail.data(), tail.size()}, {more.data(), more.size()}};
  if (lseek(a, 0, SEEK_END) < 0 || writev(a, iov, 2) != 8) fail("writev");
  if (ftruncate(a, 5) != 0) fail("ftruncate");
  // b: created and written, never synced: comes back empty.
  const int b = openOrFail(dir + "/b", O_WRONLY | O_CREAT);
  writeAll(b, "lost");
  // c: synced with fdatasync, then appended to through an O_APPEND, write-only descriptor.
  const int c = openOrFail(dir + "/c", O_WRONLY | O_CREAT | O_APPEND);
  writeAll(c, "kept");
  if (fdatasync(c) != 0) fail("fdatasync");
  pwriteAll(openOrFail(dir + "/c", O_RDWR), "ZZ", 0);  // another descriptor, same file
  writeAll(c, "gone");
  // d-shm: SQLite's wal-index; a cut loses it whole, synced or not.
  const int d = openOrFail(dir + "/d-shm", O_RDWR | O_CREAT);
  writeAll(d, "index");
  if (fsync(d) != 0) fail("fsync");
  // e: O_DSYNC writes are durable when they return.
  const int e = openOrFail(dir + "/e", O_WRONLY | O_CREAT | O_DSYNC);
  writeAll(e, "durable");
  if (kill(getpid(), SIGUSR2) != 0) fail("kill");
  for (;;) pause();  // the shim kills us
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--child") child(argv[2]);
  if (argc != 2) {
    std::fprintf(stderr, "usage: powercut_test PATH/libpowercut.so\n");
    return 2;
  }
  char tmpl[] = "/tmp/powercut-test-XXXXXX";
  if (!mkdtemp(tmpl)) {
    std::perror("mkdtemp");
    return 2;
  }
  const std::string dir = tmpl;
  const pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    return 2;
  }
  if (pid == 0) {
    if (setenv("LD_PRELOAD", argv[1], 1) != 0 || setenv("POWERCUT_DIR", dir.c_str(), 1) != 0)
      std::_Exit(2);
    execl("/proc/self/exe", argv[0], "--child", dir.c_str(), static_cast<char*>(nullptr));
    std::_Exit(2);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) {
    std::perror("waitpid");
    return 2;
  }
  check(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
        "the child was killed by the cut (status " + std::to_string(status) + ")");
  check(slurp(dir + "/a") == "0123456789",
        "a holds its synced content, got '" + slurp(dir + "/a") + "'");
  check(slurp(dir + "/b").empty(), "b (never synced) is empty, got '" + slurp(dir + "/b") + "'");
  check(slurp(dir + "/c") == "kept",
        "c holds what fdatasync made durable, got '" + slurp(dir + "/c") + "'");
  check(slurp(dir + "/d-shm").empty(), "d-shm is emptied");
  check(slurp(dir + "/e") == "durable", "e (O_DSYNC) keeps its write");
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (failures == 0) std::printf("powercut_test: ok\n");
  return failures == 0 ? 0 : 1;
}
