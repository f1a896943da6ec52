#include "protocols/file/file_sink.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "core/log.h"
#include "core/reading.h"
#include "core/record_json.h"

namespace gw::file {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kPrefix = "readings-";
constexpr std::string_view kPlainSuffix = ".jsonl";
constexpr std::string_view kGzipSuffix = ".jsonl.gz";
// Serialised text is written (or compressed) whenever this much has accumulated, so memory
// stays bounded whatever the batch size.
constexpr size_t kTextChunk = 256 * 1024;
constexpr size_t kOutChunk = 64 * 1024;
constexpr size_t kReadChunk = 64 * 1024;

std::string osError(int err) { return std::generic_category().message(err); }

/// Floor division: the start of the period holding `t` (also before 1970).
Nanos periodStart(Nanos t, Nanos period) {
  Nanos q = t / period;
  if (t % period < 0) --q;
  return q * period;
}

/// The start time encoded in an archive file's name; nullopt for any other file.
std::optional<Nanos> parseArchiveName(std::string_view name) {
  if (!name.starts_with(kPrefix)) return std::nullopt;
  name.remove_prefix(kPrefix.size());
  if (name.ends_with(kGzipSuffix)) {
    name.remove_suffix(kGzipSuffix.size());
  } else if (name.ends_with(kPlainSuffix)) {
    name.remove_suffix(kPlainSuffix.size());
  } else {
    return std::nullopt;
  }
  // YYYY-MM-DDTHH or YYYY-MM-DDTHH-MM, read through the RFC 3339 parser.
  std::string stamp(name.substr(0, 13));
  if (name.size() == 13) {
    stamp += ":00:00Z";
  } else if (name.size() == 16 && name[13] == '-') {
    stamp += ':';
    stamp += name.substr(14, 2);
    stamp += ":00Z";
  } else {
    return std::nullopt;
  }
  return parseRfc3339(stamp);
}

/// write() until everything is written; the OS error otherwise.
int writeAll(int fd, const char* p, size_t n, off_t& size) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    n -= static_cast<size_t>(w);
    size += w;
  }
  return 0;
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

class FileSink final : public Sink {
 public:
  explicit FileSink(FileOptions options) : options_(std::move(options)) {
    // The parser guarantees it; periods and names rely on it.
    assert(options_.rotate >= kNanosPerMinute && kNanosPerDay % options_.rotate == 0);
    if (!options_.clock) options_.clock = &wallNow;
    text_.reserve(kTextChunk + 4096);
    if (options_.gzip) {
      out_.resize(kOutChunk);
      // windowBits 15 + 16: a gzip wrapper (header and CRC trailer) around each member.
      if (deflateInit2(&zs_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
          Z_OK)
        throw std::runtime_error("file sink: zlib deflateInit2 failed");
      deflate_ready_ = true;
    }
  }

  ~FileSink() override {
    closeFile();
    if (deflate_ready_) deflateEnd(&zs_);
  }

  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  const std::string& name() const override { return name_; }

  void interrupt() override { interrupted_.store(true, std::memory_order_relaxed); }

  SendResult send(std::span<const ReadingRecord> batch) override {
    if (interrupted()) return {SendStatus::kRetry, "interrupted"};
    // A batch with nothing for this sink opens no file.
    if (std::none_of(batch.begin(), batch.end(), [&](const auto& r) { return wanted(r); }))
      return {SendStatus::kDelivered, {}};

    const Nanos now = options_.clock();
    const Nanos period = periodStart(now, options_.rotate);
    // A file removed (or its folder) under us would swallow every write: start a new one.
    if (fd_ >= 0 && (period != period_ || !fileStillThere())) closeFile();
    if (fd_ < 0) {
      if (auto error = openFile(period, now)) return {SendStatus::kRetry, std::move(*error)};
    }
    if (auto error = writeBatch(batch)) return {SendStatus::kRetry, std::move(*error)};
    if (!fileStillThere()) {
      // Removed between the check and the fsync: the lines may be gone with it.
      closeFile();
      return {SendStatus::kRetry,
              fmt::format("{} was removed while the batch was written; writing it again", path_)};
    }
    if (options_.max_size && !retention_stuck_ && others_size_ > 0 &&
        others_size_ + static_cast<std::uint64_t>(size_) > *options_.max_size)
      applyRetention(now);
    return {SendStatus::kDelivered, {}};
  }

 private:
  bool interrupted() const { return interrupted_.load(std::memory_order_relaxed); }

  bool wanted(const ReadingRecord& r) const {
    switch (r.kind) {
      case RecordKind::kReading:
        return options_.send_readings;
      case RecordKind::kAggregate:
        return options_.send_aggregates;
      case RecordKind::kAlert:
        return options_.send_alerts && !r.alert.empty();
    }
    return false;
  }

  bool fileStillThere() const {
    struct stat st;
    return ::stat(path_.c_str(), &st) == 0 && st.st_ino == ino_ && st.st_dev == dev_;
  }

  std::optional<std::string> openFile(Nanos period, Nanos now) {
    std::error_code ec;
    const bool created = fs::create_directories(options_.path, ec);
    if (ec) return fmt::format("cannot create folder {}: {}", options_.path.string(), ec.message());
    // A new folder's own entry must survive a power cut as well as the files in it.
    if (created) {
      if (auto error = syncFolder(options_.path.parent_path())) return error;
    }
    file_name_ = archiveFileName(period, options_.rotate, options_.gzip);
    path_ = (options_.path / file_name_).string();
    if (!started_) {
      // A crash can only have torn the file written last, which need not be this period's.
      if (auto newest = newestArchive(); newest && *newest != file_name_) {
        if (auto error = repair((options_.path / *newest).string())) return error;
      }
      started_ = true;
    }
    struct stat st;
    if (::stat(path_.c_str(), &st) == 0) {
      if (auto error = repair(path_)) return error;
    }
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return fmt::format("cannot open {}: {}", path_, osError(errno));
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      return fmt::format("cannot stat {}: {}", path_, osError(err));
    }
    // Without this, a power cut can lose a new file's folder entry, and with it lines whose
    // data was fsync'ed.
    if (auto error = syncFolder(options_.path)) {
      ::close(fd);
      return error;
    }
    fd_ = fd;
    size_ = st.st_size;
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    period_ = period;
    retention_stuck_ = false;
    applyRetention(now);
    return std::nullopt;
  }

  void closeFile() {
    if (fd_ < 0) return;
    // Every delivered batch was fsync'ed; an error here loses nothing we confirmed.
    if (::close(fd_) != 0) log::warn("file: closing {}: {}", path_, osError(errno));
    fd_ = -1;
  }

  static std::optional<std::string> syncFolder(const fs::path& folder) {
    Fd dir(::open(folder.empty() ? "." : folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() < 0)
      return fmt::format("cannot open folder {}: {}", folder.string(), osError(errno));
    if (::fsync(dir.get()) != 0)
      return fmt::format("cannot fsync folder {}: {}", folder.string(), osError(errno));
    return std::nullopt;
  }

  std::optional<std::string> writeBatch(std::span<const ReadingRecord> batch) {
    const off_t before = size_;
    text_.clear();
    if (options_.gzip && deflateReset(&zs_) != Z_OK) return std::string("zlib deflateReset failed");
    for (const ReadingRecord& r : batch) {
      if (!wanted(r)) continue;
      switch (r.kind) {
        case RecordKind::kReading:
          appendReadingJson(text_, r);
          break;
        case RecordKind::kAggregate:
          appendAggregateJson(text_, r);
          break;
        case RecordKind::kAlert: {
          // Already the record's JSON. Our writer never puts a raw newline in it (they are
          // escaped in strings); should one be there anyway, it must not split the line.
          const size_t at = text_.size();
          text_ += r.alert;
          std::replace_if(
              text_.begin() + static_cast<std::ptrdiff_t>(at), text_.end(),
              [](char c) { return c == '\n' || c == '\r'; }, ' ');
          break;
        }
      }
      text_ += '\n';
      if (text_.size() >= kTextChunk) {
        if (auto error = emit(false)) return rollBack(before, std::move(*error));
        text_.clear();
      }
    }
    if (auto error = emit(true)) return rollBack(before, std::move(*error));
    if (::fsync(fd_) != 0) {
      const int err = errno;
      // After a failed fsync the kernel may have dropped the dirty pages: cut the batch off
      // and reopen (and check) the file for the next attempt.
      auto error = rollBack(before, fmt::format("cannot fsync {}: {}", path_, osError(err)));
      closeFile();
      return error;
    }
    return std::nullopt;
  }

  /// Writes text_ (compressed into the batch's gzip member, ended with `finish`).
  std::optional<std::string> emit(bool finish) {
    if (!options_.gzip) {
      if (const int err = writeAll(fd_, text_.data(), text_.size(), size_))
        return fmt::format("cannot write {}: {}", path_, osError(err));
      return std::nullopt;
    }
    zs_.next_in = reinterpret_cast<Bytef*>(text_.data());
    zs_.avail_in = static_cast<uInt>(text_.size());
    int rc = Z_OK;
    do {
      zs_.next_out = reinterpret_cast<Bytef*>(out_.data());
      zs_.avail_out = static_cast<uInt>(out_.size());
      rc = deflate(&zs_, finish ? Z_FINISH : Z_NO_FLUSH);
      // Z_BUF_ERROR only says no progress was possible (nothing to do): not an error.
      if (rc == Z_STREAM_ERROR) return std::string("zlib deflate failed");
      const size_t n = out_.size() - zs_.avail_out;
      if (const int err = writeAll(fd_, out_.data(), n, size_))
        return fmt::format("cannot write {}: {}", path_, osError(err));
    } while (zs_.avail_out == 0);
    if (finish && rc != Z_STREAM_END) return std::string("zlib deflate did not finish the member");
    return std::nullopt;
  }

  /// Cuts off what was written of a failed batch, so the file ends with a complete line
  /// (member) and the retry appends cleanly.
  std::string rollBack(off_t before, std::string error) {
    if (::ftruncate(fd_, before) != 0) {
      // Left torn: reopening repairs it before anything is appended.
      log::warn("file: cannot cut {} back after a failed write: {}", path_, osError(errno));
      closeFile();
    }
    size_ = before;
    return error;
  }

  /// The archive file with the latest start time, if any.
  std::optional<std::string> newestArchive() const {
    std::optional<std::string> newest;
    Nanos newest_start = 0;
    std::error_code ec;
    for (fs::directory_iterator it(options_.path, ec), end; !ec && it != end; it.increment(ec)) {
      std::string name = it->path().filename().string();
      const auto start = parseArchiveName(name);
      if (!start) continue;
      if (!newest || *start > newest_start || (*start == newest_start && name > *newest)) {
        newest = std::move(name);
        newest_start = *start;
      }
    }
    return newest;
  }

  /// Cuts a file a crash may have torn back to its last complete line (gzip: member).
  std::optional<std::string> repair(const std::string& path) {
    Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (fd.get() < 0) {
      if (errno == ENOENT) return std::nullopt;
      return fmt::format("cannot open {}: {}", path, osError(errno));
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return fmt::format("cannot stat {}: {}", path, osError(errno));
    if (st.st_size == 0) return std::nullopt;
    off_t keep = 0;
    std::optional<std::string> error = std::string_view(path).ends_with(kGzipSuffix)
                                           ? completeMembers(fd.get(), path, keep)
                                           : completeLines(fd.get(), st.st_size, path, keep);
    if (error) return error;
    if (keep == st.st_size) return std::nullopt;
    if (::ftruncate(fd.get(), keep) != 0 || ::fsync(fd.get()) != 0)
      return fmt::format("cannot repair {}: {}", path, osError(errno));
    log::warn("file: {} ended with an incomplete record (a crash?): cut {} bytes", path,
              st.st_size - keep);
    return std::nullopt;
  }

  /// `keep`: the length up to and including the last newline.
  std::optional<std::string> completeLines(int fd, off_t size, const std::string& path,
                                           off_t& keep) {
    std::vector<char> buf(kReadChunk);
    for (off_t end = size; end > 0;) {
      const off_t start = end - std::min<off_t>(end, static_cast<off_t>(buf.size()));
      const size_t want = static_cast<size_t>(end - start);
      const ssize_t n = ::pread(fd, buf.data(), want, start);
      if (n < 0) {
        if (errno == EINTR) continue;
        return fmt::format("cannot read {}: {}", path, osError(errno));
      }
      if (static_cast<size_t>(n) != want) return fmt::format("cannot read {}: short read", path);
      for (size_t i = want; i > 0; --i) {
        if (buf[i - 1] == '\n') {
          keep = start + static_cast<off_t>(i);
          return std::nullopt;
        }
      }
      end = start;
    }
    keep = 0;
    return std::nullopt;
  }

  /// `keep`: the length of the complete gzip members at the start of the file. Inflates the
  /// whole file (its members' lengths are known no other way): at start and when reopening.
  std::optional<std::string> completeMembers(int fd, const std::string& path, off_t& keep) {
    z_stream zs{};
    if (inflateInit2(&zs, 15 + 16) != Z_OK) return std::string("zlib inflateInit2 failed");
    struct InflateEnd {
      z_stream* zs;
      ~InflateEnd() { inflateEnd(zs); }
    } guard{&zs};
    std::vector<unsigned char> in(kReadChunk), out(kOutChunk);
    keep = 0;
    off_t offset = 0;
    for (;;) {
      if (interrupted()) return std::string("interrupted");
      const ssize_t n = ::pread(fd, in.data(), in.size(), offset);
      if (n < 0) {
        if (errno == EINTR) continue;
        return fmt::format("cannot read {}: {}", path, osError(errno));
      }
      if (n == 0) return std::nullopt;  // the end: a member left open there is torn
      zs.next_in = in.data();
      zs.avail_in = static_cast<uInt>(n);
      while (zs.avail_in > 0) {
        zs.next_out = out.data();
        zs.avail_out = static_cast<uInt>(out.size());
        const int rc = inflate(&zs, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) {
          keep = offset + n - static_cast<off_t>(zs.avail_in);
          if (inflateReset(&zs) != Z_OK) return std::string("zlib inflateReset failed");
        } else if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT) {
          return std::nullopt;  // garbage after the last complete member
        } else if (rc == Z_BUF_ERROR) {
          break;  // no progress possible: this chunk is used up
        } else if (rc != Z_OK) {
          return fmt::format("zlib inflate failed on {} ({})", path, rc);
        }
      }
      offset += n;
    }
  }

  /// Removes whole files by age, then the oldest while the archive is above max_size; never
  /// the current file, never a file whose name this sink does not write.
  void applyRetention(Nanos now) {
    others_size_ = 0;
    if (!options_.max_age && !options_.max_size) return;
    struct Found {
      Nanos start;
      std::uint64_t size;
      std::string name;
    };
    std::vector<Found> files;
    std::error_code ec;
    for (fs::directory_iterator it(options_.path, ec), end; !ec && it != end; it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (name == file_name_) continue;
      const auto start = parseArchiveName(name);
      std::error_code fec;
      if (!start || !it->is_regular_file(fec)) continue;
      const std::uint64_t size = it->file_size(fec);
      if (fec) continue;
      files.push_back({*start, size, std::move(name)});
    }
    if (ec) {
      log::warn("file: retention: cannot list {}: {}", options_.path.string(), ec.message());
      return;
    }
    std::sort(files.begin(), files.end(), [](const Found& a, const Found& b) {
      return a.start != b.start ? a.start < b.start : a.name < b.name;
    });
    std::uint64_t total = 0;
    for (const Found& f : files) total += f.size;
    const auto current = static_cast<std::uint64_t>(size_);
    size_t removed = 0;
    std::uint64_t removed_bytes = 0;
    for (const Found& f : files) {
      const bool too_old = options_.max_age && f.start < now - *options_.max_age;
      const bool too_big = options_.max_size && total + current > *options_.max_size;
      if (!too_old && !too_big) break;  // sorted: the rest are newer
      const std::string path = (options_.path / f.name).string();
      if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        log::warn("file: retention: cannot remove {}: {}", path, osError(errno));
        retention_stuck_ = true;
        continue;
      }
      total -= f.size;
      ++removed;
      removed_bytes += f.size;
    }
    others_size_ = total;
    if (options_.max_size && total + current > *options_.max_size && total > 0)
      retention_stuck_ = true;  // until the next file is opened; no rescan per batch
    if (removed > 0)
      log::info("file: retention removed {} file(s), {} bytes, from {}", removed, removed_bytes,
                options_.path.string());
  }

  const std::string name_ = "file";
  FileOptions options_;
  std::atomic<bool> interrupted_{false};
  bool started_ = false;  // the newest file has been checked for a torn tail

  // The file being written.
  int fd_ = -1;
  std::string file_name_;
  std::string path_;
  Nanos period_ = 0;
  off_t size_ = 0;
  dev_t dev_ = 0;
  ino_t ino_ = 0;

  std::uint64_t others_size_ = 0;  // bytes of the other archive files, as of the last scan
  bool retention_stuck_ = false;

  std::string text_;  // reused for every batch
  std::vector<char> out_;
  z_stream zs_{};
  bool deflate_ready_ = false;
};

}  // namespace

std::string archiveFileName(Nanos start, Nanos rotate, bool gzip) {
  const std::string stamp = formatRfc3339Millis(start);  // 2026-12-03T22:10:00.000Z
  std::string name(kPrefix);
  name.append(stamp, 0, 13);
  if (rotate % kNanosPerHour != 0) {
    name += '-';
    name.append(stamp, 14, 2);
  }
  name += gzip ? kGzipSuffix : kPlainSuffix;
  return name;
}

std::unique_ptr<Sink> makeFileSink(FileOptions options) {
  return std::make_unique<FileSink>(std::move(options));
}

}  // namespace gw::file
