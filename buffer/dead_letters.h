// Dead letters (design: "Errors and bad input"): the last pieces of bad input, kept in the
// journal so that `gatewayctl bad` can show what a device really sent, also after a restart.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/time.h"

namespace gw::buffer {

/// The table keeps at most this many letters and this many bytes of text (excerpt, topic,
/// device, reason); past either cap the oldest letters are deleted with the next commit.
inline constexpr std::size_t kDeadLetterMaxRows = 1000;
inline constexpr std::size_t kDeadLetterMaxBytes = 256 * 1024;
/// The payload's first bytes kept in a letter (escaped, see escapeExcerpt).
inline constexpr std::size_t kDeadLetterExcerpt = 160;
/// Topic or path and device are cut to these many bytes.
inline constexpr std::size_t kDeadLetterMaxWhere = 200;
inline constexpr std::size_t kDeadLetterMaxDevice = 100;

struct DeadLetter {
  std::uint64_t id = 0;    ///< ascending, assigned by the journal (0 before the commit)
  Nanos time = 0;          ///< wall time the input arrived
  std::string source;      ///< "mqtt", "coap"
  std::string where;       ///< topic, path or URI
  std::string reason;      ///< "not_json", "no_template", …
  std::string device;      ///< when the topic or path template named one; else empty
  std::uint64_t size = 0;  ///< the payload's full size in bytes
  std::string excerpt;     ///< escapeExcerpt() of the payload's first bytes
};

/// The first `max_bytes` bytes of `payload` as printable ASCII: printable characters as they
/// are, `\` as `\\`, newline, tab and CR as `\n`, `\t`, `\r`, any other byte as `\xNN`; a
/// valid UTF-8 sequence of a non-ASCII character is kept as it is. A payload cut short ends in
/// "...". The result never holds a control character, so it is safe on a terminal and in a log.
std::string escapeExcerpt(std::string_view payload, std::size_t max_bytes = kDeadLetterExcerpt);

/// Bytes a letter counts against kDeadLetterMaxBytes.
std::size_t deadLetterBytes(const DeadLetter& d);

}  // namespace gw::buffer
