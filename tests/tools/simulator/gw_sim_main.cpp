// gw-sim: sensor simulator and MQTT load generator (Paho C++ async client).
//
// One thread generates and publishes (paced by absolute deadlines); Paho's callback thread
// completes delivery tokens. With --delay, each reading waits in a min-heap of due times
// between being taken and being published, so delays never hold up the pacing. Every publish
// attempt is tracked until its token completes; a failed or orphaned attempt (connection lost
// before the PUBACK) goes back on a retry queue, so `--count N --qos 1` means N acknowledged
// publishes even if the broker connection flaps.
#include <fmt/format.h>
#include <mqtt/async_client.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <random>
#include <thread>
#include <unordered_map>

#include "core/time.h"
#include "tests/tools/simulator/device_clock.h"
#include "tests/tools/simulator/reading_generator.h"

namespace gw::sim {
namespace {

constexpr int kExitConnect = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUndelivered = 3;
// Paho C scans its whole command queue per publish, so a deep queue costs throughput.
constexpr int kDefaultWindowQos0 = 100;
// Mosquitto's default Receive Maximum (max_inflight_messages).
constexpr int kDefaultWindowQos1 = 20;
// Readings waiting for their --delay; beyond this, generation waits.
constexpr std::size_t kMaxScheduled = 1 << 16;
// A delayed publish this far past its due time counts as late.
constexpr Nanos kLate = 5 * kNanosPerMilli;

volatile std::sig_atomic_t g_signals = 0;

// First signal: stop generating and drain. Second: give up at once.
extern "C" void onSignal(int) {
  if (g_signals > 0) std::_Exit(130);
  g_signals = 1;
}

struct Options {
  std::string uri;
  std::string client_id;
  GeneratorOptions gen;
  std::string metrics = "bearing_temp,vibration,pressure,current";
  std::string format = "json";
  bool no_timestamp = false;
  std::uint64_t count = 0;
  double duration_s = 0;
  double rate = 0;
  int qos = 0;
  std::string out;
  int mqtt_version = 5;
  bool live = false;
  bool bad_input = false;
  int max_inflight = 0;  // 0: auto, kDefaultWindowQos0 or kDefaultWindowQos1
  double connect_timeout_s = 10;
  double ack_timeout_s = 30;
  double drain_timeout_s = 60;
  std::vector<std::string> clocks;  // --clock DEVICE=SPEC, parsed into gen.clocks
  std::optional<DelayRange> delay;
};

std::vector<std::string> splitCsv(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    auto end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

void sleepUntilMono(Nanos t) {
  timespec ts{static_cast<time_t>(t / kNanosPerSecond), static_cast<long>(t % kNanosPerSecond)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    if (g_signals) return;
  }
}

// Smooth pacing: send k is due at t0 + k/rate. Falling more than a second behind (a reconnect,
// a full window) restarts the schedule instead of bursting to catch up.
class Pacer {
 public:
  explicit Pacer(double rate) : rate_(rate) {}
  void waitTurn() {
    if (rate_ <= 0) return;
    const Nanos now = monoNow();
    const Nanos d = nextDue(now);
    if (d > now + 20 * kNanosPerMicro) sleepUntilMono(d);
    ++k_;
  }
  // Non-blocking form: when the next send is due; take it with advance().
  Nanos nextDue(Nanos now) {
    if (rate_ <= 0) return now;
    if (k_ == 0 || now > due() + kNanosPerSecond) {
      t0_ = now;
      k_ = 0;
    }
    return due();
  }
  void advance() { ++k_; }

 private:
  Nanos due() const { return t0_ + static_cast<Nanos>(static_cast<double>(k_) * 1e9 / rate_); }
  double rate_;
  Nanos t0_ = 0;
  std::uint64_t k_ = 0;
};

struct Counters {
  std::uint64_t sent = 0;  // distinct good messages handed to the client
  std::uint64_t acked = 0;
  std::uint64_t failed = 0;
  std::uint64_t retries = 0;
  std::uint64_t bad_sent = 0;
  std::uint64_t bad_acked = 0;
  std::uint64_t bad_failed = 0;
  std::uint64_t reconnects = 0;
  std::uint64_t late = 0;  // delayed publishes more than kLate past their due time
};

class Simulator : public mqtt::iaction_listener {
 public:
  Simulator(Options opts, ReadingGenerator gen)
      : opts_(std::move(opts)),
        gen_(std::move(gen)),
        window_(opts_.max_inflight > 0 ? opts_.max_inflight
                : opts_.qos > 0        ? kDefaultWindowQos1
                                       : kDefaultWindowQos0),
        // With create options, Paho C caps *queued* publishes at maxBufferedMessages (default
        // 100) even while connected, failing the rest with -12; size it to our window.
        client_(opts_.uri, opts_.client_id,
                mqtt::create_options(opts_.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1,
                                     window_ + 16),
                nullptr) {}

  int run();

 private:
  struct Attempt {
    std::shared_ptr<SimMessage> msg;
    Nanos sent_at = 0;
    std::uint64_t epoch = 0;
  };

  bool connect();
  void publishOne(std::shared_ptr<SimMessage> msg);
  void complete(const mqtt::token& tok, bool ok);
  void on_success(const mqtt::token& tok) override { complete(tok, true); }
  void on_failure(const mqtt::token& tok) override { complete(tok, false); }
  // Requires mu_. Puts a message back for another attempt.
  void retryLocked(std::shared_ptr<SimMessage> msg);
  // Requires mu_. Attempts left without an answer past a reconnect or the ack timeout.
  void reapOrphansLocked(Nanos now);
  void flushOut(bool force);
  void liveLoop();
  // Publishes what `take` yields while `more` says so (paced by `pacer` if given), with
  // retries, until every attempt is answered or the drain timeout passes.
  void pump(const std::function<bool()>& more,
            const std::function<std::shared_ptr<SimMessage>()>& take, Pacer* pacer);
  // As pump(), but each message taken waits until its delay_ns has passed (--delay).
  void pumpDelayed(const std::function<bool()>& more,
                   const std::function<std::shared_ptr<SimMessage>()>& take, Pacer& pacer);

  Options opts_;
  ReadingGenerator gen_;
  std::mt19937_64 delay_rng_{opts_.gen.seed ^ 0x9e3779b97f4a7c15ULL};  // apart from values
  int window_;  // unanswered publishes allowed at once
  std::FILE* out_ = nullptr;
  int receive_maximum_ = 65535;  // the broker's, from CONNACK (MQTT v5)

  std::mutex mu_;  // guards the state below (not client_); never held while calling Paho
  std::condition_variable cv_;
  bool connected_ = false;
  std::uint64_t epoch_ = 0;  // +1 per successful (re)connect
  Nanos connected_at_ = 0;
  std::unordered_map<std::uint64_t, Attempt> pending_;
  std::deque<std::shared_ptr<SimMessage>> retry_;
  std::uint64_t next_id_ = 1;
  Counters c_;
  std::string out_buf_;
  std::string last_error_;
  Nanos last_ack_ = 0;
  bool done_ = false;

  // Last, so it is destroyed first: its callbacks use the members above.
  mqtt::async_client client_;
};

bool Simulator::connect() {
  client_.set_connected_handler([this](const std::string&) {
    std::lock_guard lk(mu_);
    connected_ = true;
    if (epoch_++ > 0) ++c_.reconnects;
    connected_at_ = monoNow();
    cv_.notify_all();
  });
  client_.set_connection_lost_handler([this](const std::string& cause) {
    std::lock_guard lk(mu_);
    connected_ = false;
    last_error_ = "connection lost" + (cause.empty() ? std::string() : ": " + cause);
  });
  client_.set_disconnected_handler([this](const mqtt::properties&, mqtt::ReasonCode rc) {
    std::lock_guard lk(mu_);
    connected_ = false;
    last_error_ = fmt::format("broker sent DISCONNECT, reason {}", static_cast<int>(rc));
  });

  mqtt::connect_options_builder b;
  // mqtt_version() first: in Paho C++ 1.2.0 it resets the clean-session/clean-start flag
  // that does not belong to that protocol version.
  b.mqtt_version(opts_.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1);
  if (opts_.mqtt_version == 5) {
    b.clean_start(true);
  } else {
    b.clean_session(true);
  }
  b.keep_alive_interval(std::chrono::seconds(20))
      .connect_timeout(std::chrono::seconds(5))
      .automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(4))
      .max_inflight(window_);
  const auto conn_opts = b.finalize();

  const Nanos deadline = monoNow() + static_cast<Nanos>(opts_.connect_timeout_s * 1e9);
  std::string err;
  while (!g_signals) {
    try {
      auto tok = client_.connect(conn_opts);
      const Nanos left = deadline - monoNow();
      // token::wait_for() in Paho C++ 1.2.0 only compiles for durations convertible to ms.
      if (tok->wait_for(std::chrono::milliseconds(std::max<Nanos>(left / kNanosPerMilli, 1)))) {
        const auto& props = tok->get_connect_response().get_properties();
        if (props.contains(mqtt::property::RECEIVE_MAXIMUM)) {
          receive_maximum_ = mqtt::get<std::uint16_t>(props, mqtt::property::RECEIVE_MAXIMUM);
        }
        return true;
      }
      err = "no CONNACK";
    } catch (const mqtt::exception& e) {
      err = e.what();
    }
    if (monoNow() + 250 * kNanosPerMilli >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  fmt::print(stderr, "gw-sim: could not connect to {} within {:g} s: {}\n", opts_.uri,
             opts_.connect_timeout_s, err);
  return false;
}

void Simulator::publishOne(std::shared_ptr<SimMessage> msg) {
  auto m = mqtt::make_message(msg->topic, msg->payload, opts_.qos, false);
  std::uint64_t id;
  {
    std::lock_guard lk(mu_);
    id = next_id_++;
    ++msg->attempts;
    // Registered before publish(): the token may complete before publish() returns.
    pending_.emplace(id, Attempt{msg, monoNow(), epoch_});
  }
  try {
    client_.publish(m, reinterpret_cast<void*>(static_cast<std::uintptr_t>(id)), *this);
  } catch (const mqtt::exception& e) {
    std::unique_lock lk(mu_);
    last_error_ = fmt::format("publish: {}", e.what());
    if (pending_.erase(id) == 1) retryLocked(std::move(msg));
    // Typically "not connected": wait for the reconnect instead of spinning.
    cv_.wait_for(lk, std::chrono::milliseconds(20));
  }
}

void Simulator::complete(const mqtt::token& tok, bool ok) {
  const auto id =
      static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(tok.get_user_context()));
  std::lock_guard lk(mu_);
  auto it = pending_.find(id);
  if (it == pending_.end()) return;  // already given up on (orphan reaped) and retried
  auto msg = std::move(it->second.msg);
  pending_.erase(it);
  if (ok) {
    if (msg->bad.empty()) {
      ++c_.acked;
    } else {
      ++c_.bad_acked;
    }
    last_ack_ = monoNow();
    if (out_) gen_.appendRecords(out_buf_, *msg);
  } else {
    last_error_ = fmt::format("publish failed: rc={} reason={}", tok.get_return_code(),
                              static_cast<int>(tok.get_reason_code()));
    retryLocked(std::move(msg));
  }
  cv_.notify_all();
}

void Simulator::retryLocked(std::shared_ptr<SimMessage> msg) {
  ++c_.retries;
  retry_.push_back(std::move(msg));
}

void Simulator::reapOrphansLocked(Nanos now) {
  // Paho normally fails outstanding tokens when a clean session is dropped, but an attempt
  // from before a reconnect that is still silent a few seconds later will never be answered.
  const Nanos after_reconnect = connected_at_ + 5 * kNanosPerSecond;
  const Nanos ack_timeout = static_cast<Nanos>(opts_.ack_timeout_s * 1e9);
  for (auto it = pending_.begin(); it != pending_.end();) {
    const bool orphan = connected_ && it->second.epoch < epoch_ && now > after_reconnect;
    if (orphan || now - it->second.sent_at > ack_timeout) {
      retryLocked(std::move(it->second.msg));
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
}

void Simulator::flushOut(bool force) {
  if (!out_) return;
  std::string buf;
  {
    std::lock_guard lk(mu_);
    if (!force && out_buf_.size() < (1 << 16)) return;
    buf.swap(out_buf_);
  }
  if (!buf.empty() && std::fwrite(buf.data(), 1, buf.size(), out_) != buf.size()) {
    fmt::print(stderr, "gw-sim: writing --out failed\n");
  }
}

void Simulator::liveLoop() {
  std::uint64_t prev = 0;
  auto tick = std::chrono::steady_clock::now();
  std::unique_lock lk(mu_);
  while (!done_) {
    tick += std::chrono::seconds(1);
    if (cv_.wait_until(lk, tick, [this] { return done_; })) break;
    const auto acked = c_.acked;
    fmt::print(stderr, "\rsent={} acked={} retries={} inflight={} rate={}/s{}   ", c_.sent, acked,
               c_.retries, pending_.size(), acked - prev, connected_ ? "" : " (disconnected)");
    std::fflush(stderr);
    prev = acked;
  }
}

void Simulator::pump(const std::function<bool()>& more,
                     const std::function<std::shared_ptr<SimMessage>()>& take, Pacer* pacer) {
  Nanos drain_deadline = 0;
  Nanos last_reap = monoNow();
  for (;;) {
    flushOut(false);
    const bool generating = more();
    const Nanos now = monoNow();
    std::unique_lock lk(mu_);
    if (now - last_reap > 200 * kNanosPerMilli) {
      reapOrphansLocked(now);
      last_reap = now;
    }
    if (!generating) {
      if (retry_.empty() && pending_.empty()) return;
      if (drain_deadline == 0) {
        drain_deadline = now + static_cast<Nanos>(opts_.drain_timeout_s * 1e9);
      }
      if (now > drain_deadline) return;
    }
    if (!connected_ || pending_.size() >= static_cast<std::size_t>(window_) ||
        (!generating && retry_.empty())) {
      cv_.wait_for(lk, std::chrono::milliseconds(20));
      continue;
    }
    lk.unlock();
    if (pacer) pacer->waitTurn();
    std::shared_ptr<SimMessage> msg;
    lk.lock();
    if (!retry_.empty()) {
      msg = std::move(retry_.front());
      retry_.pop_front();
      lk.unlock();
    } else {
      lk.unlock();
      msg = take();
    }
    publishOne(std::move(msg));
  }
}

void Simulator::pumpDelayed(const std::function<bool()>& more,
                            const std::function<std::shared_ptr<SimMessage>()>& take,
                            Pacer& pacer) {
  struct Due {
    Nanos at;
    std::uint64_t seq;  // FIFO among equal due times
    std::shared_ptr<SimMessage> msg;
    bool operator>(const Due& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  std::priority_queue<Due, std::vector<Due>, std::greater<>> due;
  std::uint64_t seq = 0;
  Nanos drain_deadline = 0;
  Nanos last_reap = monoNow();
  for (;;) {
    flushOut(false);
    const bool generating = more();
    const Nanos now = monoNow();
    std::unique_lock lk(mu_);
    if (now - last_reap > 200 * kNanosPerMilli) {
      reapOrphansLocked(now);
      last_reap = now;
    }
    if (!generating) {
      if (due.empty() && retry_.empty() && pending_.empty()) return;
      if (drain_deadline == 0) {
        drain_deadline = now + static_cast<Nanos>(opts_.drain_timeout_s * 1e9) + opts_.delay->max;
      }
      if (now > drain_deadline) {
        // Not published in time: counted as failed with the unanswered ones.
        for (; !due.empty(); due.pop()) retry_.push_back(due.top().msg);
        return;
      }
    }
    const bool can_send = connected_ && pending_.size() < static_cast<std::size_t>(window_);
    std::shared_ptr<SimMessage> msg;
    if (can_send && !retry_.empty()) {
      msg = std::move(retry_.front());
      retry_.pop_front();
    } else if (can_send && !due.empty() && due.top().at <= now) {
      if (now - due.top().at > kLate) ++c_.late;
      msg = due.top().msg;
      due.pop();
    }
    if (msg) {
      lk.unlock();
      publishOne(std::move(msg));
      continue;
    }
    // A message due but not sendable (window full, disconnected) holds generation back, as in
    // pump(): new readings would only queue up behind it and go out later than their delay.
    Nanos wake = now + 20 * kNanosPerMilli;
    const bool backlog = !retry_.empty() || (!due.empty() && due.top().at <= now);
    if (generating && !backlog && due.size() < kMaxScheduled) {
      const Nanos gen_at = pacer.nextDue(now);
      if (gen_at <= now + 20 * kNanosPerMicro) {
        lk.unlock();
        pacer.advance();
        auto m = take();  // takes the reading's true time
        const Nanos at = monoNow() + m->delay_ns.value_or(0);
        due.push({at, seq++, std::move(m)});
        continue;
      }
      wake = std::min(wake, gen_at);
    }
    if (can_send && !due.empty()) wake = std::min(wake, due.top().at);
    if (wake > now) {
      cv_.wait_until(lk, std::chrono::steady_clock::time_point(std::chrono::nanoseconds(wake)));
    }
  }
}

int Simulator::run() {
  if (!opts_.out.empty()) {
    out_ = std::fopen(opts_.out.c_str(), "w");
    if (!out_) {
      fmt::print(stderr, "gw-sim: cannot open --out {}: {}\n", opts_.out, std::strerror(errno));
      return kExitUsage;
    }
  }
  if (!connect()) return kExitConnect;
  // Paho C 1.3.12 holds QoS>0 publishes back at the broker's Receive Maximum ("Blocking on
  // server receive maximum") and then stalls for seconds, even loses completions. Paho C++
  // 1.2.0 does not show us the CONNACK's Receive Maximum (the properties come back empty),
  // so by default stay inside Mosquitto's default of 20.
  if (opts_.qos > 0) window_ = std::min(window_, receive_maximum_);

  std::thread live;
  if (opts_.live) live = std::thread([this] { liveLoop(); });

  // Bad input goes first, as its own phase, so a slow 10 MiB publish does not skew the rate.
  if (opts_.bad_input) {
    std::deque<SimMessage> bad;
    const Nanos t = wallNow();
    gen_.startClocks(t);  // stamped as at the start of the run
    for (auto& m : gen_.badInputs(gen_.deviceMillis(0, t))) {
      m.true_ns = t;
      bad.push_back(std::move(m));
    }
    pump([&] { return !g_signals && !bad.empty(); },
         [&] {
           auto m = std::make_shared<SimMessage>(std::move(bad.front()));
           bad.pop_front();
           std::lock_guard lk(mu_);
           ++c_.bad_sent;
           return m;
         },
         nullptr);
  }

  const Nanos start = monoNow();
  // Clock errors (--clock) count from here, as --duration does: reset:30s is 30 s after the
  // first reading.
  gen_.startClocks(wallNow());
  const Nanos end =
      opts_.duration_s > 0 ? start + static_cast<Nanos>(opts_.duration_s * 1e9) : INT64_MAX;
  std::uint64_t generated = 0;
  Pacer pacer(opts_.rate);
  const auto more = [&] {
    return !g_signals && monoNow() < end && (opts_.count == 0 || generated < opts_.count);
  };
  const auto take = [&] {
    ++generated;
    {
      std::lock_guard lk(mu_);
      ++c_.sent;
    }
    auto m = std::make_shared<SimMessage>(gen_.nextAt(wallNow()));
    if (opts_.delay) {
      const auto [lo, hi] = *opts_.delay;
      const double u = static_cast<double>(delay_rng_() >> 11) * 0x1.0p-53;
      m->delay_ns = lo + static_cast<Nanos>(std::llround(u * static_cast<double>(hi - lo)));
    }
    return m;
  };
  if (opts_.delay) {
    pumpDelayed(more, take, pacer);
  } else {
    pump(more, take, &pacer);
  }

  // Whatever is still unanswered or waiting for a retry now counts as failed.
  {
    std::lock_guard lk(mu_);
    const auto count = [&](const std::shared_ptr<SimMessage>& m) {
      ++(m->bad.empty() ? c_.failed : c_.bad_failed);
    };
    for (auto& [id, a] : pending_) count(a.msg);
    for (auto& m : retry_) count(m);
    pending_.clear();
    retry_.clear();
    done_ = true;
    cv_.notify_all();
  }
  if (live.joinable()) {
    live.join();
    fmt::print(stderr, "\n");
  }
  try {
    client_.disconnect()->wait_for(std::chrono::seconds(5));
  } catch (const mqtt::exception& e) {
    fmt::print(stderr, "gw-sim: disconnect: {}\n", e.what());
  }
  flushOut(true);
  if (out_ && std::fclose(out_) != 0) {
    fmt::print(stderr, "gw-sim: closing --out failed: {}\n", std::strerror(errno));
  }

  std::lock_guard lk(mu_);
  const Nanos stop = std::max(last_ack_, start);
  const double elapsed = static_cast<double>(stop - start) / 1e9;
  const double rate = elapsed > 0 ? static_cast<double>(c_.acked) / elapsed : 0;
  std::string line =
      fmt::format("sent={} acked={} failed={} elapsed_s={:.3f} rate={:.1f} retries={}", c_.sent,
                  c_.acked, c_.failed, elapsed, rate, c_.retries);
  if (c_.reconnects) line += fmt::format(" reconnects={}", c_.reconnects);
  if (opts_.delay) line += fmt::format(" late={}", c_.late);
  if (opts_.bad_input) {
    line += fmt::format(" bad_sent={} bad_acked={} bad_failed={}", c_.bad_sent, c_.bad_acked,
                        c_.bad_failed);
  }
  fmt::print("{}\n", line);
  std::fflush(stdout);
  if (c_.retries && !c_.failed && !c_.bad_failed) {
    fmt::print(stderr, "gw-sim: {} publish(es) retried; last error: {}\n", c_.retries, last_error_);
  }
  if (c_.failed || c_.bad_failed) {
    fmt::print(stderr, "gw-sim: {} message(s) not delivered; last error: {}\n",
               c_.failed + c_.bad_failed, last_error_.empty() ? "none" : last_error_);
    return kExitUndelivered;
  }
  return 0;
}

}  // namespace
}  // namespace gw::sim

int main(int argc, char** argv) {
  using namespace gw::sim;
  Options o;
  CLI::App app{"gw-sim: industrial sensor simulator and MQTT load generator"};
  app.add_option("--uri", o.uri, "Broker URI, e.g. tcp://127.0.0.1:1883")->required();
  app.add_option("--client-id", o.client_id, "MQTT client id (default gw-sim-<pid>)");
  app.add_option("--devices", o.gen.devices, "Number of devices")->capture_default_str();
  app.add_option("--lines", o.gen.lines, "Production lines; device d is on line{d % L + 1}")
      ->capture_default_str();
  app.add_option("--device-prefix", o.gen.device_prefix, "Device name prefix")
      ->capture_default_str();
  app.add_option("--metrics", o.metrics,
                 "Comma-separated metrics (bearing_temp, vibration, pressure, current, flow, "
                 "humidity have realistic ranges; others 0..100)")
      ->capture_default_str();
  app.add_option("--topic-template", o.gen.topic_template, "{line}, {device}, {metric}")
      ->capture_default_str();
  app.add_option("--format", o.format, "json | value | fields")
      ->check(CLI::IsMember({"json", "value", "fields"}))
      ->capture_default_str();
  app.add_flag("--no-timestamp", o.no_timestamp, "Omit ts from JSON payloads");
  app.add_option("--count", o.count, "Total messages (0 = until --duration or Ctrl-C)")
      ->capture_default_str();
  app.add_option("--duration", o.duration_s, "Stop generating after SECONDS (0 = no limit)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--rate", o.rate, "Messages per second overall (0 = as fast as possible)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--qos", o.qos, "0 or 1")->check(CLI::Range(0, 1))->capture_default_str();
  app.add_option("--seed", o.gen.seed, "Random seed (values are deterministic per seed)")
      ->capture_default_str();
  app.add_option("--odd-device", o.gen.odd_device,
                 "One extra device with an awkward name, e.g. 'pump 7,a=b'");
  app.add_option("--out", o.out,
                 "Write one JSON line per delivered reading to FILE: topic, device, line, "
                 "metric, value, ts (the device's stamp, epoch ms), true_ts (true time the "
                 "reading was taken, epoch ms with µs decimals), delay_ms (with --delay)");
  app.add_option("--mqtt-version", o.mqtt_version, "3 (3.1.1) or 5")
      ->check(CLI::IsMember({3, 5}))
      ->capture_default_str();
  app.add_flag("--live", o.live, "Print a running count to stderr every second");
  app.add_flag("--bad-input", o.bad_input,
               "Also publish one of each bad payload (not JSON, non-numeric, NaN, 10 MiB, "
               "unknown topic)");
  app.add_option("--max-inflight", o.max_inflight,
                 "Unanswered publishes allowed at once (default 100 for QoS 0, 20 for QoS 1: "
                 "keep it within the broker's Receive Maximum)")
      ->check(CLI::PositiveNumber);
  app.add_option("--connect-timeout", o.connect_timeout_s, "Seconds to keep trying to connect")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--ack-timeout", o.ack_timeout_s,
                 "Seconds before an unanswered publish is retried")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--drain-timeout", o.drain_timeout_s,
                 "Seconds to wait for outstanding acks and retries at the end")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--clock", o.clocks,
                 "Give a device a wrong clock (repeatable): DEVICE=KIND:ARG[,KIND:ARG...], "
                 "DEVICE a device name or '*' for all devices not named. KIND: "
                 "offset:+37s|-5m|+2h (device = true + offset); drift:200ppm|-50ppm (runs "
                 "fast/slow from the run start); reset:30s (30 s into the run the clock restarts "
                 "at 1970-01-01T00:00:00Z); step:+10s@20s (jumps +10 s at 20 s into the run); "
                 "none. Units ms, s, m, h. E.g. --clock pump-001=offset:+1s,drift:200ppm")
      ->allow_extra_args(false);
  std::string delay;
  app.add_option("--delay", delay,
                 "Delay each publish by a uniform random MIN-MAX (seeded) after its reading is "
                 "taken, e.g. 0-200ms; the payload keeps the reading's stamp (not for "
                 "--bad-input)");
  CLI11_PARSE(app, argc, argv);

  for (const auto& c : o.clocks) {
    std::string err;
    auto a = parseClockAssignment(c, err);
    if (!a) {
      fmt::print(stderr, "gw-sim: --clock '{}': {}\n", c, err);
      return kExitUsage;
    }
    o.gen.clocks.push_back(std::move(*a));
  }
  if (!delay.empty()) {
    std::string err;
    o.delay = parseDelayRange(delay, err);
    if (!o.delay) {
      fmt::print(stderr, "gw-sim: {}\n", err);
      return kExitUsage;
    }
  }

  if (o.client_id.empty()) o.client_id = fmt::format("gw-sim-{}", ::getpid());
  o.gen.metrics = splitCsv(o.metrics);
  o.gen.format = *parsePayloadFormat(o.format);
  o.gen.timestamp = !o.no_timestamp;
  std::optional<ReadingGenerator> gen;
  try {
    gen.emplace(o.gen);
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "gw-sim: {}\n", e.what());
    return kExitUsage;
  }

  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  try {
    Simulator sim(std::move(o), std::move(*gen));
    return sim.run();
  } catch (const mqtt::exception& e) {
    fmt::print(stderr, "gw-sim: {}\n", e.what());
    return kExitConnect;
  }
}
