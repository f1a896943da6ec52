// The one list of built-in sources, sinks and notifiers (conventions: "Explicit registration").
#pragma once

#include <vector>

#include "core/component.h"

namespace gw {

/// Every component this build has, in the order they are parsed and started.
std::vector<Component> builtinComponents();

}  // namespace gw
