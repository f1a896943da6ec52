// The pipeline names a source's turn in the loop's attribution (issue 13): the messages a source
// hands over in one handler are one "ingest" run with how many there were and how many series
// were new, timed on the injected monotonic clock; other handlers are not part of it.
#include <doctest/doctest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <memory>
#include <string>

#include "core/component.h"
#include "core/source.h"
#include "gateway/config.h"
#include "gateway/pipeline.h"
#include "tests/support/temp_dir.h"

using namespace gw;

namespace {

constexpr Nanos kMs = kNanosPerMilli;
constexpr Nanos kT0 = 1'795'256'130 * kNanosPerSecond;  // 2026-11-21T10:15:30Z

class TestSource final : public Source {
 public:
  explicit TestSource(Ingest*& out, Ingest& ingest) { out = &ingest; }
  const std::string& name() const override { return name_; }
  void start() override {}
  void committed(std::uint64_t) override {}
  void stop() override {}
  ComponentStatus status() const override {
    ComponentStatus s;
    s.name = name_;
    s.target = "test";
    return s;
  }

 private:
  const std::string name_ = "test-source";
};

class TestSourceConfig final : public SourceConfig {
 public:
  explicit TestSourceConfig(Ingest*& out) : out_(out) {}
  std::string name() const override { return "test-source"; }
  std::string target() const override { return "test"; }
  std::unique_ptr<Source> build(const BuildContext&, Ingest& ingest) const override {
    return std::make_unique<TestSource>(out_, ingest);
  }

 private:
  Ingest*& out_;
};

}  // namespace

TEST_CASE("pipeline: a source's messages in one handler are one ingest turn, counted") {
  test::TempDir dir{"gw-pipeline-turn"};
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  Nanos mono = 1000 * kNanosPerSecond;
  Ingest* ingest = nullptr;
  config::Config cfg;
  cfg.gateway.id = "test-gw";
  cfg.gateway.state_dir = dir.path;
  cfg.buffer.commit_interval = 10 * kNanosPerSecond;  // no commit timer in the test's span
  cfg.aggregate.enabled = false;
  cfg.sources = {std::make_shared<TestSourceConfig>(ingest)};
  Clock clock;
  clock.wall = [] { return kT0; };
  clock.mono = [&mono] { return mono; };
  Pipeline pipeline(io, cfg, clock);
  pipeline.start();
  REQUIRE(ingest != nullptr);

  // One handler (an MQTT read's slice): 30 messages of 20 devices, 2 ms each on the injected
  // clock; then a handler of its own that takes 50 ms, which the turn must not include.
  boost::asio::post(io, [&] {
    for (int i = 0; i < 30; ++i) {
      Series series{"dev-" + std::to_string(i % 20), "temperature", {}};
      Decoded decoded;
      decoded.values.push_back({{}, 1.0 * i});
      ingest->reading(series, decoded, kT0, TimeReference::kReceive);
      mono += 2 * kMs;
    }
    ingest->turnDone();  // as the source does when its handler returns
  });
  boost::asio::post(io, [&] { mono += 50 * kMs; });
  io.poll();

  const StatusSnapshot s = pipeline.snapshot(status_part::kAll);
  const LoopWork& w = s.limits.loop_work_longest;
  CHECK(w.name == "ingest");
  // From the first message's start to the last one's end (the last 2 ms came after it).
  CHECK(w.took == 29 * 2 * kMs);
  CHECK(w.detail == "30 messages, 20 new series");
  CHECK(s.limits.loop_work_max_by_kind[static_cast<std::size_t>(LoopWorkKind::kIngest)] == w.took);

  // The next turn: known series only.
  boost::asio::post(io, [&] {
    for (int i = 0; i < 5; ++i) {
      Series series{"dev-" + std::to_string(i), "temperature", {}};
      Decoded decoded;
      decoded.values.push_back({{}, 2.0});
      ingest->reading(series, decoded, kT0, TimeReference::kReceive);
      mono += 200 * kMs;
    }
    ingest->turnDone();
  });
  io.poll();
  const LoopWork& w2 = pipeline.snapshot(status_part::kAll).limits.loop_work_longest;
  CHECK(w2.took == 4 * 200 * kMs);
  CHECK(w2.detail == "5 messages, 0 new series");
  pipeline.stop();
  io.poll();
}
