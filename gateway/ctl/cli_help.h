// gatewayctl's command-line conventions (issue 14): `help [COMMAND]`, examples under each
// command's --help, and a clear error for an unknown command. Usage errors exit 64 (EX_USAGE).
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

namespace gw::ctl {

/// `config check` without FILE checks this file (the packaged config).
inline constexpr const char* kDefaultConfig = "/etc/iot-gateway/gateway.toml";

/// The "Examples:" footer of a command ("status", "config check", "help"); empty if none.
std::string examplesOf(const std::string& command);

/// The first command word of the command line if it names no command of `app` (or, after a
/// command with subcommands, none of those); nullopt when the words are known or absent.
std::optional<std::string> unknownCommand(const CLI::App& app, int argc, char** argv);

/// "status, sensors, …": the commands of `app`.
std::string commandList(const CLI::App& app);

/// `gatewayctl help [COMMAND...]`: prints the help of gatewayctl or of that command; 0, or
/// 64 for an unknown command.
int printHelp(CLI::App& app, const std::vector<std::string>& topic);

}  // namespace gw::ctl
