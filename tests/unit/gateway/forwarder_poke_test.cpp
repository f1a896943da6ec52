// Forwarder::wantsPoke(): the pipeline posts a poke after a socket read only when it could start
// a send (issue 16: each handler posted to the loop costs an extra epoll_wait).
#include <doctest/doctest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>

#include "buffer/journal.h"
#include "gateway/forwarder.h"
#include "tests/support/journal_with_sinks.h"
#include "tests/support/temp_dir.h"

using namespace gw;

namespace {

/// Delivers everything at once.
class DeliveringSink final : public Sink {
 public:
  const std::string& name() const override { return name_; }
  SendResult send(std::span<const ReadingRecord>) override {
    return {SendStatus::kDelivered, {}, {}};
  }
  void interrupt() override {}

 private:
  const std::string name_ = "fake";
};

}  // namespace

TEST_CASE("forwarder: wants a poke only when idle, or paced with a full batch waiting") {
  test::TempDir dir{"gw-forwarder-poke"};
  auto journal = test::openJournal(dir.path);
  const SeriesId id = journal->internSeries(Series{"press-7", "temperature", {}});
  const auto add = [&](int n) {
    for (int i = 0; i < n; ++i)
      journal->append(id, i, 1'795'256'130 * kNanosPerSecond + i, std::nullopt,
                      TimeReference::kReceive);
    REQUIRE(journal->commit());
    journal->syncNow();
  };
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  ForwarderOptions o;
  o.batch = 100;
  o.min_interval = 60 * kNanosPerSecond;  // the pace timer never fires during this test
  Forwarder fw(io, *journal, std::make_unique<DeliveringSink>(), o);
  const auto runUntil = [&](auto done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done() && std::chrono::steady_clock::now() < deadline)
      io.run_one_for(std::chrono::milliseconds(50));
    return done();
  };

  CHECK(fw.wantsPoke());  // idle, nothing sent yet
  add(3);
  fw.poke();                    // the first send goes at once
  CHECK_FALSE(fw.wantsPoke());  // a batch is out: its result pokes
  REQUIRE(runUntil([&] { return fw.cursor() == 3; }));
  CHECK(fw.wantsPoke());  // idle again, nothing waiting

  add(2);
  fw.poke();  // less than a batch within min_interval: the paced send is armed
  CHECK_FALSE(fw.wantsPoke());
  add(97);  // 99 waiting: still less than a batch
  CHECK_FALSE(fw.wantsPoke());
  add(1);  // a full batch: a poke sends it at once
  CHECK(fw.wantsPoke());
  fw.poke();
  CHECK_FALSE(fw.wantsPoke());
  REQUIRE(runUntil([&] { return fw.cursor() == 103; }));
  fw.stop();
  CHECK_FALSE(fw.wantsPoke());
}
