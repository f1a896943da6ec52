// `[coap]` with its `[[coap.resource]]` and `[[coap.observe]]` tables, read in this folder.
#pragma once

#include "core/component.h"
#include "core/config/section.h"
#include "protocols/coap/coap_source.h"

namespace gw::coap {

/// Reads `[coap]`. Throws config::ConfigError.
SourceOptions parseConfig(config::Section& s);

/// The `[coap]` source for the registry.
Component component();

}  // namespace gw::coap
