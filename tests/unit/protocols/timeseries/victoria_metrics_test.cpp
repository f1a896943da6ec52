// The sink against a real VictoriaMetrics (Debian package victoria-metrics) on an ephemeral
// loopback port: what we write must come back with the same labels, values and timestamps.
#include <curl/curl.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <simdjson.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "protocols/timeseries/timeseries_sink.h"
#include "test_http.h"

extern char** environ;

namespace fs = std::filesystem;
using gw::ReadingRecord;
using gw::SendStatus;
using gw::Series;
using namespace gw::timeseries;
using namespace gw::timeseries::test;

namespace {

constexpr const char* kVmBinary = "/usr/bin/victoria-metrics";

template <typename F>
bool pollUntil(F&& ready, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (ready()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The TCP port `pid` listens on, from its socket inodes and /proc/<pid>/net/tcp.
std::optional<std::uint16_t> listeningPort(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::set<std::string> inodes;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(proc + "/fd", ec)) {
    std::error_code link_ec;
    const std::string target = fs::read_symlink(e.path(), link_ec).string();
    if (!link_ec && target.rfind("socket:[", 0) == 0)
      inodes.insert(target.substr(8, target.size() - 9));
  }
  std::ifstream tcp(proc + "/net/tcp");
  std::string line;
  std::getline(tcp, line);  // header
  while (std::getline(tcp, line)) {
    std::istringstream in(line);
    std::string sl, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
    in >> sl >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >>
        inode;
    if (state == "0A" && inodes.count(inode) != 0)
      return static_cast<std::uint16_t>(std::stoul(local.substr(local.find(':') + 1), nullptr, 16));
  }
  return std::nullopt;
}

// A test that needs a binary fails when it is missing (conventions: "never passes by skipping
// silently"): ./scripts/setup installs it.
void requireVictoriaMetrics() {
  REQUIRE_MESSAGE(::access(kVmBinary, X_OK) == 0,
                  kVmBinary << " is not installed: apt-get install victoria-metrics (or run "
                               "./scripts/setup); this test needs a real VictoriaMetrics");
}

// Runs VictoriaMetrics on 127.0.0.1:0 with its own data directory; stops it and removes the
// directory on destruction, printing its log unless the test called passed().
class VictoriaMetrics {
 public:
  explicit VictoriaMetrics(std::vector<std::string> extra_flags = {}) {
    std::string templ = (fs::temp_directory_path() / "gw-vm-XXXXXX").string();
    REQUIRE(::mkdtemp(templ.data()) != nullptr);
    dir_ = templ;
    log_ = dir_ / "vm.log";

    std::vector<std::string> args = {kVmBinary, "-httpListenAddr=127.0.0.1:0",
                                     "-storageDataPath=" + (dir_ / "data").string(),
                                     "-retentionPeriod=100y"};  // fixed timestamps from 2023
    args.insert(args.end(), extra_flags.begin(), extra_flags.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    const int rc = posix_spawn(&pid_, kVmBinary, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    REQUIRE(rc == 0);

    std::optional<std::uint16_t> port;
    REQUIRE(pollUntil([&] { return (port = listeningPort(pid_)).has_value(); },
                      std::chrono::seconds(10)));
    base_ = "http://127.0.0.1:" + std::to_string(*port);
    REQUIRE(pollUntil([&] { return httpGet(base_ + "/health", 500).status == 200; },
                      std::chrono::seconds(10)));
  }

  ~VictoriaMetrics() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      if (!pollUntil([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; },
                     std::chrono::seconds(5))) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
      }
    }
    if (!passed_) {
      std::ifstream in(log_);
      std::cerr << "---- VictoriaMetrics log (" << log_ << ") ----\n" << in.rdbuf() << "----\n";
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  const std::string& base() const { return base_; }
  void passed() { passed_ = true; }

  /// Every series matching `selector`, flushed first so fresh data is searchable.
  std::string exportSeries(const std::string& selector) const {
    httpGet(base_ + "/internal/force_flush");
    char* escaped = curl_easy_escape(nullptr, selector.c_str(), static_cast<int>(selector.size()));
    const std::string url = base_ + "/api/v1/export?match%5B%5D=" + escaped;
    curl_free(escaped);
    const HttpResult r = httpGet(url);
    return r.status == 200 ? r.body : std::string();
  }

 private:
  pid_t pid_ = -1;
  fs::path dir_;
  fs::path log_;
  std::string base_;
  bool passed_ = false;
};

using Labels = std::map<std::string, std::string>;
using Points = std::vector<std::pair<std::int64_t, double>>;  // (ms, value)

// Parses /api/v1/export output (one JSON object per series and line).
std::map<Labels, Points> parseExport(const std::string& text) {
  std::map<Labels, Points> out;
  simdjson::ondemand::parser parser;
  for (const std::string& line : splitLines(text)) {
    if (line.empty()) continue;
    simdjson::padded_string padded(line);
    auto doc = parser.iterate(padded);
    Labels labels;
    for (auto field : doc["metric"].get_object()) {
      labels[std::string(field.unescaped_key().value())] =
          std::string(field.value().get_string().value());
    }
    std::vector<double> values;
    for (auto v : doc["values"].get_array()) {
      // Raw token + strtod: VM prints 1e20 as a 21-digit integer literal.
      values.push_back(std::strtod(std::string(v.raw_json_token().value()).c_str(), nullptr));
    }
    std::vector<std::int64_t> times;
    for (auto t : doc["timestamps"].get_array()) times.push_back(t.get_int64().value());
    REQUIRE(values.size() == times.size());
    Points& points = out[labels];
    for (std::size_t i = 0; i < values.size(); ++i) points.emplace_back(times[i], values[i]);
  }
  return out;
}

struct Batch {
  std::deque<Series> series;
  std::deque<gw::InternedSeries> interned;  // the records' series (as the journal's)
  std::vector<ReadingRecord> records;
  void add(const Series* s, double value, gw::Nanos t) {
    ReadingRecord r;
    r.seq = records.size() + 1;
    r.series = &interned.emplace_back(*s);
    r.value = value;
    r.event_time = t;
    records.push_back(r);
  }
};

constexpr gw::Nanos kT0 = 1'700'000'000'000'000'000;  // 2023-11-14T22:13:20Z

}  // namespace

TEST_CASE("VictoriaMetrics: names, tags, values and timestamps arrive intact") {
  requireVictoriaMetrics();
  VictoriaMetrics vm;
  TimeseriesOptions o;
  o.url = vm.base() + "/write";
  o.timeout = 5 * gw::kNanosPerSecond;
  auto sink = makeTimeseriesSink(o);

  const Series injected{"pump 7,a=b", "ts_temp", {{"zone", "hall 1,2"}}};
  const Series plain{"pump 7", "ts_temp", {{"zone", "hall 1,2"}}};
  const Series equals{"x=y", "ts_temp", {{"zone", "a=b"}}};
  const Series backslash{"back\\slash\\", "ts_temp", {{"zone", ""}}};  // empty tag: omitted
  const Series unicode{"Überdruck 泵", "ts_rpm x,y", {{"ort", "München"}}};

  Batch first;
  first.add(&injected, 21.5, kT0 + 123'456'789);
  first.add(&injected, 22.0, kT0 + 1'000'000'000);  // integral: still a float
  first.add(&plain, -0.5, kT0 + 2'000'000'000);
  first.add(&equals, 1e20, kT0 + 3'000'000'000);
  Batch second;
  second.add(&backslash, 0.125, kT0 + 4'000'000'000);
  second.add(&unicode, 1234.5678, kT0 + 5'000'000'000);
  second.add(&injected, std::nan(""), kT0 + 6'000'000'000);  // skipped, not sent

  REQUIRE(sink->send(first.records).status == SendStatus::kDelivered);
  REQUIRE(sink->send(second.records).status == SendStatus::kDelivered);

  const std::int64_t t0_ms = kT0 / gw::kNanosPerMilli;
  const std::map<Labels, Points> expected = {
      {{{"__name__", "ts_temp_value"}, {"device", "pump 7,a=b"}, {"zone", "hall 1,2"}},
       {{t0_ms + 123, 21.5}, {t0_ms + 1000, 22.0}}},
      {{{"__name__", "ts_temp_value"}, {"device", "pump 7"}, {"zone", "hall 1,2"}},
       {{t0_ms + 2000, -0.5}}},
      {{{"__name__", "ts_temp_value"}, {"device", "x=y"}, {"zone", "a=b"}}, {{t0_ms + 3000, 1e20}}},
      {{{"__name__", "ts_temp_value"}, {"device", "back\\slash\\"}}, {{t0_ms + 4000, 0.125}}},
      {{{"__name__", "ts_rpm x,y_value"}, {"device", "Überdruck 泵"}, {"ort", "München"}},
       {{t0_ms + 5000, 1234.5678}}},
  };

  std::map<Labels, Points> got;
  const bool complete = pollUntil(
      [&] {
        got = parseExport(vm.exportSeries(R"({__name__=~"ts_.*"})"));
        std::size_t points = 0;
        for (const auto& [labels, p] : got) points += p.size();
        return points >= 6;
      },
      std::chrono::seconds(5));
  CHECK(complete);
  CHECK(got == expected);
  if (got != expected) {
    for (const auto& [labels, points] : got) {
      std::string s;
      for (const auto& [k, v] : labels) s += k + "=" + v + " ";
      MESSAGE("got series: " << s << "points=" << points.size());
    }
  } else {
    vm.passed();
  }
}

TEST_CASE("VictoriaMetrics: -influxSkipSingleField names the metric after the measurement") {
  requireVictoriaMetrics();
  VictoriaMetrics vm({"-influxSkipSingleField"});
  TimeseriesOptions o;
  o.url = vm.base() + "/write";
  auto sink = makeTimeseriesSink(o);

  const Series s{"pump 7,a=b", "ts_temp", {}};
  Batch b;
  b.add(&s, 21.5, kT0);
  REQUIRE(sink->send(b.records).status == SendStatus::kDelivered);

  const std::map<Labels, Points> expected = {
      {{{"__name__", "ts_temp"}, {"device", "pump 7,a=b"}}, {{kT0 / gw::kNanosPerMilli, 21.5}}}};
  std::map<Labels, Points> got;
  pollUntil(
      [&] {
        got = parseExport(vm.exportSeries(R"({__name__=~"ts_.*"})"));
        return !got.empty();
      },
      std::chrono::seconds(5));
  CHECK(got == expected);
  if (got == expected) vm.passed();
}
