// The payload keys every source's table shares (`[[mqtt.subscribe]]`, `[[coap.resource]]`,
// `[[coap.observe]]`): value, timestamp, timestamp_unit, max_payload.
#pragma once

#include "core/config/section.h"
#include "protocols/payload/decoder.h"

namespace gw::payload {

/// Reads value, timestamp, timestamp_unit and max_payload into `d` (the format is the caller's).
void readDecoderFields(config::Section& s, DecoderOptions& d);

}  // namespace gw::payload
