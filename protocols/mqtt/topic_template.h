// MQTT's names for the shared path templates (core/path_template.h).
#pragma once

#include "core/path_template.h"

namespace gw::mqtt {

using TopicTemplate = gw::PathTemplate;
using gw::topicMatchesFilter;

}  // namespace gw::mqtt
