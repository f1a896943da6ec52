#include "protocols/coap/coap_config.h"

#include <fmt/format.h>

#include "core/path_template.h"
#include "protocols/payload/payload_config.h"

namespace gw::coap {
namespace {

using config::Section;

void readPayload(Section& s, PayloadOptions& p, bool& single_value) {
  const std::string format = s.str("format", "value");
  p.senml = format == "senml";
  if (!p.senml) {
    auto f = payload::parseFormat(format);
    if (!f) s.fail("format", fmt::format("'{}' is not value, json, fields or senml", format));
    p.decoder.format = *f;
  }
  single_value = !p.senml && p.decoder.format != payload::Format::kFields;
  payload::readDecoderFields(s, p.decoder);
  if (!p.decoder.timestamp_field.empty() &&
      (p.senml || p.decoder.format == payload::Format::kValue))
    s.fail("timestamp",
           p.senml ? "SenML records carry their own time (bt/t)"
                   : "format value has no fields; a device timestamp needs json or fields");
}

std::string readPskKey(Section& s) {
  if (s.has("psk_key")) s.fail("psk_key", "put the key in a file and set psk_key_file");
  auto key = s.secretFile("psk_key_file");
  if (!key) return "";
  if (key->empty()) s.fail("psk_key_file", "the key file is empty");
  return *key;
}

void readResource(Section& s, ResourceOptions& r) {
  r.path = s.requiredStr("path");
  while (!r.path.empty() && r.path.front() == '/') r.path.erase(0, 1);
  if (r.path.empty()) s.fail("path", "must name a path below the root");
  bool single_value = false;
  readPayload(s, r.payload, single_value);
  std::string error;
  auto tmpl = PathTemplate::parse(r.path, error);
  if (!tmpl) s.fail("path", error);
  if (!tmpl->capturesDevice() && !r.payload.senml)
    s.fail("path",
           "must capture {device} (e.g. \"sensors/{device}/{metric}\"); only format senml "
           "can take the device from the payload's base name");
  if (single_value && !tmpl->capturesMetric())
    s.fail("path",
           "must capture {metric} for format value or json (fields and senml name metrics "
           "from the payload)");
  s.done();
}

void readObserve(Section& s, ObserveOptions& o) {
  const auto uri = s.str("uri");
  const auto discover = s.str("discover");
  if (uri && discover) s.fail("discover", "set uri or discover, not both");
  if (!uri && !discover)
    s.fail("uri",
           "one of uri (a resource to observe) or discover (a device to search) is required");
  const std::string key = uri ? "uri" : "discover";
  const std::string text = uri ? *uri : *discover;
  std::string error;
  auto parsed = parseUri(text, error);
  if (!parsed) s.fail(key, error);
  if (uri && parsed->path.empty()) s.fail("uri", "must name a resource (coap://HOST[:PORT]/PATH)");
  if (discover && (!parsed->path.empty() || !parsed->query.empty()))
    s.fail("discover",
           "names a device (coap://HOST[:PORT]); its /.well-known/core is read, filtered by "
           "filter");
  (uri ? o.uri : o.discover) = text;
  o.filter = s.str("filter", "");
  if (!o.filter.empty()) {
    if (uri) s.fail("filter", "only for discover");
    if (!parseLinkFilter(o.filter, error)) s.fail("filter", error);
  }
  o.path_template = s.str("template", "");
  bool template_device = false;
  if (!o.path_template.empty()) {
    if (uri) s.fail("template", "only for discover (uri names device and metric)");
    while (!o.path_template.empty() && o.path_template.front() == '/') o.path_template.erase(0, 1);
    auto tmpl = PathTemplate::parse(o.path_template, error);
    if (!tmpl) s.fail("template", error);
    template_device = tmpl->capturesDevice();
  }
  o.device = s.str("device", "");
  o.metric = s.str("metric", "");
  bool single_value = false;
  readPayload(s, o.payload, single_value);
  if (o.device.empty() && !template_device && !o.payload.senml)
    s.fail("device", "is required (the device this resource belongs to)");
  if (uri && single_value && o.metric.empty())
    s.fail("metric", "is required for format value or json");
  o.reregister_after =
      s.duration("reregister_after", 100 * kNanosPerMilli).value_or(o.reregister_after);
  o.retry_min = s.duration("retry_min", kNanosPerMilli).value_or(o.retry_min);
  o.retry_max = s.duration("retry_max", kNanosPerMilli).value_or(o.retry_max);
  if (o.retry_max < o.retry_min) s.fail("retry_max", "must not be below retry_min");
  if (auto r = s.duration("rediscover", kNanosPerSecond)) {
    if (uri) s.fail("rediscover", "only for discover");
    o.rediscover = *r;
  }
  o.psk.identity = s.str("psk_identity", "");
  o.psk.key = readPskKey(s);
  if (parsed->secure) {
    if (!dtlsSupported())
      s.fail(key, "coaps:// needs DTLS, which this libcoap build does not support");
    if (o.psk.key.empty() || o.psk.identity.empty())
      s.fail(key, "coaps:// needs psk_identity and psk_key_file");
  } else if (o.psk.enabled() || !o.psk.identity.empty()) {
    s.fail(o.psk.enabled() ? "psk_key_file" : "psk_identity",
           "a pre-shared key is only used with coaps://");
  }
  s.done();
}

}  // namespace

SourceOptions parseConfig(Section& s) {
  SourceOptions o;
  std::string error;
  for (auto& sub : s.tables("resource")) {
    ResourceOptions r;
    readResource(sub, r);
    o.resources.push_back(std::move(r));
  }
  for (auto& sub : s.tables("observe")) {
    ObserveOptions ob;
    readObserve(sub, ob);
    o.observe.push_back(std::move(ob));
  }
  if (auto listen = s.str("listen")) {
    auto hp = parseHostPort(*listen, kDefaultPort, error);
    if (!hp) s.fail("listen", error);
    if (o.resources.empty())
      s.fail("listen", "nothing to serve: add a [[coap.resource]] (or remove listen)");
    o.listen_at = *hp;
  }
  o.listen = !o.resources.empty();
  if (auto listen = s.str("dtls_listen")) {
    auto hp = parseHostPort(*listen, kDefaultSecurePort, error);
    if (!hp) s.fail("dtls_listen", error);
    if (o.resources.empty()) s.fail("dtls_listen", "nothing to serve: add a [[coap.resource]]");
    if (!dtlsSupported()) s.fail("dtls_listen", "this libcoap build does not support DTLS");
    o.dtls_listen = true;
    o.dtls_listen_at = *hp;
  }
  o.server_psk.identity = s.str("psk_hint", "");
  o.server_psk.key = readPskKey(s);
  if (o.dtls_listen && !o.server_psk.enabled())
    s.fail("dtls_listen", "needs psk_key_file (the pre-shared key devices use)");
  if (!o.dtls_listen && (o.server_psk.enabled() || !o.server_psk.identity.empty()))
    s.fail(o.server_psk.enabled() ? "psk_key_file" : "psk_hint",
           "a pre-shared key is only used with dtls_listen");
  if (o.resources.empty() && o.observe.empty())
    s.fail("resource", "[coap] needs at least one [[coap.resource]] or [[coap.observe]]");
  s.done();
  return o;
}

}  // namespace gw::coap
