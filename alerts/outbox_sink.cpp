#include "alerts/outbox_sink.h"

#include <algorithm>
#include <string>

#include "alerts/alert_event.h"

namespace gw::alerts {
namespace {

class OutboxSink final : public Sink {
 public:
  explicit OutboxSink(std::unique_ptr<Notifier> notifier)
      : notifier_(std::move(notifier)), name_("notify." + notifier_->name()) {}

  const std::string& name() const override { return name_; }

  SendResult send(std::span<const ReadingRecord> batch) override {
    for (const ReadingRecord& r : batch) {
      if (r.kind != RecordKind::kAlert) continue;
      std::string error;
      const auto event = parseAlertJson(r.alert, &error);
      if (!event) return {SendStatus::kRejected, "outbox record is not an alert: " + error, {}};
      if (std::find(event->notify.begin(), event->notify.end(), notifier_->name()) ==
          event->notify.end())
        continue;
      DeliveryResult d = notifier_->deliver(*event);
      switch (d.status) {
        case DeliveryStatus::kDelivered:
          break;
        case DeliveryStatus::kRetry:
          return {SendStatus::kRetry, std::move(d.error), d.retry_after};
        case DeliveryStatus::kPermanent:
          return {
              SendStatus::kRejected,
              event->rule + " " + toString(event->state) + " " + event->dedup_key + ": " + d.error,
              {}};
      }
    }
    return {SendStatus::kDelivered, {}, {}};
  }

  void interrupt() override { notifier_->interrupt(); }

 private:
  std::unique_ptr<Notifier> notifier_;
  std::string name_;
};

}  // namespace

std::unique_ptr<Sink> makeOutboxSink(std::unique_ptr<Notifier> notifier) {
  return std::make_unique<OutboxSink>(std::move(notifier));
}

}  // namespace gw::alerts
