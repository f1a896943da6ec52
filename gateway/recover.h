// `gatewayd --config FILE --recover DAMAGED`: the readable rows of a journal moved aside as
// corrupt are appended to the live journal, so every sink forwards them when gatewayd runs.
#pragma once

#include <filesystem>

#include "gateway/config.h"

namespace gw {

/// Runs the recovery and prints what was salvaged. Returns the process exit code: 0 when it
/// ran (whatever was salvageable), 1 when it could not (the live journal in use by a running
/// gatewayd, DAMAGED unreadable or the live journal itself).
int recoverJournal(const config::Config& cfg, const std::filesystem::path& damaged);

}  // namespace gw
