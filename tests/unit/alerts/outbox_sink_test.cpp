// The outbox adapter: which events a notifier gets, and how its answers map to the forwarder's.
#include "alerts/outbox_sink.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "alerts/alert_event.h"

using namespace gw;
using namespace gw::alerts;

namespace {

class ScriptedNotifier final : public Notifier {
 public:
  explicit ScriptedNotifier(std::vector<DeliveryResult> answers) : answers_(std::move(answers)) {}
  const std::string& name() const override { return name_; }
  DeliveryResult deliver(const AlertEvent& event) override {
    got.push_back(event);
    if (next_ < answers_.size()) return answers_[next_++];
    return {DeliveryStatus::kDelivered, {}, {}};
  }
  void interrupt() override {}
  std::vector<AlertEvent> got;

 private:
  std::string name_ = "pagerduty";
  std::vector<DeliveryResult> answers_;
  size_t next_ = 0;
};

const Series kPump{"pump-7", "bearing_temp", {{"line", "3"}}};
const gw::InternedSeries kPumpInterned(kPump);

ReadingRecord alertRecord(const char* rule, std::vector<std::string> notify,
                          AlertState state = AlertState::kFiring) {
  AlertEvent e;
  e.rule = rule;
  e.series = kPump;
  e.state = state;
  e.severity = Severity::kCritical;
  e.statistic = "value";
  e.value = 91.5;
  e.threshold = 85;
  e.time = 1'795'256'130'123'456'789;
  e.dedup_key = dedupKey("gw", rule, kPump);
  e.notify = std::move(notify);
  ReadingRecord r;
  r.kind = RecordKind::kAlert;
  r.series = &kPumpInterned;
  appendOutboxJson(r.alert, e);
  return r;
}

}  // namespace

TEST_CASE("outbox sink: delivers the events that name the notifier, exactly as stored") {
  auto owned = std::make_unique<ScriptedNotifier>(std::vector<DeliveryResult>{});
  ScriptedNotifier* n = owned.get();
  auto sink = makeOutboxSink(std::move(owned));
  CHECK(sink->name() == "notify.pagerduty");
  const std::vector<ReadingRecord> batch = {
      alertRecord("hot", {"pagerduty", "ops"}), alertRecord("silent", {"ops"}),
      alertRecord("hot", {"pagerduty"}, AlertState::kResolved)};
  CHECK((sink->send(batch).status == SendStatus::kDelivered));
  REQUIRE(n->got.size() == 2);
  CHECK(n->got[0].rule == "hot");
  CHECK((n->got[0].state == AlertState::kFiring));
  CHECK(n->got[0].time == 1'795'256'130'123'456'789);  // the exact instant, not ms
  CHECK(n->got[0].series == kPump);
  CHECK((n->got[1].state == AlertState::kResolved));
  CHECK(n->got[1].dedup_key == n->got[0].dedup_key);
}

TEST_CASE("outbox sink: retry keeps Retry-After; a permanent refusal is a rejection") {
  auto owned = std::make_unique<ScriptedNotifier>(std::vector<DeliveryResult>{
      {DeliveryStatus::kRetry, 7 * kNanosPerSecond, "HTTP 429: Too Many Requests"},
      {DeliveryStatus::kPermanent, {}, "HTTP 400: Event object is invalid: bad severity"}});
  auto sink = makeOutboxSink(std::move(owned));
  const std::vector<ReadingRecord> one = {alertRecord("hot", {"pagerduty"})};
  const SendResult retry = sink->send(one);
  CHECK((retry.status == SendStatus::kRetry));
  REQUIRE(retry.retry_after.has_value());
  CHECK(*retry.retry_after == 7 * kNanosPerSecond);
  CHECK(retry.error == "HTTP 429: Too Many Requests");
  const SendResult refused = sink->send(one);
  CHECK((refused.status == SendStatus::kRejected));
  CHECK(refused.error.find("hot firing gw/hot/pump-7/bearing_temp/line=3: HTTP 400") == 0);

  ReadingRecord broken;
  broken.kind = RecordKind::kAlert;
  broken.series = &kPumpInterned;
  broken.alert = "{not json";
  const std::vector<ReadingRecord> bad = {broken};
  CHECK((sink->send(bad).status == SendStatus::kRejected));
}
