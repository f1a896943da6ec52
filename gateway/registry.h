// The one list of built-in sources, sinks and notifiers (conventions: "Explicit registration").
#pragma once

#include <string_view>
#include <vector>

#include "core/component.h"

namespace gw {

/// Every component this build has, in the order they are parsed and started.
std::vector<Component> builtinComponents();

/// The config tables of optional components this build left out (CMake options), so a config
/// that uses one is refused with that reason rather than as an unknown key.
struct Omitted {
  std::string_view table;   ///< "coap"
  std::string_view option;  ///< "GW_WITH_COAP"
};
std::vector<Omitted> omittedComponents();

}  // namespace gw
