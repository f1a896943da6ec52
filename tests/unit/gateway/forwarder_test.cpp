// The forwarder with a fake sink, a real journal in a temporary folder, injected clocks and
// jitter: cursor only on delivery or rejection, the same batch again after a retry, backoff
// bounds and Retry-After capped at retry_max, interrupt latency at stop(), status counters.
// The test thread runs the io_context (it is the forwarder's event loop thread).
#include "gateway/forwarder.h"

#include <doctest/doctest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "buffer/journal.h"
#include "core/wake_flag.h"
#include "tests/support/journal_with_sinks.h"
#include "tests/support/syscall_counter.h"
#include "tests/support/temp_dir.h"

using namespace gw;

namespace {

constexpr Nanos kMs = kNanosPerMilli;
constexpr Nanos kT0 = 1'795'256'130 * kNanosPerSecond;  // 2026-11-21T10:15:30Z

/// Answers send() from a script (then kDelivered), records every batch's seqs. With `block`
/// set, send() waits until interrupt() (the shutdown path).
class FakeSink final : public Sink {
 public:
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<SendResult> script;
    std::vector<std::vector<std::uint64_t>> batches;
    bool block = false;
    bool interrupted = false;
    std::atomic<int> in_send{0};
    std::optional<LinkMonitor> link;  // set: the sink reports its connection's health
    std::atomic<int> idles{0};
    std::atomic<pid_t> worker_tid{0};  // the thread send() runs on
  };

  explicit FakeSink(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
  const std::string& name() const override { return name_; }

  SendResult send(std::span<const ReadingRecord> batch) override {
    if (shared_->worker_tid == 0) shared_->worker_tid = static_cast<pid_t>(syscall(SYS_gettid));
    std::unique_lock lock(shared_->mu);
    std::vector<std::uint64_t> seqs;
    for (const auto& r : batch) seqs.push_back(r.seq);
    shared_->batches.push_back(std::move(seqs));
    if (shared_->block) {
      ++shared_->in_send;
      shared_->cv.wait(lock, [&] { return shared_->interrupted; });
      return {SendStatus::kRetry, "interrupted", {}};
    }
    if (shared_->script.empty()) return {SendStatus::kDelivered, {}, {}};
    SendResult r = std::move(shared_->script.front());
    shared_->script.pop_front();
    return r;
  }

  void interrupt() override {
    std::lock_guard lock(shared_->mu);
    shared_->interrupted = true;
    shared_->cv.notify_all();
  }

  void idle() override { ++shared_->idles; }
  std::optional<LinkHealth> health() const override {
    if (!shared_->link) return std::nullopt;
    return shared_->link->get();
  }

 private:
  const std::string name_ = "fake";
  std::shared_ptr<Shared> shared_;
};

struct Fixture {
  test::TempDir dir{"gw-forwarder"};
  std::unique_ptr<buffer::Journal> journal;
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
  std::shared_ptr<FakeSink::Shared> sink = std::make_shared<FakeSink::Shared>();
  std::atomic<Nanos> wall{kT0};
  double uniform = 1.0;  // top of the jitter range unless a test says otherwise

  Fixture() { journal = test::openJournal(dir.path); }

  /// Appends and commits `n` readings, event times kT0 + i s; returns the last seq.
  std::uint64_t addReadings(int n) {
    const SeriesId id = journal->internSeries(Series{"press-7", "temperature", {}});
    std::uint64_t last = 0;
    for (int i = 0; i < n; ++i)
      last =
          journal->append(id, i, kT0 + i * kNanosPerSecond, std::nullopt, TimeReference::kReceive);
    REQUIRE(journal->commit());
    journal->syncNow();  // what the pipeline waits for (onDurable) before it pokes
    return last;
  }

  std::unique_ptr<Forwarder> make(ForwarderOptions o) {
    ForwarderEnv env;
    env.clock.wall = [this] { return wall.load(); };
    env.clock.mono = [] { return Nanos{0}; };
    env.uniform = [this] { return uniform; };
    return std::make_unique<Forwarder>(io, *journal, std::make_unique<FakeSink>(sink), o,
                                       std::move(env));
  }

  /// Runs the event loop until `done()` or a 10 s deadline (a hang fails, never blocks ctest).
  template <typename F>
  bool runUntil(F&& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io.run_one_for(std::chrono::milliseconds(50));
    }
    return true;
  }

  std::vector<std::vector<std::uint64_t>> batches() {
    std::lock_guard lock(sink->mu);
    return sink->batches;
  }
  void script(std::vector<SendResult> results) {
    std::lock_guard lock(sink->mu);
    for (auto& r : results) sink->script.push_back(std::move(r));
  }
};

using Batches = std::vector<std::vector<std::uint64_t>>;

// doctest finds gw::toString by ADL and cannot print it: compare names.
std::string str(LinkState s) { return toString(s); }

ForwarderOptions fastOptions(size_t batch = 2) {
  ForwarderOptions o;
  o.batch = batch;
  o.retry_min = 1 * kMs;
  o.retry_max = 8 * kMs;
  o.min_interval = 0;  // batches as soon as records wait (the pacing has a test of its own)
  return o;
}

}  // namespace

TEST_CASE("forwarder: delivered batches advance the cursor, in order") {
  Fixture f;
  f.addReadings(5);
  auto fw = f.make(fastOptions());
  CHECK(fw->name() == "fake");
  CHECK(fw->cursor() == 0);
  fw->poke();
  REQUIRE(f.runUntil([&] { return fw->cursor() == 5; }));
  CHECK(f.batches() == Batches{{1, 2}, {3, 4}, {5}});
  CHECK(f.journal->cursor("fake") == 5);
  const ForwarderStatus st = fw->status();
  CHECK(st.name == "fake");
  CHECK(st.up);
  CHECK(st.sent == 5);
  CHECK(st.rejected == 0);
  CHECK(st.retries == 0);
  CHECK(st.cursor == 5);
  CHECK(st.retry_wait == 0);
  CHECK(st.last_error.empty());
  fw->stop();
}

TEST_CASE("forwarder: a retry keeps the cursor and resends the same batch") {
  Fixture f;
  f.addReadings(3);
  f.script({{SendStatus::kRetry, "endpoint down", {}}, {SendStatus::kRetry, "still down", {}}});
  ForwarderOptions o = fastOptions();
  o.retry_min = 20 * kMs;  // long enough to look at the state between attempts
  o.retry_max = 40 * kMs;
  auto fw = f.make(o);
  fw->poke();
  REQUIRE(f.runUntil([&] { return fw->status().retries == 1; }));
  ForwarderStatus st = fw->status();
  CHECK(fw->cursor() == 0);
  CHECK(f.journal->cursor("fake") == 0);
  CHECK_FALSE(st.up);
  CHECK(st.last_error == "endpoint down");
  CHECK(st.sent == 0);
  fw->poke();  // new commits while backing off do not send early
  CHECK(f.batches().size() == 1);

  REQUIRE(f.runUntil([&] { return fw->cursor() == 3; }));
  CHECK(f.batches() == Batches{{1, 2}, {1, 2}, {1, 2}, {3}});
  st = fw->status();
  CHECK(st.up);
  CHECK(st.retries == 2);
  CHECK(st.sent == 3);
  CHECK(st.last_error == "still down");  // kept for gatewayctl after recovery
  fw->stop();
}

TEST_CASE("forwarder: a rejected batch is skipped and counted") {
  Fixture f;
  f.addReadings(4);
  f.script({{SendStatus::kRejected, "HTTP 400: bad line", {}}});
  auto fw = f.make(fastOptions());
  fw->poke();
  REQUIRE(f.runUntil([&] { return fw->cursor() == 4; }));
  CHECK(f.batches() == Batches{{1, 2}, {3, 4}});
  const ForwarderStatus st = fw->status();
  CHECK(st.rejected == 2);
  CHECK(st.sent == 2);
  CHECK(st.retries == 0);
  CHECK(st.last_error == "HTTP 400: bad line");
  fw->stop();
}

TEST_CASE("forwarder: nothing committed, nothing sent; the cursor survives a restart") {
  Fixture f;
  {
    auto fw = f.make(fastOptions());
    fw->poke();
    f.io.poll();
    CHECK(f.batches().empty());
    f.addReadings(2);
    fw->poke();
    REQUIRE(f.runUntil([&] { return fw->cursor() == 2; }));
    fw->stop();
  }
  REQUIRE(f.journal->commit());
  auto again = f.make(fastOptions());
  CHECK(again->cursor() == 2);
  again->poke();
  f.io.poll();
  CHECK(f.batches().size() == 1);
  again->stop();
}

TEST_CASE("forwarder: backoff starts at retry_min, doubles, stops at retry_max, resets") {
  Fixture f;
  f.addReadings(1);
  std::vector<SendResult> failures(6, SendResult{SendStatus::kRetry, "down", {}});
  // After a delivery, the next failure starts from retry_min again.
  failures.push_back({SendStatus::kDelivered, {}, {}});
  failures.push_back({SendStatus::kRetry, "down again", {}});
  f.script(failures);
  auto fw = f.make(fastOptions(1));

  auto waitsAtTop = [&](double u, std::uint64_t from, std::uint64_t to) {
    f.uniform = u;
    std::vector<Nanos> waits;
    for (std::uint64_t k = from; k <= to; ++k) {
      REQUIRE(f.runUntil([&] { return fw->status().retries == k; }));
      waits.push_back(fw->status().retry_wait);
    }
    return waits;
  };
  fw->poke();
  SUBCASE("top of the jitter range: the ceiling itself") {
    CHECK(waitsAtTop(1.0, 1, 6) ==
          std::vector<Nanos>{1 * kMs, 2 * kMs, 4 * kMs, 8 * kMs, 8 * kMs, 8 * kMs});
  }
  SUBCASE("bottom of the jitter range: half the ceiling") {
    CHECK(waitsAtTop(0.0, 1, 6) ==
          std::vector<Nanos>{kMs / 2, 1 * kMs, 2 * kMs, 4 * kMs, 4 * kMs, 4 * kMs});
  }
  f.addReadings(1);
  fw->poke();
  REQUIRE(f.runUntil([&] { return fw->status().retries == 7; }));
  CHECK(fw->status().retry_wait <= 1 * kMs);
  CHECK(fw->status().retry_wait >= kMs / 2);
  CHECK(fw->cursor() == 1);
  fw->stop();
}

TEST_CASE("forwarder: Retry-After is honoured but capped at retry_max") {
  Fixture f;
  f.addReadings(1);
  f.uniform = 0.0;
  ForwarderOptions o = fastOptions(1);
  o.retry_max = 50 * kMs;
  f.script({
      {SendStatus::kRetry, "HTTP 429", 20 * kMs},  // above our 0.5 ms: the server's wish
      // "Retry-After: 99999999999" (parsed, saturated): not ~31 years, retry_max.
      {SendStatus::kRetry, "HTTP 429", 999'999'999 * kNanosPerSecond},
      {SendStatus::kRetry, "HTTP 503", 0},  // below our backoff: ours
  });
  auto fw = f.make(o);
  fw->poke();
  REQUIRE(f.runUntil([&] { return fw->status().retries == 1; }));
  CHECK(fw->status().retry_wait == 20 * kMs);
  REQUIRE(f.runUntil([&] { return fw->status().retries == 2; }));
  CHECK(fw->status().retry_wait == 50 * kMs);
  REQUIRE(f.runUntil([&] { return fw->status().retries == 3; }));
  CHECK(fw->status().retry_wait == 2 * kMs);  // third failure: ceiling 4 ms, bottom of range
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(f.runUntil([&] { return fw->cursor() == 1; }));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
  fw->stop();
}

TEST_CASE("forwarder: stop() interrupts a blocked send and returns promptly") {
  Fixture f;
  f.addReadings(3);
  f.sink->block = true;
  auto fw = f.make(fastOptions());
  fw->poke();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (f.sink->in_send.load() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  REQUIRE(f.sink->in_send.load() == 1);
  const auto t0 = std::chrono::steady_clock::now();
  fw->stop();
  const auto took = std::chrono::steady_clock::now() - t0;
  {
    std::lock_guard lock(f.sink->mu);
    CHECK(f.sink->interrupted);
  }
  CHECK(took < std::chrono::milliseconds(500));
  MESSAGE("stop() took " << std::chrono::duration_cast<std::chrono::microseconds>(took).count()
                         << " us");
  f.io.poll();  // the interrupted send's answer arrives after stop: ignored
  CHECK(fw->cursor() == 0);
  CHECK(f.journal->cursor("fake") == 0);
  fw->stop();  // idempotent
}

TEST_CASE("forwarder: record ages come from the injected wall clock") {
  Fixture f;
  f.addReadings(3);                                // event times kT0, +1 s, +2 s
  f.wall = kT0 + 2 * kNanosPerSecond + 500 * kMs;  // confirmation time
  auto fw = f.make(fastOptions(3));
  fw->poke();
  REQUIRE(f.runUntil([&] { return fw->cursor() == 3; }));
  const ForwarderStatus st = fw->status();
  CHECK(st.age_p50_ms == doctest::Approx(1500));
  CHECK(st.age_p99_ms == doctest::Approx(1500));  // nearest-rank below: index 1 of 3
  fw->stop();
}

TEST_CASE("forwarder: the state follows the sink's link; DOWN shows the link's cause") {
  Fixture f;
  f.sink->link.emplace();  // connecting
  auto fw = f.make(fastOptions());
  ForwarderStatus st = fw->status();
  CHECK(str(st.state) == "connecting");
  CHECK_FALSE(st.up);

  // Nothing to send: the worker still lets the sink probe its connection.
  REQUIRE(f.runUntil([&] { return f.sink->idles.load() >= 1; }));
  f.sink->link->set(LinkState::kDown, "Connect to 127.0.0.1:9 failed: Connection refused");
  st = fw->status();
  CHECK(str(st.state) == "down");
  CHECK(st.last_error == "Connect to 127.0.0.1:9 failed: Connection refused");

  f.sink->link->set(LinkState::kUp);
  st = fw->status();
  CHECK(str(st.state) == "up");
  CHECK(st.up);
  CHECK(st.last_error.empty());

  // A failed send is DOWN even while the connection is up (data is not moving).
  f.addReadings(1);
  f.script({{SendStatus::kRetry, "HTTP 401: unauthorized", {}}});
  fw->poke();
  REQUIRE(f.runUntil([&] { return fw->status().retries == 1; }));
  st = fw->status();
  CHECK(str(st.state) == "down");
  CHECK(st.last_error == "HTTP 401: unauthorized");
  REQUIRE(f.runUntil([&] { return fw->cursor() == 1; }));
  CHECK(str(fw->status().state) == "up");
  fw->stop();
}

TEST_CASE("forwarder: a sink without a link is up until a send fails") {
  Fixture f;
  auto fw = f.make(fastOptions());
  CHECK(str(fw->status().state) == "up");
  fw->stop();
}

TEST_CASE("forwarder: the link coming back cuts a long retry wait short") {
  Fixture f;
  f.sink->link.emplace();
  f.sink->link->set(LinkState::kDown, "Connection refused");
  f.addReadings(2);
  f.script({{SendStatus::kRetry, "not confirmed", {}}});
  ForwarderOptions o = fastOptions();
  o.retry_min = 3600 * kNanosPerSecond;  // without the link event this test would time out
  o.retry_max = 3600 * kNanosPerSecond;
  auto fw = f.make(o);
  fw->poke();
  REQUIRE(f.runUntil([&] { return fw->status().retries == 1; }));
  const int idles = f.sink->idles.load();
  REQUIRE(f.runUntil([&] { return f.sink->idles.load() > idles; }));  // idle while waiting
  CHECK(fw->cursor() == 0);
  f.sink->link->set(LinkState::kUp);
  REQUIRE(f.runUntil([&] { return fw->cursor() == 2; }));
  CHECK(f.batches() == Batches{{1, 2}, {1, 2}});
  CHECK(str(fw->status().state) == "up");
  fw->stop();
}

TEST_CASE(
    "forwarder: sends records before they are synced; the cursor it persists stays at "
    "durableSeq") {
  Fixture f;
  auto fw = f.make(fastOptions(100));
  f.addReadings(3);
  // Committed but not yet synced: rows 4..5 go to the sink (their seqs are within the journal's
  // durable reservation), but the cursor the journal keeps stays at what is durable.
  const SeriesId id = f.journal->internSeries(Series{"press-7", "temperature", {}});
  f.journal->append(id, 4, kT0, std::nullopt, TimeReference::kReceive);
  f.journal->append(id, 5, kT0, std::nullopt, TimeReference::kReceive);
  std::mutex mu;
  std::condition_variable cv;
  bool held = true;
  buffer::setWalSyncHookForTests([&] {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return !held; });
  });
  REQUIRE(f.journal->commit());
  CHECK(f.journal->lastSeq() == 5);
  fw->poke();
  REQUIRE(f.runUntil([&] { return f.batches() == Batches{{1, 2, 3, 4, 5}}; }));
  REQUIRE(f.runUntil([&] { return fw->status().sent == 5; }));
  fw->poke();
  f.io.run_for(std::chrono::milliseconds(30));
  CHECK(f.journal->durableSeq() == 3);
  CHECK(fw->cursor() == 3);
  CHECK(f.journal->cursor("fake") == 3);
  {
    std::lock_guard lock(mu);
    held = false;
  }
  cv.notify_all();
  CHECK(f.journal->syncNow() == 5);
  buffer::setWalSyncHookForTests({});
  fw->poke();  // what the pipeline does on the journal's onDurable()
  REQUIRE(f.runUntil([&] { return fw->cursor() == 5; }));
  CHECK(f.journal->cursor("fake") == 5);
  CHECK(f.batches() == Batches{{1, 2, 3, 4, 5}});  // nothing sent twice
}

TEST_CASE(
    "forwarder: pending records (not yet committed) are sent; the cursor follows the commit "
    "and its sync") {
  Fixture f;
  auto fw = f.make(fastOptions(100));
  const SeriesId id = f.journal->internSeries(Series{"press-7", "temperature", {}});
  for (int i = 1; i <= 3; ++i)
    f.journal->append(id, i, kT0 + i, std::nullopt, TimeReference::kReceive);
  CHECK(f.journal->lastSeq() == 0);
  fw->poke();
  REQUIRE(f.runUntil([&] { return fw->status().sent == 3; }));
  CHECK(f.batches() == Batches{{1, 2, 3}});
  CHECK(fw->cursor() == 0);
  REQUIRE(f.journal->commit());
  CHECK(f.journal->syncNow() == 3);
  fw->poke();
  REQUIRE(f.runUntil([&] { return fw->cursor() == 3; }));
  CHECK(f.batches() == Batches{{1, 2, 3}});
}

TEST_CASE("forwarder: min_interval paces sends of less than a batch; a full batch goes at once") {
  Fixture f;
  ForwarderOptions o = fastOptions(3);
  o.min_interval = 2 * kNanosPerSecond;  // far longer than this test's steps take
  auto fw = f.make(o);
  const SeriesId id = f.journal->internSeries(Series{"press-7", "temperature", {}});
  const auto append = [&](int n) {
    for (int i = 0; i < n; ++i)
      f.journal->append(id, i, kT0 + i, std::nullopt, TimeReference::kReceive);
  };
  append(1);
  const auto first = std::chrono::steady_clock::now();
  fw->poke();  // the first send goes at once
  REQUIRE(f.runUntil([&] { return fw->status().sent == 1; }));
  append(1);
  fw->poke();  // less than a batch, within min_interval of the last send: waits
  f.io.run_for(std::chrono::milliseconds(50));
  CHECK(f.batches() == Batches{{1}});
  append(2);  // 3 waiting now: a full batch goes without waiting
  fw->poke();
  REQUIRE(f.runUntil([&] { return fw->status().sent == 4; }));
  CHECK(f.batches() == Batches{{1}, {2, 3, 4}});
  append(1);
  fw->poke();
  REQUIRE(f.runUntil([&] { return fw->status().sent == 5; }));
  CHECK(std::chrono::steady_clock::now() - first >= std::chrono::seconds(2));
  CHECK(f.batches() == Batches{{1}, {2, 3, 4}, {5}});
  fw->stop();
}

TEST_CASE("pacedSendDue: a paced send goes just after the loop's tick, never before the pace") {
  // Issue 16: the MQTT batch wait ends on the same 10 ms grid; a send just after the tick takes
  // what that read appended, and its timer expires with the tick's (no timerfd re-arm).
  constexpr Nanos grid = 10 * kMs;
  CHECK(pacedSendDue(1000 * kMs, 20 * kMs, grid) == 1020 * kMs + kPacedAfterTick);
  CHECK(pacedSendDue(1001 * kMs + 500000, 20 * kMs, grid) == 1020 * kMs + kPacedAfterTick);
  CHECK(pacedSendDue(1009 * kMs, 20 * kMs, grid) == 1020 * kMs + kPacedAfterTick);
  CHECK(pacedSendDue(1009 * kMs, 20 * kMs, 0) == 1029 * kMs);    // no grid
  CHECK(pacedSendDue(1003 * kMs, 5 * kMs, grid) == 1008 * kMs);  // shorter than the grid
  for (Nanos t = 1000 * kMs; t < 1030 * kMs; t += 250000) {
    const Nanos due = pacedSendDue(t, 20 * kMs, grid);
    CHECK(due % grid == kPacedAfterTick);
    CHECK(due - t > 10 * kMs);  // a send every other tick, never every tick
    CHECK(due - t <= 20 * kMs + kPacedAfterTick);
  }
}

TEST_CASE("forwarder: by default a steady trickle goes out in batches at most every 20 ms") {
  // Issue 16: each batch costs the sink, librdkafka and the loop a dozen system calls and
  // futex wakeups, so the default pacing (ForwarderOptions::min_interval) bounds how many
  // batches a stream of readings poked once per millisecond makes (15 ms before: a third more).
  Fixture f;
  ForwarderOptions o;
  CHECK(o.min_interval >= 20 * kMs);
  auto fw = f.make(o);
  const SeriesId id = f.journal->internSeries(Series{"press-7", "temperature", {}});
  const auto start = std::chrono::steady_clock::now();
  std::uint64_t appended = 0;
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(300)) {
    f.journal->append(id, 1.0, kT0 + static_cast<Nanos>(appended++), std::nullopt,
                      TimeReference::kReceive);
    if (appended % 50 == 1) {  // a group commit reserves the seqs the tail may send ahead
      REQUIRE(f.journal->commit());
      f.journal->syncNow();
    }
    fw->poke();  // as the pipeline does once per turn of the loop that appended readings
    f.io.run_for(std::chrono::milliseconds(1));
  }
  REQUIRE(f.journal->commit());
  f.journal->syncNow();
  fw->poke();
  REQUIRE(f.runUntil([&] { return fw->status().sent == appended; }));  // none held back
  const auto elapsed = std::chrono::steady_clock::now() - start;
  const auto allowed = static_cast<size_t>(elapsed / std::chrono::milliseconds(20)) + 2;
  INFO("batches: " << f.batches().size() << " in " << elapsed.count() / 1'000'000 << " ms");
  CHECK(f.batches().size() <= allowed);
  fw->stop();
}

TEST_CASE("forwarder: a paced batch's answer rides on the pace timer, not on a post of its own") {
  // Issue 16: a handler posted from the worker costs it an epoll_ctl and the loop a wakeup of
  // its own; the answer of a batch of less than `batch` records waits for the pace timer the
  // loop has armed anyway (the next send waits for it too). One handler per batch, not two.
  Fixture f;
  ForwarderOptions o;  // the default pacing
  o.batch = 1000;
  auto fw = f.make(o);
  const SeriesId id = f.journal->internSeries(Series{"press-7", "temperature", {}});
  std::uint64_t appended = 0;
  size_t handlers = 0;
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(300)) {
    f.journal->append(id, 1.0, kT0 + static_cast<Nanos>(appended++), std::nullopt,
                      TimeReference::kReceive);
    if (appended % 20 == 1) {
      REQUIRE(f.journal->commit());
      f.journal->syncNow();
    }
    fw->poke();
    handlers += f.io.run_for(std::chrono::milliseconds(2));
  }
  REQUIRE(f.journal->commit());
  f.journal->syncNow();
  fw->poke();
  REQUIRE(f.runUntil([&] { return fw->status().sent == appended; }));  // none held back
  const size_t batches = f.batches().size();
  INFO("batches: " << batches << ", handlers: " << handlers);
  CHECK(batches >= 5);
  CHECK(handlers <= batches + 2);
  fw->stop();
}

TEST_CASE("forwarder: the worker takes a batch from the loop with one system call") {
  // Issue 16: the worker sleeps on a core/wake_flag.h flag, not a condition variable, whose
  // wait ends with a FUTEX_WAKE on unlocking the re-taken mutex although nobody waits. Per
  // batch the worker's calls are then its wait and the post of the answer (an epoll_ctl and
  // maybe a futex call on Asio's lock): 1.6–2.1 against 2.7–3.1 with the condition variable.
  Fixture f;
  auto fw = f.make(fastOptions(1000));
  f.addReadings(1);
  fw->poke();
  REQUIRE(f.runUntil([&] { return fw->status().sent == 1; }));
  test::SyscallCounter calls(f.sink->worker_tid.load());
  if (!calls.available()) {
    MESSAGE("no raw_syscalls tracepoint to count with (not root?): not checked");
    fw->stop();
    return;
  }
  constexpr int kBatches = 50;
  std::uint64_t sent = 1;
  double least = 1e9;
  for (int round = 0; round < 3; ++round) {  // the least of 3: other load on the machine
    calls.start();
    for (int i = 0; i < kBatches; ++i) {
      f.addReadings(1);
      fw->poke();
      ++sent;
      REQUIRE(f.runUntil([&] { return fw->status().sent == sent; }));
    }
    least = std::min(least, static_cast<double>(calls.count()) / kBatches);
  }
  MESSAGE("system calls per batch on the worker: ", least);
  CHECK(least <= 2.4);
  fw->stop();
}

TEST_CASE("WakeFlag: a notify is kept until the wait; the wait times out; a notify wakes it") {
  WakeFlag flag;
  CHECK_FALSE(flag.waitFor(5 * kMs));
  flag.notify();
  flag.notify();  // the two count as one
  CHECK(flag.waitFor(0));
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(flag.waitFor(30 * kMs));
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(30));
  std::atomic<bool> woke{false};
  std::thread waiter([&] { woke = flag.waitFor(10 * kNanosPerSecond); });
  t0 = std::chrono::steady_clock::now();
  flag.notify();
  waiter.join();
  CHECK(woke.load());
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
}
