#include "gateway/ctl/cli_help.h"

#include <cstdio>
#include <map>
#include <string_view>

#include "gateway/ctl/client.h"

namespace gw::ctl {
namespace {

// Options of gatewayctl that take a value (the next word is not a command).
bool takesValue(std::string_view opt) {
  return opt == "-s" || opt == "--socket" || opt == "--color" || opt == "--timeout-ms";
}

}  // namespace

std::string examplesOf(const std::string& command) {
  static const std::map<std::string, std::string> kExamples = {
      {"status",
       "Examples:\n"
       "  gatewayctl status                 sources, sinks, journal; exit 1 if anything is down\n"
       "  gatewayctl status --json | jq .sinks\n"
       "  watch -n 2 gatewayctl status --color always\n"},
      {"sensors",
       "Examples:\n"
       "  gatewayctl sensors                every device: last seen, rate, clock offset\n"
       "  gatewayctl sensors --wide         without cutting lines to 80 columns\n"},
      {"buffer",
       "Examples:\n"
       "  gatewayctl buffer                 journal size, caps, backlog and drops per sink\n"},
      {"sinks",
       "Examples:\n"
       "  gatewayctl sinks                  state (connecting, up, DOWN) and the cause\n"
       "  gatewayctl sinks --json | jq '.sinks[] | {name, state, last_error}'\n"},
      {"alerts",
       "Examples:\n"
       "  gatewayctl alerts                 firing and pending alerts, undelivered "
       "notifications\n"
       "                                    and the configured rules with their thresholds\n"
       "  gatewayctl alerts --json | jq '.rule_list[] | {name, above, below, no_data_for_s}'\n"},
      {"tail",
       "Examples:\n"
       "  gatewayctl tail pump-7             its 10 latest readings\n"
       "  gatewayctl tail pump-7 -n 50 -f    50, then every new one until Ctrl-C\n"
       "  gatewayctl tail pump-7 --json | jq '.readings[] | {metric, value, time}'\n"},
      {"bad",
       "Examples:\n"
       "  gatewayctl bad                    what was refused, why, and from which device\n"
       "  gatewayctl bad -n 100 --wide      the 100 newest dead letters, lines not cut\n"
       "  gatewayctl bad --json | jq '.letters[] | {time, reason, where, excerpt}'\n"},
      {"check",
       "Examples:\n"
       "  gatewayctl check                  broker, Kafka, time-series store, notifiers: ok or "
       "why\n"
       "  gatewayctl check --json | jq '.results[] | select(.state != \"ok\")'\n"},
      {"top",
       "Examples:\n"
       "  gatewayctl top                    refreshed every 2 s until Ctrl-C\n"
       "  gatewayctl top -i 5               every 5 s\n"
       "  gatewayctl top --once             one frame, e.g. for a ticket\n"},
      {"config check",
       "Examples:\n"
       "  gatewayctl config check           checks /etc/iot-gateway/gateway.toml\n"
       "  gatewayctl config check new.toml && systemctl reload iot-gateway\n"},
      {"help",
       "Examples:\n"
       "  gatewayctl help\n"
       "  gatewayctl help sinks\n"
       "  gatewayctl help config check\n"},
  };
  const auto it = kExamples.find(command);
  return it == kExamples.end() ? std::string() : it->second;
}

std::optional<std::string> unknownCommand(const CLI::App& app, int argc, char** argv) {
  const CLI::App* level = &app;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--") return std::nullopt;
    if (!a.empty() && a.front() == '-') {
      if (takesValue(a)) ++i;
      continue;
    }
    if (level->get_subcommands({}).empty()) return std::nullopt;  // an argument (FILE)
    const CLI::App* sub = nullptr;
    for (const CLI::App* s : level->get_subcommands({}))
      if (s->get_name() == a) sub = s;
    if (sub == nullptr) return std::string(a);
    if (sub->get_name() == "help") return std::nullopt;  // help checks its own words
    level = sub;
  }
  return std::nullopt;
}

std::string commandList(const CLI::App& app) {
  std::string out;
  for (const CLI::App* s : app.get_subcommands({}))
    out += (out.empty() ? "" : ", ") + s->get_name();
  return out;
}

int printHelp(CLI::App& app, const std::vector<std::string>& topic) {
  CLI::App* level = &app;
  std::string path = "gatewayctl";  // the usage line's words
  for (const std::string& word : topic) {
    CLI::App* sub = nullptr;
    for (CLI::App* s : level->get_subcommands({}))
      if (s->get_name() == word) sub = s;
    if (sub == nullptr) {
      std::fprintf(stderr, "gatewayctl: help: unknown command '%s' (commands: %s)\n", word.c_str(),
                   commandList(*level).c_str());
      return kUsage;
    }
    path += " " + word;
    level = sub;
  }
  // The formatter directly: App::help() would describe the `help` command that was parsed.
  const std::string text = app.get_formatter()->make_help(
      level, level == &app ? "gatewayctl" : path, CLI::AppFormatMode::Normal);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return kOk;
}

}  // namespace gw::ctl
