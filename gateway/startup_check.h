// What start-up needs besides a config that parses, checked without disturbing a running
// pipeline: a reload runs these before it tears the old pipeline down, so a config that would
// fail to start leaves the running one untouched (issue 14: "a failed reload leaves the
// running pipeline untouched").
#pragma once

#include <boost/asio/io_context.hpp>
#include <string>
#include <vector>

#include "gateway/config.h"

namespace gw {

/// Empty when `next` can be started in place of `running`; else why not (one sentence).
///
/// - a state_dir other than the running one: its journal is opened (created or upgraded, as
///   start-up would) and closed again;
/// - every sink and notifier is built and thrown away (a library that cannot be set up, a URL
///   libcurl refuses); nothing is sent.
/// Not checked: a source's listening port (the running pipeline may hold it).
std::string checkStartup(boost::asio::io_context& io, const config::Config& next,
                         const config::Config& running);

/// What --check-config adds to parsing, without creating anything: the state_dir (or the
/// folder it would be created in) is a writable directory for the user running the check.
/// Empty when fine; else `gateway.state_dir: reason`. A folder owned by another user that this
/// user cannot write is only a `warning` (a technician checking the service user's config).
std::string checkPaths(const config::Config& cfg, std::string& warning);

/// The service user packaged units run as.
inline constexpr const char* kServiceUser = "iot-gateway";

/// Warnings (`file:line: key: …`) for every existing file the config names that `user` could
/// not read (owner, group and other bits, the user's groups, and search permission on every
/// folder above it): a check run as root passes a root-only password file that the service
/// then cannot read. None when `user` does not exist or is the user running the check.
std::vector<std::string> unreadableByUser(const config::Config& cfg, const char* user);

}  // namespace gw
