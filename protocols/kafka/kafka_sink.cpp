#include "protocols/kafka/kafka_sink.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/log.h"
#include "core/record_json.h"
#include "core/time.h"
#include "core/wake_flag.h"
#include "core/worker_thread.h"

namespace gw::kafka {
namespace {

// How long past message.timeout.ms send() waits for delivery reports before it purges what is
// left. librdkafka 2.0 enforces message.timeout.ms late while it waits out its reconnect
// backoff (up to reconnect.backoff.max.ms, 10 s), so the deadline is ours.
constexpr Nanos kReportMargin = 1 * kNanosPerSecond;
// After a purge, reports for the purged messages arrive almost at once.
constexpr Nanos kPurgeWait = 1 * kNanosPerSecond;
// The longest a wait for delivery reports sleeps without looking at the queue (a fallback: the
// queue's event wakes it).
constexpr Nanos kPollSlice = 100 * kNanosPerMilli;
// One line per (facility, broker) per interval: librdkafka repeats "Connection refused".
constexpr Nanos kLogInterval = 30 * kNanosPerSecond;
constexpr size_t kMaxLogKeys = 256;
// Connectivity probe (a metadata request) while idle: every idle tick until the brokers have
// answered, then every kProbeEvery; a probe not answered within the timeout means DOWN. With
// the forwarder's 1 s idle tick a silent loss shows within 1 + 2 + 4 s.
constexpr Nanos kProbeEvery = 2 * kNanosPerSecond;
constexpr int kProbeTimeoutUpMs = 4000;
constexpr int kProbeTimeoutDownMs = 2000;

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct TopicDeleter {
  void operator()(rd_kafka_topic_t* rkt) const { rd_kafka_topic_destroy(rkt); }
};
struct ConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
using KafkaPtr = std::unique_ptr<rd_kafka_t, KafkaDeleter>;
using TopicPtr = std::unique_ptr<rd_kafka_topic_t, TopicDeleter>;
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

Nanos millisToNanos(std::string_view ms) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(ms.data(), ms.data() + ms.size(), v);
  return ec == std::errc() ? v * kNanosPerMilli : 0;
}

/// Errors that sending the same records again can never fix: the records themselves are
/// refused. Everything else (outages, timeouts, leader changes, missing topics, ACLs) is
/// retried: the operator can fix it and the journal keeps the backlog meanwhile.
bool isPermanent(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
      return true;
    default:
      return false;
  }
}

gw::log::Level logLevelFromSyslog(int level) {
  if (level <= 3) return gw::log::Level::kError;
  if (level == 4) return gw::log::Level::kWarning;
  if (level == 5) return gw::log::Level::kNotice;
  if (level == 6) return gw::log::Level::kInfo;
  return gw::log::Level::kDebug;
}

/// Rate limits librdkafka's log lines per key; called from librdkafka's own threads.
class LogLimiter {
 public:
  /// True when the line may be written; `suppressed` gets how many were held back.
  bool allow(std::string_view key, std::uint64_t& suppressed) {
    std::lock_guard lock(mutex_);
    auto it = limiters_.find(std::string(key));
    if (it == limiters_.end()) {
      if (limiters_.size() >= kMaxLogKeys) limiters_.clear();
      it = limiters_.emplace(std::string(key), gw::log::RateLimiter(kLogInterval)).first;
    }
    return it->second.allow(monoNow(), suppressed);
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, gw::log::RateLimiter> limiters_;
};

/// Delivery bookkeeping of the batch in flight. Only touched on the send() thread: delivery
/// reports are served by rd_kafka_poll() there.
struct BatchState {
  std::uintptr_t generation = 0;
  size_t pending = 0;
  size_t delivered = 0;
  size_t failed_retriable = 0;
  size_t failed_permanent = 0;
  std::string first_error;

  void fail(rd_kafka_resp_err_t err, std::string_view what) {
    if (isPermanent(err)) {
      ++failed_permanent;
    } else {
      ++failed_retriable;
    }
    if (first_error.empty()) first_error = what;
  }
};

/// Our defaults, then [kafka.properties] (later settings win in librdkafka).
std::vector<std::pair<std::string, std::string>> settingsOf(const KafkaOptions& options) {
  std::vector<std::pair<std::string, std::string>> settings = {
      {"bootstrap.servers", options.brokers},
      {"client.id", options.gateway_id.empty() ? "iot-gateway" : options.gateway_id},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"compression.type", "lz4"},
      // send() produces a whole batch at once (the forwarder paces them): librdkafka need
      // not wait long for more, only for the rest of the batch being produced (~0.1 ms). 5 ms
      // added 5 ms to every record's latency for no larger requests (issue 16).
      {"linger.ms", "1"},
      // Same key → same partition as the Java client, so Kafka Streams joins line up.
      {"partitioner", "murmur2_random"},
      // librdkafka's 10 s default delays draining the journal after an outage by up to 10 s.
      {"reconnect.backoff.max.ms", "2000"},
      {"message.timeout.ms",
       std::to_string(std::max<Nanos>(1, options.delivery_timeout / kNanosPerMilli))},
  };
  for (const auto& [k, v] : options.properties) settings.emplace_back(k, v);
  return settings;
}

class KafkaSink final : public Sink {
 public:
  explicit KafkaSink(const KafkaOptions& options)
      : options_(options), gateway_id_(options.gateway_id) {
    settings_ = settingsOf(options);

    std::string errstr;
    if (!createHandle(errstr)) throw KafkaConfigError(errstr);
  }

  ~KafkaSink() override { destroyHandle(); }

  KafkaSink(const KafkaSink&) = delete;
  KafkaSink& operator=(const KafkaSink&) = delete;

  const std::string& name() const override { return name_; }

  void interrupt() override {
    interrupted_.store(true, std::memory_order_relaxed);
    events_.notify();
  }

  std::optional<LinkHealth> health() const override { return link_.get(); }

  void idle() override {
    if (interrupted() || fatal_ || !rk_) return;
    rd_kafka_poll(rk_.get(), 0);  // serves error events: refused, all brokers down, auth
    const bool up = link_.get().state == LinkState::kUp;
    if (up && monoNow() - last_confirmed_ < kProbeEvery) return;
    // A metadata request is the lightest thing every broker answers: an answer confirms the
    // connection, no answer in time means none is reachable.
    const int timeout_ms = up ? kProbeTimeoutUpMs : kProbeTimeoutDownMs;
    const rd_kafka_metadata_t* md = nullptr;
    const rd_kafka_resp_err_t err = rd_kafka_metadata(rk_.get(), 0, topic_.get(), &md, timeout_ms);
    if (md != nullptr) rd_kafka_metadata_destroy(md);
    rd_kafka_poll(rk_.get(), 0);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      confirmed();
      return;
    }
    std::string cause;
    {
      std::lock_guard lock(cause_mu_);
      cause = last_cause_;
    }
    if (cause.empty())
      cause = fmt::format("no answer from the brokers within {} s ({})", timeout_ms / 1000,
                          rd_kafka_err2str(err));
    if (link_.get().state != LinkState::kDown)
      gw::log::warn("kafka: brokers unreachable: {}", cause);
    link_.set(LinkState::kDown, std::move(cause));
  }

  SendResult send(std::span<const ReadingRecord> batch) override {
    if (interrupted()) return {SendStatus::kRetry, "interrupted"};
    if (auto r = recoverFromFatal()) return *r;
    rd_kafka_poll(rk_.get(), 0);  // serve errors/logs queued while idle

    BatchState state;
    state.generation = ++generation_;
    batch_ = &state;

    const Nanos start = monoNow();
    bool stop = false;
    size_t handled = 0;  // records produced or failed; the rest were never tried
    for (const ReadingRecord& r : batch) {
      if (stop) break;
      ++handled;
      json_.clear();
      rd_kafka_topic_t* topic = topic_.get();
      switch (r.kind) {
        case RecordKind::kReading:
          appendReadingJson(json_, r);
          break;
        case RecordKind::kAggregate:
          appendAggregateJson(json_, r);
          topic = aggregates_topic_.get();
          break;
        case RecordKind::kAlert:
          json_ = r.alert;  // already the alert record
          topic = alerts_topic_.get();
          break;
      }
      const std::string& device = r.series->device;
      for (;;) {
        const rd_kafka_resp_err_t err = rd_kafka_producev(
            rk_.get(), RD_KAFKA_V_RKT(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(device.data(), device.size()),
            RD_KAFKA_V_VALUE(json_.data(), json_.size()),
            RD_KAFKA_V_TIMESTAMP(r.event_time / kNanosPerMilli),
            RD_KAFKA_V_HEADER("gateway", gateway_id_.data(),
                              static_cast<ssize_t>(gateway_id_.size())),
            RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(state.generation)), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          ++state.pending;
          break;
        }
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
          // The local queue drains as reports arrive; give up producing once the batch could
          // no longer be confirmed in time anyway.
          awaitEvents();
          if (interrupted() || monoNow() - start > message_timeout_) {
            state.fail(err, "local producer queue full");
            stop = true;
            break;
          }
          continue;
        }
        state.fail(err, rd_kafka_err2str(err));
        // A record the client refuses by itself (too large) does not spoil the rest.
        if (!isPermanent(err)) stop = true;
        break;
      }
    }

    // Wait for every report of this batch, so nothing of a failed batch is still queued
    // when the forwarder sends it again.
    const Nanos deadline = monoNow() + message_timeout_ + kReportMargin;
    while (state.pending > 0 && monoNow() < deadline && !interrupted()) awaitEvents();
    if (state.pending > 0) {
      const bool was_interrupted = interrupted();
      // Say why, rather than the "Purged in queue" of the purged messages' reports.
      if (was_interrupted) {
        state.first_error = "interrupted";
      } else if (state.first_error.empty()) {
        state.first_error = fmt::format("not confirmed within {} ms (brokers unreachable?)",
                                        message_timeout_ / kNanosPerMilli);
      }
      rd_kafka_purge(rk_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      const Nanos purge_deadline = monoNow() + kPurgeWait;
      while (state.pending > 0 && monoNow() < purge_deadline) awaitEvents();
      if (state.pending > 0) {
        // Later reports carry a stale generation and are ignored.
        gw::log::warn("kafka: {} delivery reports still missing after purge", state.pending);
        state.failed_retriable += state.pending;
        state.pending = 0;
      }
    }
    batch_ = nullptr;
    state.failed_retriable += batch.size() - handled;

    const size_t failed = state.failed_retriable + state.failed_permanent;
    if (failed == 0) return {SendStatus::kDelivered, {}};
    // "Message timed out" says nothing; the connection's own error does.
    const LinkHealth link = link_.get();
    std::string error =
        fmt::format("{} of {} records failed: {}", failed, batch.size(),
                    link.state == LinkState::kDown && !link.cause.empty() && !interrupted()
                        ? link.cause
                        : state.first_error);
    // Retry while anything might still get through; what is left is refused for good.
    if (state.failed_retriable > 0) return {SendStatus::kRetry, std::move(error)};
    return {SendStatus::kRejected, std::move(error)};
  }

 private:
  bool interrupted() const { return interrupted_.load(std::memory_order_relaxed); }

  /// Serves what librdkafka has queued for us (delivery reports, errors); if that was nothing,
  /// sleeps until it queues something (onQueued) or kPollSlice passed, and serves that. Not
  /// rd_kafka_poll(timeout): librdkafka signals its queue's condition variable while it holds
  /// the queue's lock, so the woken thread blocked on that lock again, and unlocking it after
  /// the wait woke nobody but cost a call: ~3 futex calls per batch on this thread and one
  /// more on the broker thread's, against one each here (issue 16).
  void awaitEvents() {
    if (rd_kafka_poll(rk_.get(), 0) > 0) return;
    events_.waitFor(kPollSlice);
    rd_kafka_poll(rk_.get(), 0);
  }

  /// librdkafka's queue event: called on its thread, under its queue's lock, when something is
  /// queued on the empty main queue.
  static void onQueued(rd_kafka_t* /*rk*/, void* opaque) {
    static_cast<KafkaSink*>(opaque)->events_.notify();
  }

  static rd_kafka_resp_err_t onThreadStart(rd_kafka_t* /*rk*/, rd_kafka_thread_type_t /*type*/,
                                           const char* /*name*/, void* /*opaque*/) {
    becomeWorkerThread(nullptr);  // keeps librdkafka's thread name (rdk:broker1, rdk:main)
    return RD_KAFKA_RESP_ERR_NO_ERROR;
  }
  static rd_kafka_resp_err_t onNewHandle(rd_kafka_t* rk, const rd_kafka_conf_t* /*conf*/,
                                         void* /*opaque*/, char* /*errstr*/, size_t /*size*/) {
    return rd_kafka_interceptor_add_on_thread_start(rk, "gw-worker-threads", &onThreadStart,
                                                    nullptr);
  }

  bool createHandle(std::string& errstr) {
    char buf[512];
    ConfPtr conf(rd_kafka_conf_new());
    for (const auto& [k, v] : settings_) {
      if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), buf, sizeof buf) !=
          RD_KAFKA_CONF_OK) {
        errstr = buf;
        return false;
      }
    }
    // The effective timeout, also when [kafka.properties] set it.
    size_t size = sizeof buf;
    if (rd_kafka_conf_get(conf.get(), "message.timeout.ms", buf, &size) == RD_KAFKA_CONF_OK) {
      message_timeout_ = millisToNanos(buf);
    }
    if (message_timeout_ <= 0) message_timeout_ = options_.delivery_timeout;

    rd_kafka_conf_set_opaque(conf.get(), this);
    // librdkafka's own threads (main, brokers) are woken by every batch the worker produces:
    // as worker threads of ours they do not preempt the event loop (core/worker_thread.h).
    rd_kafka_conf_interceptor_add_on_new(conf.get(), "gw-worker-threads", &onNewHandle, nullptr);
    rd_kafka_conf_set_dr_msg_cb(conf.get(), &KafkaSink::onDelivery);
    rd_kafka_conf_set_error_cb(conf.get(), &KafkaSink::onError);
    rd_kafka_conf_set_log_cb(conf.get(), &KafkaSink::onLog);

    // rd_kafka_new takes over conf only on success.
    KafkaPtr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), buf, sizeof buf));
    if (!rk) {
      errstr = buf;
      return false;
    }
    static_cast<void>(conf.release());  // rd_kafka_new owns it now
    TopicPtr topics[3];
    const std::string* names[3] = {&options_.readings_topic, &options_.aggregates_topic,
                                   &options_.alerts_topic};
    for (int i = 0; i < 3; ++i) {
      topics[i].reset(rd_kafka_topic_new(rk.get(), names[i]->c_str(), nullptr));
      if (!topics[i]) {
        errstr =
            fmt::format("kafka topic {}: {}", *names[i], rd_kafka_err2str(rd_kafka_last_error()));
        return false;
      }
    }
    main_queue_ = rd_kafka_queue_get_main(rk.get());
    rd_kafka_queue_cb_event_enable(main_queue_, &KafkaSink::onQueued, this);
    rk_ = std::move(rk);
    topic_ = std::move(topics[0]);
    aggregates_topic_ = std::move(topics[1]);
    alerts_topic_ = std::move(topics[2]);
    return true;
  }

  void destroyHandle() {
    if (!rk_) return;
    // send() never returns with messages outstanding; this is for the odd stray one.
    rd_kafka_purge(rk_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(rk_.get(), 0);
    rd_kafka_queue_cb_event_enable(main_queue_, nullptr, nullptr);
    rd_kafka_queue_destroy(main_queue_);
    main_queue_ = nullptr;
    topic_.reset();
    aggregates_topic_.reset();
    alerts_topic_.reset();
    rk_.reset();
  }

  /// An idempotent producer that hit a fatal error refuses every further message; start a
  /// new one (a new producer id) instead of failing forever.
  std::optional<SendResult> recoverFromFatal() {
    if (!fatal_) return std::nullopt;
    fatal_ = false;
    gw::log::warn("kafka: recreating the producer after a fatal error");
    destroyHandle();
    std::string errstr;
    if (!createHandle(errstr)) {
      fatal_ = true;
      return SendResult{SendStatus::kRetry, "kafka producer: " + errstr};
    }
    return std::nullopt;
  }

  static void onDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<KafkaSink*>(opaque);
    BatchState* state = self->batch_;
    if (state == nullptr || reinterpret_cast<std::uintptr_t>(m->_private) != state->generation) {
      return;  // a report of an earlier, already failed batch
    }
    --state->pending;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++state->delivered;
      self->confirmed();
    } else {
      state->fail(m->err, rd_kafka_err2str(m->err));
    }
  }

  static void onError(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
    auto* self = static_cast<KafkaSink*>(opaque);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
      char buf[512];
      const rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
      gw::log::error("kafka: fatal producer error: {}: {}", rd_kafka_err2name(orig), buf);
      self->fatal_ = true;
      return;
    }
    self->noteError(static_cast<rd_kafka_resp_err_t>(err), reason);
    // Connection failures were already written by the log callback.
    if (err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
      gw::log::debug("kafka: {}", reason);
      return;
    }
    std::uint64_t suppressed = 0;
    if (!self->log_limiter_.allow("all-brokers-down", suppressed)) return;
    if (suppressed > 0) {
      gw::log::warn("kafka: {} ({} similar suppressed)", reason, suppressed);
    } else {
      gw::log::warn("kafka: {}", reason);
    }
  }

  /// A delivery or a probe answer: the brokers are reachable.
  void confirmed() {
    last_confirmed_ = monoNow();
    if (link_.get().state != LinkState::kUp) {
      if (link_.get().state == LinkState::kDown) gw::log::notice("kafka: brokers reachable again");
      link_.set(LinkState::kUp);
    }
    std::lock_guard lock(cause_mu_);
    last_cause_.clear();
  }

  /// Error events (served by rd_kafka_poll on the send()/idle() thread). A broker's connection
  /// error is kept as the cause; the link is DOWN once every broker is down, or at once on an
  /// authentication error (retrying will not fix a wrong password).
  void noteError(rd_kafka_resp_err_t err, const char* reason) {
    switch (err) {
      case RD_KAFKA_RESP_ERR__TRANSPORT:
      case RD_KAFKA_RESP_ERR__SSL:
      case RD_KAFKA_RESP_ERR__RESOLVE:
      case RD_KAFKA_RESP_ERR__AUTHENTICATION: {
        std::string cause = reason;
        // librdkafka's "(after 0ms in state CONNECT)" tail and repeat counts are noise here.
        if (const auto p = cause.find(" (after "); p != std::string::npos) cause.resize(p);
        {
          std::lock_guard lock(cause_mu_);
          last_cause_ = cause;
        }
        // While down, the latest attempt's error is the one that matters.
        if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION || link_.get().state == LinkState::kDown)
          link_.set(LinkState::kDown, cause);
        return;
      }
      case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN: {
        std::string cause;
        {
          std::lock_guard lock(cause_mu_);
          cause = last_cause_;
        }
        link_.set(LinkState::kDown, cause.empty() ? std::string(reason) : cause);
        return;
      }
      default:
        return;
    }
  }

  static void onLog(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
    const gw::log::Level lvl = logLevelFromSyslog(level);
    if (!gw::log::enabled(lvl)) return;
    if (lvl <= gw::log::Level::kWarning) {
      auto* self = static_cast<KafkaSink*>(rd_kafka_opaque(rk));
      // Key: facility + the broker the line is about ("127.0.0.1:9092/1: Connect ... failed").
      std::string_view msg(buf);
      std::string key(fac);
      key += '|';
      key += msg.substr(0, msg.find(": "));
      std::uint64_t suppressed = 0;
      if (self != nullptr && !self->log_limiter_.allow(key, suppressed)) return;
      if (suppressed > 0) {
        gw::log::write(lvl,
                       fmt::format("kafka: [{}] {} ({} similar suppressed)", fac, msg, suppressed));
        return;
      }
    }
    gw::log::write(lvl, fmt::format("kafka: [{}] {}", fac, buf));
  }

  const std::string name_ = "kafka";
  KafkaOptions options_;
  std::string gateway_id_;
  std::vector<std::pair<std::string, std::string>> settings_;
  Nanos message_timeout_ = 0;
  LogLimiter log_limiter_;  // outlives rk_ (declared before it): librdkafka threads log into it
  std::atomic<bool> interrupted_{false};
  bool fatal_ = false;  // set by onError, which rd_kafka_poll serves on the send() thread
  LinkMonitor link_;
  Nanos last_confirmed_ = 0;  // send()/idle() thread only
  std::mutex cause_mu_;
  std::string last_cause_;  // guarded by cause_mu_: the latest broker connection error
  std::uintptr_t generation_ = 0;
  BatchState* batch_ = nullptr;
  std::string json_;  // reused for every record
  WakeFlag events_;   // onQueued → awaitEvents()
  KafkaPtr rk_;
  rd_kafka_queue_t* main_queue_ = nullptr;  // rk_'s, with onQueued as its event callback
  TopicPtr topic_, aggregates_topic_, alerts_topic_;
};

}  // namespace

std::optional<std::pair<std::string, std::string>> checkProperties(const KafkaOptions& options) {
  char buf[512];
  ConfPtr conf(rd_kafka_conf_new());
  for (const auto& [k, v] : settingsOf(options)) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), buf, sizeof buf) != RD_KAFKA_CONF_OK)
      return std::make_pair(k, std::string(buf));
  }
  return std::nullopt;
}

ProbeResult probeKafka(const KafkaOptions& options, Nanos timeout) {
  struct Errors {
    std::mutex mu;
    std::string last;  // the cause librdkafka reported (connection refused, TLS, SASL)
  } errors;
  char buf[512];
  ConfPtr conf(rd_kafka_conf_new());
  for (const auto& [k, v] : settingsOf(options)) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), buf, sizeof buf) != RD_KAFKA_CONF_OK)
      return {false, fmt::format("property {}: {}", k, buf)};
  }
  rd_kafka_conf_set_opaque(conf.get(), &errors);
  rd_kafka_conf_set_error_cb(conf.get(), [](rd_kafka_t*, int, const char* reason, void* opaque) {
    auto* e = static_cast<Errors*>(opaque);
    std::lock_guard lock(e->mu);
    e->last = reason;
  });
  rd_kafka_conf_set_log_cb(conf.get(), [](const rd_kafka_t*, int, const char*, const char*) {});
  KafkaPtr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), buf, sizeof buf));
  if (!rk) return {false, buf};
  static_cast<void>(conf.release());
  const struct rd_kafka_metadata* md = nullptr;
  const auto err = rd_kafka_metadata(
      rk.get(), 0, nullptr, &md, static_cast<int>(std::max<Nanos>(timeout / kNanosPerMilli, 1)));
  rd_kafka_poll(rk.get(), 0);  // serves the error callbacks
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const int brokers = md->broker_cnt;
    rd_kafka_metadata_destroy(md);
    return {true, fmt::format("metadata from {} broker{}", brokers, brokers == 1 ? "" : "s")};
  }
  std::lock_guard lock(errors.mu);
  if (errors.last.empty()) return {false, rd_kafka_err2str(err)};
  return {false, fmt::format("{} ({})", errors.last, rd_kafka_err2str(err))};
}

std::unique_ptr<Sink> makeKafkaSink(const KafkaOptions& options) {
  return std::make_unique<KafkaSink>(options);
}

}  // namespace gw::kafka
