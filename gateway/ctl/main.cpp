// gatewayctl: a field technician's view of a running gatewayd, over its control socket.
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "core/json.h"
#include "gateway/bad_input.h"
#include "gateway/config.h"
#include "gateway/control/control_server.h"
#include "gateway/ctl/check_cmd.h"
#include "gateway/ctl/cli_help.h"
#include "gateway/ctl/client.h"
#include "gateway/ctl/render.h"
#include "gateway/ctl/tail_cmd.h"
#include "gateway/ctl/top_cmd.h"
#include "gateway/ctl/view_cmd.h"

#ifndef GW_VERSION
#define GW_VERSION "dev"
#endif

namespace {

constexpr const char* kExitCodes = R"(Exit codes:
  0   ok
  1   something is down or needs attention: status/sinks: a source or sink is down;
      sensors: a device clock is off by more than clock.max_skew; buffer: commits failed or
      the journal is at 90% of buffer.max_size; alerts: an alert is firing or a notification
      is undelivered; bad: bad input arrived since gatewayd started; check: a connection
      test failed
  64  usage error (unknown command or option, missing argument)
  3   gatewayd is not running (no control socket, or nobody accepts on it)
  4   permission denied on the control socket (run as root or join the iot-gateway group)
  5   no valid answer (timeout, garbled answer, or gatewayd reported an error)
  78  config check: the file is invalid
)";

bool useColor(const std::string& mode) {
  if (mode == "always") return true;
  if (mode == "never") return false;
  const char* no_color = std::getenv("NO_COLOR");  // https://no-color.org
  if (no_color && *no_color) return false;
  const char* term = std::getenv("TERM");
  if (term && std::string(term) == "dumb") return false;
  return ::isatty(STDOUT_FILENO) == 1;
}

int configCheck(const std::string& file, bool json) {
  try {
    const auto cfg = gw::config::load(file);
    if (json) {
      std::string s = R"({"file":)";
      gw::json::appendString(s, file);
      std::printf("%s,\"ok\":true}\n", s.c_str());
    } else {
      std::string sources, sinks;
      for (const auto& c : cfg.sources)
        sources += fmt::format("{}{} {}", sources.empty() ? "" : ", ", c->name(), c->target());
      for (const auto& c : cfg.sinks)
        sinks += fmt::format("{}{}", sinks.empty() ? "" : ", ", c.config->name());
      std::printf("%s: ok (sources: %s; sinks: %s; metrics: %s)\n", file.c_str(), sources.c_str(),
                  sinks.empty() ? "none" : sinks.c_str(),
                  cfg.metrics ? cfg.metrics->listen.c_str() : "off");
    }
    return gw::ctl::kOk;
  } catch (const gw::config::ConfigError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return gw::ctl::kConfigInvalid;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gatewayctl: inspect a running gatewayd (iot-gateway) over its control socket"};
  app.footer(kExitCodes);
  app.require_subcommand(1);
  app.fallthrough();  // `gatewayctl status --json` as well as `gatewayctl --json status`
  std::string socket = gw::control::kDefaultSocket, color = "auto";
  bool json = false, wide = false;
  int timeout_ms = 5000;
  app.add_option("-s,--socket", socket, "control socket of gatewayd (gateway.control_socket)")
      ->capture_default_str();
  app.add_flag("-j,--json", json, "print gatewayd's JSON answer (for scripts)");
  app.add_flag("-w,--wide", wide, "do not cut lines to 80 columns");
  app.add_option("--color", color, "auto (on a TTY, unless NO_COLOR is set) | always | never")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();
  app.add_option("--timeout-ms", timeout_ms, "give up when gatewayd has not answered by then")
      ->check(CLI::Range(100, 600000))
      ->capture_default_str();
  app.set_version_flag("-V,--version", std::string("gatewayctl ") + GW_VERSION);

  struct View {
    const char* name;
    const char* help;
    gw::ctl::Rendered (*render)(std::string_view, const gw::ctl::Style&);
  };
  const View views[] = {
      {"status", "uptime, version, sources and sinks up/down, rates, journal backlog, drops",
       gw::ctl::renderStatus},
      {"sensors", "per device: last seen, message rate, clock offset/drift, flag",
       gw::ctl::renderSensors},
      {"buffer", "the journal: size, rows, caps, per-sink cursor, backlog, dropped rows",
       gw::ctl::renderBuffer},
      {"sinks", "per sink: state, target, sent, retries, backlog, delivery age, last error",
       gw::ctl::renderSinks},
      {"alerts", "alerts firing and pending, undelivered notifications", gw::ctl::renderAlerts},
  };
  for (const auto& v : views)
    app.add_subcommand(v.name, v.help)->footer(gw::ctl::examplesOf(v.name));
  // sensors: filtered, sorted and limited by gatewayd (a plant has 100,000 devices).
  std::string sensors_pattern = "*", sensors_sort = "attention";
  std::size_t sensors_limit = 100;
  auto* sensors = app.get_subcommand("sensors");
  sensors->add_option("PATTERN", sensors_pattern, "devices whose name matches this glob")
      ->capture_default_str();
  sensors->add_option("--limit", sensors_limit, "show at most this many devices (0: all)")
      ->capture_default_str();
  sensors->add_option("--sort", sensors_sort, "order of the devices")
      ->check(CLI::IsMember({"attention", "name", "last_seen", "rate", "offset"}))
      ->capture_default_str();
  auto* config = app.add_subcommand("config", "configuration commands");
  config->require_subcommand(1);
  std::string check_file;
  auto* check = config->add_subcommand(
      "check", "validate a config file as `gatewayd --check-config` does (exit 78 if bad)");
  check_file = gw::ctl::kDefaultConfig;
  check->add_option("FILE", check_file, "the config file (TOML)")->capture_default_str();
  check->footer(gw::ctl::examplesOf("config check"));
  gw::ctl::TailOptions tail_opts;
  auto* tail = app.add_subcommand(
      "tail",
      "a device's latest readings from the journal: value, event time, device time, "
      "reference");
  tail->add_option("DEVICE", tail_opts.device, "the device, as in gatewayctl sensors")->required();
  tail->add_option("-n,--lines", tail_opts.lines, "how many readings")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  tail->add_flag("-f,--follow", tail_opts.follow, "keep printing newer readings until Ctrl-C");
  tail->footer(gw::ctl::examplesOf("tail"));
  std::size_t bad_lines = 20;
  auto* bad = app.add_subcommand(
      "bad", "bad input: counts by reason and device, the newest dead letters with payload");
  bad->add_option("-n,--lines", bad_lines, "how many dead letters")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  bad->footer(gw::ctl::examplesOf("bad"));
  auto* probe = app.add_subcommand(
      "check", "gatewayd tests its connections: broker, sinks, notifiers (TCP, TLS, auth)");
  probe->footer(gw::ctl::examplesOf("check"));
  gw::ctl::TopOptions top_opts;
  auto* top = app.add_subcommand(
      "top", "a live view: rates, sources, sinks, backlog, drops, alerts (refreshed in place)");
  top->add_option("-i,--interval", top_opts.interval_s, "seconds between frames")
      ->check(CLI::Range(0.2, 3600.0))
      ->capture_default_str();
  top->add_flag("-1,--once", top_opts.once, "print one frame and exit (for scripts)");
  top->footer(gw::ctl::examplesOf("top"));
  // `gatewayctl help [COMMAND]`, as git and systemctl have it.
  std::vector<std::string> help_topic;
  auto* help = app.add_subcommand("help", "show the help of gatewayctl or of one command");
  help->add_option("COMMAND", help_topic, "a command, e.g. status or config check");
  help->footer(gw::ctl::examplesOf("help"));

  if (argc == 1) {  // no command: what there is, on stderr, as a usage error
    std::fprintf(stderr, "%s", app.help("gatewayctl").c_str());
    return gw::ctl::kUsage;
  }
  // An unknown command says so (CLI11 would only say "A subcommand is required").
  if (auto unknown = gw::ctl::unknownCommand(app, argc, argv)) {
    std::fprintf(stderr, "gatewayctl: unknown command '%s' (commands: %s; see gatewayctl help)\n",
                 unknown->c_str(), gw::ctl::commandList(app).c_str());
    return gw::ctl::kUsage;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return gw::ctl::kUsage;
  }

  if (check->parsed()) return configCheck(check_file, json);
  if (help->parsed()) return gw::ctl::printHelp(app, help_topic);
  if (tail->parsed()) {
    tail_opts.json = json;
    return gw::ctl::runTail(socket, timeout_ms, tail_opts,
                            gw::ctl::Style{useColor(color), wide ? 0u : 80u});
  }

  if (top->parsed())
    return gw::ctl::runTop(socket, timeout_ms, top_opts,
                           gw::ctl::Style{useColor(color), wide ? 0u : 80u});
  if (probe->parsed())
    return gw::ctl::runCheck(socket, timeout_ms, json,
                             gw::ctl::Style{useColor(color), wide ? 0u : 80u});
  if (bad->parsed())
    return gw::ctl::runView(socket, timeout_ms, gw::badRequestLine(bad_lines), gw::ctl::renderBad,
                            json, gw::ctl::Style{useColor(color), wide ? 0u : 80u});

  for (const auto& v : views) {
    if (!app.got_subcommand(v.name)) continue;
    std::string request = v.name;
    if (request == "sensors")
      request +=
          fmt::format(" {} --limit {} --sort {}", sensors_pattern, sensors_limit, sensors_sort);
    return gw::ctl::runView(socket, timeout_ms, request, v.render, json,
                            gw::ctl::Style{useColor(color), wide ? 0u : 80u});
  }
  return gw::ctl::kUsage;
}
