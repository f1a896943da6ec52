// The one conformance test every sink runs (conventions: "Every sink runs one shared
// conformance test"): the Sink contract of core/sink.h, checked the same way for Kafka, the
// time-series store, and any sink added later. A sink's unit test provides factories for a sink
// pointed at a working endpoint, at a dead one, and (optionally) at one that never answers, and
// calls checkSinkConformance() inside a TEST_CASE.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/sink.h"

namespace gw::test {

struct SinkConformance {
  using Factory = std::function<std::unique_ptr<Sink>()>;
  /// A sink pointed at a working endpoint: everything it is given is confirmed.
  Factory live;
  /// A sink pointed at an endpoint where nothing listens, with short timeouts.
  Factory dead;
  /// A sink whose send() blocks (an endpoint that accepts but never answers, or long
  /// timeouts), for the interrupt check. Empty: `dead` is used.
  Factory blocking;
  /// Optional: true once the live endpoint holds at least `n` records of what was sent
  /// (waits with its own deadline). Left empty when the endpoint cannot be inspected.
  std::function<bool(std::size_t n)> arrived;
  /// Records of the sample batch the sink forwards (a time-series sink skips the alert).
  std::size_t forwarded = 4;
  /// The longest a send() to the dead endpoint may take before answering kRetry.
  std::chrono::milliseconds dead_bound{10'000};
  /// The longest a blocked send() may take to return after interrupt().
  std::chrono::milliseconds interrupt_bound{2'000};
};

/// Two readings, an aggregate and an alert of two series, as the journal would hand them out.
struct SampleBatch {
  std::deque<Series> series;            // stable addresses
  std::deque<InternedSeries> interned;  // the records' series (as the journal's), of `series`
  std::vector<ReadingRecord> records;

  explicit SampleBatch(std::uint64_t first_seq = 1) {
    constexpr Nanos kT0 = 1'795'256'130 * kNanosPerSecond;  // 2026-11-21T10:15:30Z
    series.push_back(Series{"pump 7", "temperature", {{"line", "3"}}});
    series.push_back(Series{"press-2", "pressure", {}});
    for (const Series& s : series) interned.emplace_back(s);
    ReadingRecord a;
    a.seq = first_seq;
    a.series = &interned[0];
    a.value = 21.5;
    a.event_time = kT0;
    a.device_time = kT0 - 1500 * kNanosPerMilli;
    a.reference = TimeReference::kBroker;
    records.push_back(a);
    ReadingRecord b;
    b.seq = first_seq + 1;
    b.series = &interned[1];
    b.value = 1.25;
    b.event_time = kT0 + kNanosPerMilli;
    records.push_back(b);
    ReadingRecord agg;
    agg.seq = first_seq + 2;
    agg.series = &interned[0];
    agg.kind = RecordKind::kAggregate;
    agg.event_time = kT0 - 10 * kNanosPerSecond;
    agg.window.size = 10 * kNanosPerSecond;
    agg.window.start = kT0 - 10 * kNanosPerSecond;
    agg.window.count = 3;
    agg.window.min = 20;
    agg.window.max = 22;
    agg.window.avg = 21;
    agg.window.p95 = 22;
    records.push_back(agg);
    ReadingRecord alert;
    alert.seq = first_seq + 3;
    alert.series = &interned[0];
    alert.kind = RecordKind::kAlert;
    alert.event_time = kT0;
    alert.value = 95;
    alert.alert = R"({"rule":"hot","device":"pump 7","metric":"temperature","tags":{"line":"3"},)"
                  R"("state":"firing","severity":"critical","statistic":"value","value":95,)"
                  R"("threshold":90,"time":"2026-11-21T10:15:30.000Z","dedup_key":"hot/pump 7"})";
    records.push_back(alert);
  }
};

inline void checkSinkConformance(const SinkConformance& c) {
  using Clock = std::chrono::steady_clock;
  REQUIRE(c.live);
  REQUIRE(c.dead);

  // name(): non-empty, stable across calls and instances (it is the journal cursor's name).
  std::unique_ptr<Sink> live = c.live();
  REQUIRE(live != nullptr);
  const std::string name = live->name();
  CHECK_FALSE(name.empty());
  CHECK(&live->name() == &live->name());
  CHECK(live->name() == name);
  std::unique_ptr<Sink> dead = c.dead();
  CHECK(dead->name() == name);

  // An empty batch is delivered at once, even when the endpoint is dead.
  for (Sink* s : {live.get(), dead.get()}) {
    const SendResult r = s->send({});
    CHECK(r.status == SendStatus::kDelivered);
    CHECK(r.error.empty());
  }

  // A live endpoint confirms readings, aggregates and alerts, batch after batch.
  const SampleBatch first(1), second(5);
  for (const SampleBatch* b : {&first, &second}) {
    const SendResult r = live->send(b->records);
    CHECK_MESSAGE(r.status == SendStatus::kDelivered, r.error);
    CHECK(r.error.empty());
  }
  if (c.arrived) CHECK(c.arrived(2 * c.forwarded));

  // A dead endpoint: kRetry (the batch is fine; the endpoint is not), with a reason, in time.
  {
    const auto t0 = Clock::now();
    const SendResult r = dead->send(first.records);
    const auto took = Clock::now() - t0;
    CHECK(r.status == SendStatus::kRetry);
    CHECK_FALSE(r.error.empty());
    CHECK(took < c.dead_bound);
    MESSAGE(name, ": dead endpoint answered in ",
            std::chrono::duration_cast<std::chrono::milliseconds>(took).count(), " ms: ", r.error);
  }

  // interrupt() from another thread: a blocked send() gives up with kRetry within the bound.
  {
    std::unique_ptr<Sink> blocked = c.blocking ? c.blocking() : c.dead();
    constexpr auto kInterruptAfter = std::chrono::milliseconds(300);
    std::thread stopper([&] {
      std::this_thread::sleep_for(kInterruptAfter);  // the send is under way by then
      blocked->interrupt();
    });
    const auto t0 = Clock::now();
    const SendResult r = blocked->send(first.records);
    const auto took = Clock::now() - t0;
    stopper.join();
    CHECK(r.status == SendStatus::kRetry);
    CHECK_FALSE(r.error.empty());
    CHECK(took < kInterruptAfter + c.interrupt_bound);
    if (c.blocking) CHECK(took >= kInterruptAfter);  // it did block until interrupted
    MESSAGE(name, ": send() returned ",
            std::chrono::duration_cast<std::chrono::milliseconds>(took - kInterruptAfter).count(),
            " ms after interrupt(): ", r.error);
  }
}

}  // namespace gw::test
