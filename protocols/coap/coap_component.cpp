// The CoAP source as a component: coap::Source (server and observer on libcoap) reporting to
// the engine's Ingest.
#include <fmt/format.h>

#include "core/config/section.h"
#include "core/source.h"
#include "protocols/coap/coap_config.h"

namespace gw::coap {
namespace {

class CoapSource final : public gw::Source {
 public:
  CoapSource(const BuildContext& context, const SourceOptions& options, Ingest& ingest)
      : options_(options) {
    Handlers h;
    h.reading = [&ingest](Series& s, const payload::Decoded& d, Nanos receive_time) {
      ingest.reading(s, d, receive_time, TimeReference::kReceive);
      ingest.turnDone();  // a CoAP request's readings: each its own short turn
    };
    h.bad = [&ingest](const BadInput& input) { ingest.bad(input); };
    h.busy = [&ingest] { return ingest.backpressure(); };
    h.appended = [&ingest] { return ingest.appendedSeq(); };
    impl_ = coap::Source::create(context.io, options_, std::move(h));
  }

  const std::string& name() const override { return name_; }
  void start() override { impl_->start(); }
  /// Requests whose readings are at or below `seq` are answered.
  void committed(std::uint64_t seq) override { impl_->committed(seq); }
  void stop() override { impl_->stop(); }

  ComponentStatus status() const override {
    const auto cs = impl_->status();
    ComponentStatus s;
    s.name = name_;
    // Up while it serves; an observation not registered with its device is its error.
    if (options_.listen)
      s.target = fmt::format("coap://{}:{}", options_.listen_at.host, options_.listen_at.port);
    if (!options_.observe.empty())
      s.target += fmt::format("{}{} observed", s.target.empty() ? "" : ", ", cs.observations);
    using K = Figure::Kind;
    s.figures = {
        {"requests", cs.requests, K::kCounter, "CoAP PUT/POST requests received."},
        {"notifications", cs.notifications, K::kCounter, "CoAP observe notifications received."},
        {"deferred", cs.deferred, K::kGauge,
         "Confirmable requests waiting for the journal commit before their answer."},
        {"observing", cs.observing, K::kGauge, "Observations registered with their device."},
        {"observations", cs.observations, K::kGauge, "Resources configured or discovered."},
        {"reregistrations", cs.reregistrations, K::kCounter, "Observations registered again."},
    };
    if (cs.observing < cs.observations)
      s.last_error = fmt::format("observing {} of {} resources", cs.observing, cs.observations);
    return s;
  }

 private:
  const std::string name_ = "coap";
  SourceOptions options_;
  std::unique_ptr<coap::Source> impl_;
};

class CoapSourceConfig final : public SourceConfig {
 public:
  explicit CoapSourceConfig(SourceOptions options) : options_(std::move(options)) {}
  std::string name() const override { return "coap"; }
  std::string target() const override {
    return options_.listen
               ? fmt::format("coap://{}:{}", options_.listen_at.host, options_.listen_at.port)
               : std::string();
  }
  std::unique_ptr<gw::Source> build(const BuildContext& context, Ingest& ingest) const override {
    return std::make_unique<CoapSource>(context, options_, ingest);
  }

 private:
  SourceOptions options_;
};

std::unique_ptr<SourceConfig> parse(config::Section& s, const ParseContext&) {
  return std::make_unique<CoapSourceConfig>(parseConfig(s));
}

}  // namespace

Component component() { return {ComponentKind::kSource, "coap", false, &parse, nullptr}; }

}  // namespace gw::coap
