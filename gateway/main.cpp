// gatewayd: the edge gateway daemon. `--config FILE` runs in the foreground;
// `--check-config FILE` validates and exits (78 on a bad config, as EX_CONFIG).
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>

#include "buffer/journal.h"
#include "core/log.h"
#include "gateway/config.h"
#include "gateway/pipeline.h"
#include "gateway/sd_notify.h"
#include "protocols/kafka/kafka_sink.h"

#ifndef GW_VERSION
#define GW_VERSION "dev"
#endif

int main(int argc, char** argv) {
  CLI::App app{
      "gatewayd: edge gateway for industrial sensors (MQTT -> journal -> Kafka, time series)"};
  std::string config_file, check_file, level = "info";
  auto* run_opt = app.add_option("-c,--config", config_file, "run with this config file (TOML)");
  auto* check_opt =
      app.add_option("--check-config", check_file, "validate a config file and exit (78 if bad)");
  run_opt->excludes(check_opt);
  app.add_option("--log-level", level, "error | warning | notice | info | debug")
      ->check(CLI::IsMember({"error", "warning", "notice", "info", "debug"}));
  app.set_version_flag("--version", std::string("gatewayd ") + GW_VERSION);
  CLI11_PARSE(app, argc, argv);

  if (!check_file.empty()) {
    try {
      gw::config::load(check_file);
      std::printf("%s: ok\n", check_file.c_str());
      return 0;
    } catch (const gw::config::ConfigError& e) {
      std::fprintf(stderr, "%s\n", e.what());
      return gw::config::kExitConfig;
    }
  }
  if (config_file.empty()) {
    std::fprintf(stderr, "gatewayd: --config FILE or --check-config FILE is required\n%s",
                 app.help().c_str());
    return 64;  // EX_USAGE
  }

  const gw::log::Level levels[] = {gw::log::Level::kError, gw::log::Level::kWarning,
                                   gw::log::Level::kNotice, gw::log::Level::kInfo,
                                   gw::log::Level::kDebug};
  const char* names[] = {"error", "warning", "notice", "info", "debug"};
  for (int i = 0; i < 5; ++i)
    if (level == names[i]) gw::log::setLevel(levels[i]);

  gw::config::Config cfg;
  try {
    cfg = gw::config::load(config_file);
  } catch (const gw::config::ConfigError& e) {
    gw::log::error("{}", e.what());
    return gw::config::kExitConfig;
  }

  boost::asio::io_context io(1);
  std::unique_ptr<gw::Pipeline> pipeline;
  try {
    pipeline = std::make_unique<gw::Pipeline>(io, cfg);
  } catch (const gw::kafka::KafkaConfigError& e) {
    gw::log::error("{}: kafka.properties: {}", cfg.file.string(), e.what());
    return gw::config::kExitConfig;
  } catch (const std::exception& e) {
    gw::log::error("cannot start: {}", e.what());
    return 1;
  }

  // SIGUSR1: log each device's clock state (until gatewayctl reads it from the control socket).
  boost::asio::signal_set usr1(io, SIGUSR1);
  std::function<void()> on_usr1 = [&] {
    usr1.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      gw::log::notice("sensors {}", pipeline->sensorsJson());
      on_usr1();
    });
  };
  on_usr1();

  // SIGHUP: reload is a later step; until then say so (systemd's RELOADING=1/READY=1 around
  // it, so `systemctl reload` completes) instead of dying by the default action.
  boost::asio::signal_set hup(io, SIGHUP);
  std::function<void()> on_hup = [&] {
    hup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      gw::sd::reloading();
      gw::log::warn("SIGHUP: reload not supported yet, keeping the running config");
      gw::sd::ready(pipeline->statusLine());
      on_hup();
    });
  };
  on_hup();

  // STATUS= every few seconds; WATCHDOG=1 at half the interval systemd asked for, from this
  // loop, so a stuck loop stops the pings.
  constexpr auto kStatusInterval = std::chrono::seconds(5);
  boost::asio::steady_timer status_timer(io), watchdog_timer(io);
  std::function<void()> on_status = [&] {
    status_timer.expires_after(kStatusInterval);
    status_timer.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      gw::sd::status(pipeline->statusLine());
      on_status();
    });
  };
  const auto watchdog_every = gw::sd::watchdogInterval() / 2;
  std::function<void()> on_watchdog = [&] {
    gw::sd::watchdog();
    watchdog_timer.expires_after(watchdog_every);
    watchdog_timer.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) on_watchdog();
    });
  };

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    gw::sd::stopping();
    gw::log::notice("signal {}: stopping", sig);
    pipeline->stop();
    usr1.cancel();
    hup.cancel();
    status_timer.cancel();
    watchdog_timer.cancel();
    io.stop();
  });
  pipeline->start();
  // The journal is open (constructor) and the MQTT source started.
  gw::sd::ready(pipeline->statusLine());
  on_status();
  if (watchdog_every.count() > 0) on_watchdog();
  io.run();
  pipeline.reset();
  return 0;
}
