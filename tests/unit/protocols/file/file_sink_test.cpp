// The file sink against a temporary folder, with an injected clock.
#include "protocols/file/file_sink.h"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/resource.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/record_json.h"
#include "tests/support/alloc_counter.h"
#include "tests/support/temp_dir.h"

namespace fs = std::filesystem;
using gw::kNanosPerMilli;
using gw::kNanosPerSecond;
using gw::Nanos;
using gw::ReadingRecord;
using gw::RecordKind;
using gw::SendStatus;
using gw::Series;
using gw::file::FileOptions;
using gw::file::kNanosPerHour;
using gw::file::kNanosPerMinute;

namespace {

// 2026-11-21T10:15:30.123456789Z
constexpr Nanos kT0 = 1'795'256'130'123'456'789;
constexpr Nanos kHour10 = 1'795'255'200'000'000'000;  // 2026-11-21T10:00:00Z

const char* kAlert =
    R"({"rule":"bearing-overheat","device":"pump-7","metric":"bearing_temp","tags":{"line":"3"},)"
    R"("state":"firing","severity":"critical","statistic":"p95","value":91.5,"threshold":85,)"
    R"("time":"2026-11-21T10:15:40.000Z","dedup_key":"plant1-line3/bearing-overheat/pump-7"})";

struct Batch {
  std::deque<Series> series;  // stable addresses
  std::deque<gw::InternedSeries> interned;
  std::vector<ReadingRecord> records;

  ReadingRecord& add(RecordKind kind = RecordKind::kReading) {
    series.push_back(Series{"pump-7", "bearing_temp", {{"line", "3"}}});
    ReadingRecord r;
    r.seq = records.size() + 1;
    r.series = &interned.emplace_back(series.back());
    r.kind = kind;
    r.value = 21.5;
    r.event_time = kT0;
    records.push_back(r);
    return records.back();
  }
  /// One of each kind, as in the design's "Sinks" section.
  static Batch mixed() {
    Batch b;
    ReadingRecord& r = b.add();
    r.device_time = kT0 - 2'500 * kNanosPerMilli;
    r.reference = gw::TimeReference::kBroker;
    ReadingRecord& a = b.add(RecordKind::kAggregate);
    a.value = std::nan("");
    a.event_time = 1'795'256'130'000'000'000;  // 10:15:30Z
    a.window.size = 10 * kNanosPerSecond;
    a.window.start = a.event_time;
    a.window.count = 12;
    a.window.late = 1;
    a.window.min = 20.5;
    a.window.max = 23;
    a.window.avg = 21.25;
    a.window.p95 = 22.75;
    ReadingRecord& al = b.add(RecordKind::kAlert);
    al.value = 91.5;
    al.alert = kAlert;
    return b;
  }
  /// `n` readings whose JSON differs (seq and value).
  static Batch readings(size_t n, std::uint64_t first_seq = 1) {
    Batch b;
    for (size_t i = 0; i < n; ++i) {
      ReadingRecord& r = b.add();
      r.seq = first_seq + i;
      r.value = static_cast<double>(i) / 8;
    }
    return b;
  }
  /// The lines the Kafka sink's values make, one per wanted record.
  std::string lines(bool readings = true, bool aggregates = true, bool alerts = true) const {
    std::string out;
    for (const ReadingRecord& r : records) {
      if (r.kind == RecordKind::kReading && readings) {
        gw::appendReadingJson(out, r);
      } else if (r.kind == RecordKind::kAggregate && aggregates) {
        gw::appendAggregateJson(out, r);
      } else if (r.kind == RecordKind::kAlert && alerts) {
        out += r.alert;
      } else {
        continue;
      }
      out += '\n';
    }
    return out;
  }
};

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void writeFile(const fs::path& p, const std::string& data) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << data;
}

/// `bytes` of archive-like text in whole lines.
std::string filler(size_t bytes) {
  std::string line(99, 'x');
  line += '\n';
  std::string out;
  while (out.size() + line.size() <= bytes) out += line;
  return out;
}

struct Gunzipped {
  std::string text;
  bool complete = false;  ///< every member ended and nothing follows
  int members = 0;
};

/// Decompresses concatenated gzip members as far as they go.
Gunzipped gunzip(const std::string& data) {
  Gunzipped g;
  z_stream zs{};
  REQUIRE(inflateInit2(&zs, 15 + 16) == Z_OK);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  char buf[16384];
  for (;;) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    g.text.append(buf, sizeof buf - zs.avail_out);
    if (rc == Z_STREAM_END) {
      ++g.members;
      if (zs.avail_in == 0) {
        g.complete = true;
        break;
      }
      REQUIRE(inflateReset(&zs) == Z_OK);
    } else if (rc != Z_OK) {
      break;  // torn or garbage
    }
  }
  inflateEnd(&zs);
  return g;
}

/// `gzip -dc FILE`: its output and exit status.
std::pair<std::string, int> gzipDc(const fs::path& file) {
  const std::string cmd = "gzip -dc '" + file.string() + "' 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  REQUIRE_MESSAGE(status != -1, "pclose failed");
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

struct Fixture {
  gw::test::TempDir dir{"gw-file"};
  fs::path archive = dir.path / "archive";
  Nanos now = kT0;
  FileOptions options;

  Fixture() {
    options.path = archive;
    options.clock = [this] { return now; };
  }
  std::unique_ptr<gw::Sink> sink() const { return gw::file::makeFileSink(options); }
};

/// Lowers the process's file size limit (writes past it fail with EFBIG) for one scope.
struct FileSizeLimit {
  rlimit old{};
  explicit FileSizeLimit(rlim_t bytes) {
    signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of being killed
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
    rlimit lim = old;
    lim.rlim_cur = bytes;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
  }
  ~FileSizeLimit() { setrlimit(RLIMIT_FSIZE, &old); }
};

}  // namespace

TEST_CASE("file names: the period's start, UTC, minutes when rotate is not whole hours") {
  using gw::file::archiveFileName;
  CHECK(archiveFileName(kHour10, kNanosPerHour, false) == "readings-2026-11-21T10.jsonl");
  CHECK(archiveFileName(kHour10, kNanosPerHour, true) == "readings-2026-11-21T10.jsonl.gz");
  CHECK(archiveFileName(kHour10 + 45 * kNanosPerMinute, 15 * kNanosPerMinute, false) ==
        "readings-2026-11-21T10-45.jsonl");
  CHECK(archiveFileName(kHour10 - 10 * kNanosPerHour, 24 * kNanosPerHour, true) ==
        "readings-2026-11-21T00.jsonl.gz");
}

TEST_CASE("each line is the record's Kafka JSON: readings, aggregates, alerts") {
  Fixture f;
  auto sink = f.sink();
  CHECK(sink->name() == "file");
  Batch b = Batch::mixed();
  const auto res = sink->send(b.records);
  REQUIRE_MESSAGE(res.status == SendStatus::kDelivered, res.error);

  const fs::path file = f.archive / "readings-2026-11-21T10.jsonl";
  const std::string text = readFile(file);
  CHECK(text == b.lines());
  // The contract, literally (design "Sinks"), one record of each kind.
  CHECK(text ==
        std::string(
            R"({"device":"pump-7","metric":"bearing_temp","tags":{"line":"3"},"value":21.5,)"
            R"("time":"2026-11-21T10:15:30.123Z","device_time":"2026-11-21T10:15:27.623Z",)"
            R"("reference":"broker","offset_ms":2500,"seq":1})"
            "\n"
            R"({"device":"pump-7","metric":"bearing_temp","tags":{"line":"3"},"window":"10s",)"
            R"("window_start":"2026-11-21T10:15:30.000Z","window_end":"2026-11-21T10:15:40.000Z",)"
            R"("count":12,"min":20.5,"max":23,"avg":21.25,"p95":22.75,"late":1,"seq":2})"
            "\n") +
            kAlert + "\n");

  SUBCASE("later batches append to the same period's file") {
    Batch more = Batch::readings(3, 10);
    REQUIRE(sink->send(more.records).status == SendStatus::kDelivered);
    CHECK(readFile(file) == b.lines() + more.lines());
  }
  SUBCASE("a restart appends to the period's file") {
    sink.reset();
    Batch more = Batch::readings(2, 10);
    REQUIRE(f.sink()->send(more.records).status == SendStatus::kDelivered);
    CHECK(readFile(file) == b.lines() + more.lines());
  }
}

TEST_CASE("send filter: only the kinds named are written") {
  Fixture f;
  Batch b = Batch::mixed();
  SUBCASE("aggregates and alerts") {
    f.options.send_readings = false;
    REQUIRE(f.sink()->send(b.records).status == SendStatus::kDelivered);
    CHECK(readFile(f.archive / "readings-2026-11-21T10.jsonl") == b.lines(false, true, true));
  }
  SUBCASE("readings only; a batch with nothing wanted is delivered without a file") {
    f.options.send_aggregates = f.options.send_alerts = false;
    auto sink = f.sink();
    Batch none;
    none.add(RecordKind::kAlert).alert = kAlert;
    none.add(RecordKind::kAggregate);
    CHECK(sink->send(none.records).status == SendStatus::kDelivered);
    CHECK_FALSE(fs::exists(f.archive));
    REQUIRE(sink->send(b.records).status == SendStatus::kDelivered);
    CHECK(readFile(f.archive / "readings-2026-11-21T10.jsonl") == b.lines(true, false, false));
  }
}

TEST_CASE("rotation at the period boundary, by the time of writing") {
  Fixture f;
  SUBCASE("hourly, UTC") {
    auto sink = f.sink();
    Batch a = Batch::readings(2, 1), b = Batch::readings(2, 3), c = Batch::readings(1, 5);
    f.now = kHour10 + kNanosPerHour - 1;  // 10:59:59.999999999
    REQUIRE(sink->send(a.records).status == SendStatus::kDelivered);
    f.now = kHour10 + kNanosPerHour;  // 11:00:00
    REQUIRE(sink->send(b.records).status == SendStatus::kDelivered);
    f.now += 59 * kNanosPerMinute;
    REQUIRE(sink->send(c.records).status == SendStatus::kDelivered);
    CHECK(listing(f.archive) ==
          std::vector<std::string>{"readings-2026-11-21T10.jsonl", "readings-2026-11-21T11.jsonl"});
    CHECK(readFile(f.archive / "readings-2026-11-21T10.jsonl") == a.lines());
    CHECK(readFile(f.archive / "readings-2026-11-21T11.jsonl") == b.lines() + c.lines());
  }
  SUBCASE("15 minutes, aligned to the epoch") {
    f.options.rotate = 15 * kNanosPerMinute;
    f.options.gzip = true;
    auto sink = f.sink();
    Batch a = Batch::readings(1, 1), b = Batch::readings(1, 2);
    f.now = kHour10 + 29 * kNanosPerMinute;
    REQUIRE(sink->send(a.records).status == SendStatus::kDelivered);
    f.now = kHour10 + 30 * kNanosPerMinute;
    REQUIRE(sink->send(b.records).status == SendStatus::kDelivered);
    CHECK(listing(f.archive) == std::vector<std::string>{"readings-2026-11-21T10-15.jsonl.gz",
                                                         "readings-2026-11-21T10-30.jsonl.gz"});
  }
}

TEST_CASE("gzip: one member per batch, readable by zlib and gzip -dc, torn tails survive") {
  Fixture f;
  f.options.gzip = true;
  const fs::path file = f.archive / "readings-2026-11-21T10.jsonl.gz";
  auto sink = f.sink();
  Batch b1 = Batch::mixed(), b2 = Batch::readings(500, 10), b3 = Batch::readings(300, 600);
  REQUIRE(sink->send(b1.records).status == SendStatus::kDelivered);
  REQUIRE(sink->send(b2.records).status == SendStatus::kDelivered);
  const auto after2 = fs::file_size(file);
  REQUIRE(sink->send(b3.records).status == SendStatus::kDelivered);
  const std::string all = b1.lines() + b2.lines() + b3.lines();

  const std::string data = readFile(file);
  const Gunzipped g = gunzip(data);
  CHECK(g.complete);
  CHECK(g.members == 3);
  CHECK(g.text == all);
  const auto [text, status] = gzipDc(file);
  CHECK(status == 0);
  CHECK(text == all);

  SUBCASE("a crash in the middle of a batch: every line of the completed batches is readable") {
    sink.reset();
    writeFile(file, data.substr(0, after2 + (data.size() - after2) / 2));
    const Gunzipped torn = gunzip(readFile(file));
    CHECK_FALSE(torn.complete);
    CHECK(torn.text.substr(0, b1.lines().size() + b2.lines().size()) == b1.lines() + b2.lines());
    CHECK(gzipDc(file).first.starts_with(b1.lines() + b2.lines()));

    // The restarted sink cuts the torn member off before appending: a valid file again.
    Batch b4 = Batch::readings(2, 900);
    REQUIRE(f.sink()->send(b4.records).status == SendStatus::kDelivered);
    const auto [repaired, rc] = gzipDc(file);
    CHECK(rc == 0);
    CHECK(repaired == b1.lines() + b2.lines() + b4.lines());
  }
  SUBCASE("garbage after the last member (zeros from a power cut) is cut off too") {
    sink.reset();
    writeFile(file, data + std::string(4096, '\0'));
    f.now += kNanosPerHour;  // the torn file is no longer the current one: repaired at start
    Batch b4 = Batch::readings(1, 900);
    REQUIRE(f.sink()->send(b4.records).status == SendStatus::kDelivered);
    CHECK(readFile(file) == data);
    CHECK(gzipDc(f.archive / "readings-2026-11-21T11.jsonl.gz") == std::make_pair(b4.lines(), 0));
  }
}

TEST_CASE("plain files: a torn last line is cut off at restart") {
  Fixture f;
  const fs::path file = f.archive / "readings-2026-11-21T10.jsonl";
  Batch b1 = Batch::readings(3, 1), b2 = Batch::readings(2, 4);
  REQUIRE(f.sink()->send(b1.records).status == SendStatus::kDelivered);
  writeFile(file, b1.lines() + R"({"device":"pump-7","met)");
  REQUIRE(f.sink()->send(b2.records).status == SendStatus::kDelivered);
  CHECK(readFile(file) == b1.lines() + b2.lines());
}

TEST_CASE("retention by age: whole files by start time, only archive files, at rotation") {
  Fixture f;
  f.options.max_age = 3 * kNanosPerHour;
  fs::create_directories(f.archive);
  for (const char* h : {"05", "06", "07", "08", "09"})
    writeFile(f.archive / fmt::format("readings-2026-11-21T{}.jsonl", h), filler(1000));
  writeFile(f.archive / "readings-2026-11-21T06.jsonl.gz", "old gzip");
  writeFile(f.archive / "readings-2026-11-21T07-30.jsonl", filler(100));
  writeFile(f.archive / "notes.txt", "mine");
  writeFile(f.archive / "readings-latest.jsonl", "not ours");

  auto sink = f.sink();
  Batch b = Batch::readings(1);
  REQUIRE(sink->send(b.records).status == SendStatus::kDelivered);  // 10:15:30: cut at 07:15:30
  CHECK(listing(f.archive) ==
        std::vector<std::string>{"notes.txt", "readings-2026-11-21T07-30.jsonl",
                                 "readings-2026-11-21T08.jsonl", "readings-2026-11-21T09.jsonl",
                                 "readings-2026-11-21T10.jsonl", "readings-latest.jsonl"});
  f.now = kHour10 + kNanosPerHour + 20 * kNanosPerMinute;  // 11:20: cut at 08:20
  REQUIRE(sink->send(b.records).status == SendStatus::kDelivered);
  CHECK(listing(f.archive) == std::vector<std::string>{"notes.txt", "readings-2026-11-21T09.jsonl",
                                                       "readings-2026-11-21T10.jsonl",
                                                       "readings-2026-11-21T11.jsonl",
                                                       "readings-latest.jsonl"});
  f.now += 40 * kNanosPerMinute;  // 12:00, rotation: cut at 09:00 (the 09 file stays)
  REQUIRE(sink->send(b.records).status == SendStatus::kDelivered);
  CHECK(fs::exists(f.archive / "readings-2026-11-21T09.jsonl"));
  CHECK(fs::exists(f.archive / "notes.txt"));
}

TEST_CASE("retention by size: the oldest whole files go first, never the current one") {
  Fixture f;
  constexpr std::uint64_t kMiB = 1024 * 1024;
  f.options.max_size = kMiB;
  fs::create_directories(f.archive);

  SUBCASE("at start") {
    for (const char* h : {"06", "07", "08", "09"})
      writeFile(f.archive / fmt::format("readings-2026-11-21T{}.jsonl", h), filler(400 * 1024));
    REQUIRE(f.sink()->send(Batch::readings(1).records).status == SendStatus::kDelivered);
    CHECK(listing(f.archive) == std::vector<std::string>{"readings-2026-11-21T08.jsonl",
                                                         "readings-2026-11-21T09.jsonl",
                                                         "readings-2026-11-21T10.jsonl"});
  }
  SUBCASE("the current file alone above the limit stays") {
    writeFile(f.archive / "readings-2026-11-21T09.jsonl", filler(100 * 1024));
    writeFile(f.archive / "readings-2026-11-21T10.jsonl", filler(1536 * 1024));
    Batch b = Batch::readings(1);
    REQUIRE(f.sink()->send(b.records).status == SendStatus::kDelivered);
    CHECK(listing(f.archive) == std::vector<std::string>{"readings-2026-11-21T10.jsonl"});
    CHECK(readFile(f.archive / "readings-2026-11-21T10.jsonl") == filler(1536 * 1024) + b.lines());
  }
  SUBCASE("while the current file grows") {
    writeFile(f.archive / "readings-2026-11-21T08.jsonl", filler(300 * 1024));
    writeFile(f.archive / "readings-2026-11-21T09.jsonl", filler(300 * 1024));
    auto sink = f.sink();
    REQUIRE(sink->send(Batch::readings(1).records).status == SendStatus::kDelivered);
    CHECK(listing(f.archive).size() == 3);
    Batch big = Batch::readings(4000, 2);  // ~0.6 MB
    REQUIRE(big.lines().size() > 500 * 1024);
    REQUIRE(sink->send(big.records).status == SendStatus::kDelivered);
    CHECK(listing(f.archive) ==
          std::vector<std::string>{"readings-2026-11-21T09.jsonl", "readings-2026-11-21T10.jsonl"});
  }
}

TEST_CASE("I/O errors are kRetry with the OS error, and leave the file whole") {
  Fixture f;
  SUBCASE("the folder cannot be created: a path under a regular file") {
    f.options.path = f.dir.write("plain", "x") / "archive";
    const auto res = f.sink()->send(Batch::readings(1).records);
    CHECK(res.status == SendStatus::kRetry);
    CHECK(res.error.find("Not a directory") != std::string::npos);
    CHECK(res.error.find(f.options.path.string()) != std::string::npos);
  }
  SUBCASE("the folder cannot be created: /proc") {
    f.options.path = "/proc/gw-file-sink-test/archive";
    const auto res = f.sink()->send(Batch::readings(1).records);
    CHECK(res.status == SendStatus::kRetry);
    CHECK(res.error.find("No such file or directory") != std::string::npos);
  }
  // A write that fails half way (the file size limit): the batch is cut off, then re-sent.
  auto writeFails = [&](bool gzip) {
    f.options.gzip = gzip;
    const fs::path file =
        f.archive / (gzip ? "readings-2026-11-21T10.jsonl.gz" : "readings-2026-11-21T10.jsonl");
    auto sink = f.sink();
    Batch b1 = Batch::readings(5, 1), b2 = Batch::readings(3000, 6);
    REQUIRE(sink->send(b1.records).status == SendStatus::kDelivered);
    const std::string before = readFile(file);
    {
      FileSizeLimit limit(before.size() + 2000);
      const auto res = sink->send(b2.records);
      CHECK(res.status == SendStatus::kRetry);
      CHECK(res.error.find("File too large") != std::string::npos);
    }
    CHECK(readFile(file) == before);
    REQUIRE(sink->send(b2.records).status == SendStatus::kDelivered);
    const std::string text = gzip ? gunzip(readFile(file)).text : readFile(file);
    CHECK(text == b1.lines() + b2.lines());
  };
  SUBCASE("a write fails half way: plain") { writeFails(false); }
  SUBCASE("a write fails half way: gzip") { writeFails(true); }
  SUBCASE("the folder removed while running is created again") {
    auto sink = f.sink();
    Batch b1 = Batch::readings(1, 1), b2 = Batch::readings(1, 2);
    REQUIRE(sink->send(b1.records).status == SendStatus::kDelivered);
    fs::remove_all(f.archive);
    REQUIRE(sink->send(b2.records).status == SendStatus::kDelivered);
    CHECK(readFile(f.archive / "readings-2026-11-21T10.jsonl") == b2.lines());
  }
  SUBCASE("the file removed while running is created again") {
    auto sink = f.sink();
    Batch b1 = Batch::readings(1, 1), b2 = Batch::readings(1, 2);
    REQUIRE(sink->send(b1.records).status == SendStatus::kDelivered);
    fs::remove(f.archive / "readings-2026-11-21T10.jsonl");
    REQUIRE(sink->send(b2.records).status == SendStatus::kDelivered);
    CHECK(readFile(f.archive / "readings-2026-11-21T10.jsonl") == b2.lines());
  }
}

TEST_CASE("interrupt(): every later send gives up with kRetry") {
  Fixture f;
  auto sink = f.sink();
  sink->interrupt();
  const auto res = sink->send(Batch::readings(1).records);
  CHECK(res.status == SendStatus::kRetry);
  CHECK(res.error == "interrupted");
  CHECK_FALSE(fs::exists(f.archive));
}

TEST_CASE("steady state: a batch allocates nothing") {
  for (const bool gzip : {false, true}) {
    CAPTURE(gzip);
    Fixture f;
    f.options.gzip = gzip;
    f.options.max_size = 1024 * 1024 * 1024;
    auto sink = f.sink();
    Batch b = Batch::mixed();
    for (int i = 0; i < 50; ++i) {
      Batch more = Batch::readings(1);
      b.records.push_back(more.records[0]);
      b.records.back().series = b.records[0].series;
    }
    REQUIRE(sink->send(b.records).status == SendStatus::kDelivered);
    REQUIRE(sink->send(b.records).status == SendStatus::kDelivered);
    const long before = gw::test::allocations();
    SendStatus status = SendStatus::kRetry;
    for (int i = 0; i < 10; ++i) status = sink->send(b.records).status;
    const long allocated = gw::test::allocations() - before;
    CHECK(status == SendStatus::kDelivered);
    CHECK(allocated == 0);
  }
  CHECK(gw::test::allocations() > 0);  // the counter counts
}
