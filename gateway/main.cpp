// gatewayd: the edge gateway daemon. `--config FILE` runs in the foreground;
// `--check-config FILE` validates and exits (78 on a bad config, as EX_CONFIG).
#include <malloc.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>

#include "buffer/journal.h"
#include "core/log.h"
#include "gateway/bad_input.h"
#include "gateway/check.h"
#include "gateway/config.h"
#include "gateway/control/control_server.h"
#include "gateway/metrics/exposition.h"
#include "gateway/metrics/metrics_server.h"
#include "gateway/pipeline.h"
#include "gateway/recover.h"
#include "gateway/sd_notify.h"
#include "gateway/startup_check.h"
#include "gateway/status.h"
#include "gateway/tail.h"

#ifndef GW_VERSION
#define GW_VERSION "dev"
#endif

namespace {

/// librdkafka initialises Cyrus SASL at its first producer, once per process
/// (sasl_client_init), and Cyrus then dlopens every plugin in its plugin folder: on Debian
/// libsasldb (with Berkeley DB), digest-md5, scram, ntlm, cram-md5, login, plain, anonymous.
/// librdkafka uses Cyrus only for GSSAPI (its PLAIN, SCRAM and OAUTHBEARER are its own code),
/// so unless the config file names GSSAPI anywhere (even in a comment: when in doubt, the
/// plugins stay) or SASL_PATH is already set, Cyrus gets an empty plugin path. Issue 13:
/// ~0.6 MiB of VmHWM (the plugins' and Berkeley DB's mappings, relocations and heap) at any
/// number of series. Called before any thread exists (setenv). A reload that adds GSSAPI needs
/// a restart: librdkafka does not initialise Cyrus again.
void skipUnusedSaslPlugins(const std::string& config_file) {
  if (std::getenv("SASL_PATH") != nullptr) return;
  std::ifstream in(config_file, std::ios::binary);
  if (!in) return;  // load() read it a moment ago; keep the plugins rather than guess
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (text.find("gssapi") != std::string::npos) return;
  setenv("SASL_PATH", "", 0);
}

/// The journal was written by a newer iot-gateway (EX_DATAERR; not restarted by the unit).
constexpr int kExitNewerJournal = 65;

/// What the process owns across reloads: the running pipeline and the control and metrics
/// servers that show it. Everything runs on the one event loop.
class Daemon {
 public:
  Daemon(boost::asio::io_context& io, gw::config::Config cfg) : io_(io), cfg_(std::move(cfg)) {}

  /// Opens the control socket and the journal, starts the pipeline and the metrics server.
  /// Throws what Pipeline's constructor throws.
  void start() {
    openControl();
    pipeline_ = std::make_unique<gw::Pipeline>(io_, cfg_);
    pipeline_->start();
    openMetrics();
  }

  void stop() {
    metrics_.reset();
    control_.reset();
    if (pipeline_) pipeline_->stop();
  }

  gw::Pipeline& pipeline() { return *pipeline_; }

  /// SIGHUP: re-reads the config file. A bad file leaves everything as it is; a good one
  /// replaces the pipeline (the old one commits, acknowledges and keeps the MQTT session, so
  /// the broker holds QoS 1 messages for the new one) and moves the control socket and the
  /// metrics listener if their settings changed. Returns false when even the old config can no
  /// longer run (the daemon must exit).
  bool reload() {
    gw::sd::reloading();
    gw::log::notice("SIGHUP: reloading {}", cfg_.file.string());
    gw::config::Config next;
    try {
      next = gw::config::load(cfg_.file);
    } catch (const gw::config::ConfigError& e) {
      return reloadFailed(e.what());
    }
    for (const auto& source : next.sources)
      for (const auto& previous : cfg_.sources)
        if (previous->name() == source->name())
          if (auto warning = source->reloadWarning(*previous); !warning.empty())
            gw::log::warn("reload: {}", warning);
    // Before anything is torn down: a config that cannot start leaves this pipeline running.
    if (auto why = gw::checkStartup(io_, next, cfg_); !why.empty()) return reloadFailed(why);
    pipeline_->stop();
    pipeline_.reset();
    try {
      pipeline_ = std::make_unique<gw::Pipeline>(io_, next);
    } catch (const std::exception& e) {
      const std::string why = e.what();
      gw::log::error("reload: cannot start with the new config: {}; going back to the old one",
                     why);
      try {
        pipeline_ = std::make_unique<gw::Pipeline>(io_, cfg_);
        pipeline_->start();
      } catch (const std::exception& e2) {
        gw::log::error("reload: cannot start with the old config either: {}", e2.what());
        return false;
      }
      reloadFailed(why);
      return true;
    }
    pipeline_->start();
    const bool control_moved = next.gateway.control_socket != cfg_.gateway.control_socket;
    const bool metrics_moved = listenOf(next) != listenOf(cfg_);
    cfg_ = std::move(next);
    if (control_moved) openControl();
    if (metrics_moved) openMetrics();
    ++reloads_;
    last_reload_ = LastReload{gw::wallNow(), true, ""};
    gw::log::notice("reload: running with the new config");
    gw::sd::ready(pipeline_->statusLine());
    return true;
  }

  /// The control socket's answer to one request line: `sensors` when its devices have been
  /// walked in slices (the loop serves ingest meanwhile), the others at once.
  void control(std::string_view request, const gw::control::Reply& reply) {
    const std::string_view command = request.substr(0, request.find(' '));
    const auto view = gw::parseStatusView(command);
    if (view == gw::StatusView::kSensors) {
      gw::DeviceQuery query;
      if (auto error = gw::parseDeviceQuery(request.substr(command.size()), query))
        return reply(gw::requestErrorJson(*error));
      pipeline_->snapshot(gw::partsOf(*view), std::move(query), [reply](gw::StatusSnapshot s) {
        reply(gw::statusJson(gw::StatusView::kSensors, s));
      });
      return;
    }
    reply(control(request));
  }

  std::string control(std::string_view request) {
    if (auto tail = gw::parseTailRequest(request)) {
      if (tail->device.empty())
        return gw::unknownCommandJson("tail: expected `tail <limit> <after seq> <device>`");
      return pipeline_->tailJson(tail->device, tail->after, tail->limit);
    }
    if (auto check = gw::parseCheckRequest(request))
      return *check == 0 ? checks_.start(cfg_) : checks_.json(*check);
    if (auto bad = gw::parseBadRequest(request)) {
      if (*bad == 0) return gw::requestErrorJson("bad: expected `bad <limit>`");
      return pipeline_->badJson(*bad);
    }
    // "sensors [PATTERN] [--limit N] [--sort KEY]" (gateway/device_query.h); others: one word.
    const std::string_view command = request.substr(0, request.find(' '));
    const std::string_view args = request.substr(command.size());
    const auto view = gw::parseStatusView(command);
    if (!view || (*view != gw::StatusView::kSensors && args.find_first_not_of(' ') != args.npos))
      return gw::unknownCommandJson(request);
    gw::DeviceQuery query;
    if (auto error = gw::parseDeviceQuery(args, query)) return gw::requestErrorJson(*error);
    auto snapshot = pipeline_->snapshot(gw::partsOf(*view), query);
    if (*view == gw::StatusView::kStatus) snapshot.daemon = daemonStatus();
    return gw::statusJson(*view, snapshot);
  }

  /// The scrape's text, once the per-device series' devices have been walked in slices.
  void metricsText(const std::function<void(std::string)>& done) {
    const std::size_t limit = cfg_.metrics ? cfg_.metrics->per_device_limit : 1000;
    // limit 0 means "none" here, not "all": a DeviceQuery treats 0 as all, so ask for 0 parts.
    const gw::DeviceQuery devices{"*", limit, gw::DeviceQuery::Sort::kName};
    const auto parts = limit == 0 ? gw::metrics::kExpositionParts & ~gw::status_part::kDevices
                                  : gw::metrics::kExpositionParts;
    pipeline_->snapshot(parts, devices, [this, done](gw::StatusSnapshot snapshot) {
      snapshot.daemon = daemonStatus();
      done(gw::metrics::renderExposition(snapshot));
    });
  }

 private:
  using LastReload = gw::DaemonStatus::LastReload;

  gw::DaemonStatus daemonStatus() const {
    gw::DaemonStatus d;
    d.version = GW_VERSION;
    d.pid = ::getpid();
    d.started = start_time_;
    d.now = gw::wallNow();
    d.config_file = cfg_.file.string();
    d.reloads = reloads_;
    d.reload_failures = reload_failures_;
    if (metrics_) d.metrics = fmt::format("{}:{}", cfg_.metrics->host, metrics_->port());
    d.last_reload = last_reload_;
    return d;
  }

  static std::string listenOf(const gw::config::Config& c) {
    return c.metrics ? c.metrics->listen : "";
  }

  bool reloadFailed(const std::string& why) {
    ++reload_failures_;
    last_reload_ = LastReload{gw::wallNow(), false, why};
    gw::log::error("reload failed, keeping the running config: {}", why);
    gw::sd::ready("reload failed: " + why.substr(0, 200) + "; " + pipeline_->statusLine());
    return true;
  }

  /// A control socket that cannot be served (another live gatewayd holds it, no permission)
  /// is logged and left out: the data path runs without it. On reload the old socket stays
  /// until the new one is up.
  void openControl() {
    try {
      gw::control::ControlOptions o;
      o.path = cfg_.gateway.control_socket;
      auto next = std::make_unique<gw::control::ControlServer>(
          io_, o,
          gw::control::AsyncHandler(
              [this](std::string_view request, const gw::control::Reply& reply) {
                control(request, reply);
              }));
      control_ = std::move(next);
    } catch (const gw::control::ControlError& e) {
      gw::log::error("{}; gatewayctl cannot reach this gatewayd", e.what());
    }
  }

  /// Same policy as the control socket; the old listener closes first (the new one may want
  /// the same port on another address).
  void openMetrics() {
    metrics_.reset();
    if (!cfg_.metrics) return;
    try {
      gw::metrics::MetricsServerOptions o;
      o.host = cfg_.metrics->host;
      o.port = cfg_.metrics->port;
      metrics_ = std::make_unique<gw::metrics::MetricsServer>(
          io_, o, gw::metrics::AsyncRenderer([this](const std::function<void(std::string)>& done) {
            metricsText(done);
          }));
    } catch (const gw::metrics::MetricsError& e) {
      gw::log::error("{}; running without metrics", e.what());
    }
  }

  boost::asio::io_context& io_;
  gw::config::Config cfg_;
  std::unique_ptr<gw::Pipeline> pipeline_;
  gw::CheckRunner checks_;  // gatewayctl check
  std::unique_ptr<gw::control::ControlServer> control_;
  std::unique_ptr<gw::metrics::MetricsServer> metrics_;
  gw::Nanos start_time_ = gw::wallNow();
  std::uint64_t reloads_ = 0, reload_failures_ = 0;
  std::optional<LastReload> last_reload_;
};

}  // namespace

int main(int argc, char** argv) {
  // One malloc arena instead of glibc's default of up to 8 per core (one per thread here): every
  // thread (event loop, WAL sync, checkpointer, sinks, librdkafka) takes from the main arena, and
  // its small blocks from its own thread cache (tcache) without the lock. Each arena holds on to
  // its own free memory: with 2, the second held ~0.8 MiB, nearly all of it free, beside ~3.6 MiB
  // free in the main one at 10,000 series (malloc_info). Issue 13, scale_bench 3 × 200,000
  // readings, same session, two runs each: VmHWM at 10,000 series 31.9-32.2 -> 30.9-31.0 MiB,
  // at 100,000 within the noise, no CPU cost seen (loaded VM). Debian's jemalloc preloaded was
  // worse: 33.9 MiB at 10,000, 88.6 at 100,000 (82.5 with glibc). MALLOC_ARENA_MAX in the
  // environment still decides.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 1);
  CLI::App app{
      "gatewayd: edge gateway for industrial sensors (MQTT -> journal -> Kafka, time series)"};
  std::string config_file, check_file, level = "info";
  auto* run_opt = app.add_option("-c,--config", config_file, "run with this config file (TOML)");
  auto* check_opt =
      app.add_option("--check-config", check_file, "validate a config file and exit (78 if bad)");
  run_opt->excludes(check_opt);
  std::string recover_file;
  app.add_option("--recover", recover_file,
                 "with --config, gatewayd stopped: append the readable rows of a damaged journal "
                 "(journal.db.corrupt-...) to the live one, so the sinks forward them")
      ->needs(run_opt);
  app.add_option("--log-level", level, "error | warning | notice | info | debug")
      ->check(CLI::IsMember({"error", "warning", "notice", "info", "debug"}));
  app.set_version_flag("--version", std::string("gatewayd ") + GW_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error is EX_USAGE (64), as gatewayctl's.
    const int code = app.exit(e);
    return code == 0 ? 0 : 64;
  }

  if (!check_file.empty()) {
    try {
      const auto checked = gw::config::load(check_file);
      std::string warning;
      if (auto why = gw::checkPaths(checked, warning); !why.empty()) {
        std::fprintf(stderr, "%s: %s\n", check_file.c_str(), why.c_str());
        return gw::config::kExitConfig;
      }
      if (!warning.empty())
        std::fprintf(stderr, "%s: warning: %s\n", check_file.c_str(), warning.c_str());
      for (const auto& w : gw::unreadableByUser(checked, gw::kServiceUser))
        std::fprintf(stderr, "warning: %s\n", w.c_str());
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

  if (!recover_file.empty()) return gw::recoverJournal(cfg, recover_file);

  skipUnusedSaslPlugins(config_file);
  boost::asio::io_context io(1);
  Daemon daemon(io, cfg);
  try {
    daemon.start();
  } catch (const gw::buffer::JournalNewerError& e) {
    // Not restarted by the unit (RestartPreventExitStatus): a restart would only refuse again.
    gw::log::error("cannot start: {}", e.what());
    return kExitNewerJournal;
  } catch (const std::exception& e) {
    gw::log::error("cannot start: {}", e.what());
    return 1;
  }

  // SIGUSR1: log each device's clock state (also `gatewayctl sensors`).
  boost::asio::signal_set usr1(io, SIGUSR1);
  std::function<void()> on_usr1 = [&] {
    usr1.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      gw::log::notice("sensors {}",
                      gw::sensorsLogJson(daemon.pipeline().snapshot(gw::status_part::kDevices)));
      on_usr1();
    });
  };
  on_usr1();

  // STATUS= every few seconds; WATCHDOG=1 at half the interval systemd asked for, from this
  // loop, so a stuck loop stops the pings. The status tick also samples the counters for the
  // rates gatewayctl and the metrics show.
  constexpr auto kStatusInterval = std::chrono::seconds(5);
  boost::asio::steady_timer status_timer(io), watchdog_timer(io);
  std::function<void()> on_status = [&] {
    status_timer.expires_after(kStatusInterval);
    status_timer.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      gw::sd::status(daemon.pipeline().statusLine());
      daemon.pipeline().sampleRates();
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

  int exit_code = 0;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  boost::asio::signal_set hup(io, SIGHUP);
  auto shutdown = [&] {
    daemon.stop();
    usr1.cancel();
    hup.cancel();
    signals.cancel();
    status_timer.cancel();
    watchdog_timer.cancel();
    io.stop();
  };
  // SIGHUP: reload (systemd's RELOADING=1 … READY=1 around it, so `systemctl reload` waits).
  std::function<void()> on_hup = [&] {
    hup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      if (!daemon.reload()) {
        exit_code = 1;
        gw::sd::stopping();
        return shutdown();
      }
      on_hup();
    });
  };
  on_hup();
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    gw::sd::stopping();
    gw::log::notice("signal {}: stopping", sig);
    shutdown();
  });
  // The journal is open (constructor) and the MQTT source started.
  gw::sd::ready(daemon.pipeline().statusLine());
  daemon.pipeline().sampleRates();  // the first sample for the rates
  on_status();
  if (watchdog_every.count() > 0) on_watchdog();
  io.run();
  return exit_code;
}
