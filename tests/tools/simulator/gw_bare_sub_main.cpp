// gw-bare-sub: the cheapest Paho C++ consumer there is, as the benchmark's ceiling. The
// message callback only bumps a counter and stamps the time; everything else polls.
#include <fmt/format.h>
#include <mqtt/async_client.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <thread>

#include "core/time.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;
extern "C" void onSignal(int) { g_stop = 1; }

struct Options {
  std::string uri;
  std::string client_id;
  std::string topic = "plant1/#";
  int qos = 0;
  int mqtt_version = 5;
  std::uint64_t count = 0;
  double idle_timeout_s = 0;
  double timeout_s = 0;
  std::string ready_file;
};

}  // namespace

int main(int argc, char** argv) {
  using namespace gw;
  Options o;
  CLI::App app{"gw-bare-sub: bare Paho subscriber that only counts messages"};
  app.add_option("--uri", o.uri, "Broker URI, e.g. tcp://127.0.0.1:1883")->required();
  app.add_option("--client-id", o.client_id, "MQTT client id (default gw-bare-sub-<pid>)");
  app.add_option("--topic", o.topic, "Topic filter")->capture_default_str();
  app.add_option("--qos", o.qos, "Subscription QoS")
      ->check(CLI::Range(0, 2))
      ->capture_default_str();
  app.add_option("--mqtt-version", o.mqtt_version, "3 (3.1.1) or 5")
      ->check(CLI::IsMember({3, 5}))
      ->capture_default_str();
  app.add_option("--count", o.count, "Exit once N messages arrived (0 = no limit)")
      ->capture_default_str();
  app.add_option("--idle-timeout", o.idle_timeout_s,
                 "Exit when nothing arrives for SECONDS after the first message (0 = never)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--timeout", o.timeout_s, "Exit after SECONDS in any case (0 = never)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--ready-file", o.ready_file, "Create this file once subscribed");
  CLI11_PARSE(app, argc, argv);
  if (o.client_id.empty()) o.client_id = fmt::format("gw-bare-sub-{}", ::getpid());

  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  const int version = o.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
  std::atomic<std::uint64_t> received{0};
  std::atomic<Nanos> first{0};
  std::atomic<Nanos> last{0};
  int exit_code = 0;
  try {
    mqtt::async_client cli(o.uri, o.client_id, mqtt::create_options(version), nullptr);
    cli.set_message_callback([&](mqtt::const_message_ptr) {
      const Nanos now = monoNow();
      if (received.fetch_add(1, std::memory_order_relaxed) == 0) {
        first.store(now, std::memory_order_relaxed);
      }
      last.store(now, std::memory_order_relaxed);
    });
    mqtt::connect_options_builder b;
    b.mqtt_version(version);  // before the clean flag: 1.2.0 resets the other version's flag
    if (version == MQTTVERSION_5) {
      b.clean_start(true);
    } else {
      b.clean_session(true);
    }
    b.keep_alive_interval(std::chrono::seconds(20)).connect_timeout(std::chrono::seconds(10));
    if (!cli.connect(b.finalize())->wait_for(std::chrono::seconds(11))) {
      fmt::print(stderr, "gw-bare-sub: no CONNACK from {} within 10 s\n", o.uri);
      return 1;
    }
    if (!cli.subscribe(o.topic, o.qos)->wait_for(std::chrono::seconds(10))) {
      fmt::print(stderr, "gw-bare-sub: no SUBACK for {}\n", o.topic);
      return 1;
    }
    if (!o.ready_file.empty()) {
      std::FILE* f = std::fopen(o.ready_file.c_str(), "w");
      if (!f || std::fclose(f) != 0) {
        fmt::print(stderr, "gw-bare-sub: cannot create {}: {}\n", o.ready_file,
                   std::strerror(errno));
        return 1;
      }
    }

    bool lost = false;
    const Nanos start = monoNow();
    const auto idle = static_cast<Nanos>(o.idle_timeout_s * 1e9);
    const auto timeout = static_cast<Nanos>(o.timeout_s * 1e9);
    while (!g_stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      const auto n = received.load(std::memory_order_relaxed);
      const Nanos now = monoNow();
      if (o.count && n >= o.count) break;
      if (idle && n > 0 && now - last.load(std::memory_order_relaxed) > idle) break;
      if (timeout && now - start > timeout) break;
      if (!cli.is_connected()) {
        fmt::print(stderr, "gw-bare-sub: connection lost\n");
        lost = true;
        break;
      }
    }
    if (!lost) cli.disconnect()->wait_for(std::chrono::seconds(5));
    exit_code = lost ? 1 : 0;
  } catch (const mqtt::exception& e) {
    fmt::print(stderr, "gw-bare-sub: {}: {}\n", o.uri, e.what());
    return 1;
  }
  const auto n = received.load();
  const double span = static_cast<double>(last.load() - first.load()) / 1e9;
  fmt::print("received={} first_to_last_s={:.3f} rate={:.1f}\n", n, span,
             span > 0 ? static_cast<double>(n - 1) / span : 0.0);
  return exit_code;
}
