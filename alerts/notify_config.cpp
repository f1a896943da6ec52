#include "alerts/notify_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "alerts/outbox_sink.h"
#include "alerts/secret.h"
#include "core/sink.h"
#include "protocols/http/client.h"
#include "protocols/http/probe.h"

namespace gw::alerts {

PagerDutyOptions parsePagerDuty(config::Section& s, std::string_view gateway_id) {
  PagerDutyOptions p;
  p.gateway_id = std::string(gateway_id);
  p.url = s.str("url", p.url);
  std::string error;
  if (!http::parseHttpUrl(p.url, false, error)) s.fail("url", error);
  const auto file = s.path("routing_key_file");
  const std::string credential = s.str("routing_key_credential", "");
  if (s.has("routing_key"))
    s.fail("routing_key",
           "put the routing key in a file and set routing_key_file (or routing_key_credential "
           "for systemd's LoadCredential=)");
  if (!file && credential.empty())
    s.fail("routing_key_file",
           "is required (or routing_key_credential): the Events API v2 integration key");
  if (file && !credential.empty())
    s.fail("routing_key_credential", "set routing_key_file or routing_key_credential");
  const auto key = loadRoutingKey(file.value_or(std::filesystem::path()), credential,
                                  std::getenv("CREDENTIALS_DIRECTORY"));
  if (!key.ok()) s.fail(file ? "routing_key_file" : "routing_key_credential", key.error);
  p.routing_key = key.value;
  p.timeout = s.duration("timeout", kNanosPerMilli).value_or(p.timeout);
  if (auto ca = s.path("ca_file")) p.ca_file = ca->string();
  s.done();
  return p;
}

WebhookOptions parseWebhook(config::Section& s, std::string_view name) {
  WebhookOptions w;
  w.name = std::string(name);
  w.url = s.requiredStr("url");
  std::string error;
  if (!http::parseHttpUrl(w.url, true, error)) s.fail("url", error);
  if (auto headers = s.entries("headers")) {
    // RFC 9110 token characters; a line break in a value would split the request.
    const auto token = [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) ||
             std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    };
    for (auto& e : *headers) {
      if (e.key.empty() || !std::all_of(e.key.begin(), e.key.end(), token))
        s.failAt(e.line, "headers", fmt::format("invalid header name \"{}\"", e.key));
      if (e.text.find_first_of("\r\n") != std::string::npos)
        s.failAt(e.line, "headers", fmt::format("header {} contains a line break", e.key));
      w.headers.emplace_back(std::move(e.key), std::move(e.text));
    }
  }
  w.timeout = s.duration("timeout", kNanosPerMilli).value_or(w.timeout);
  if (auto ca = s.path("ca_file")) w.ca_file = ca->string();
  s.done();
  return w;
}

}  // namespace gw::alerts

namespace gw::alerts {
namespace {

/// What status shows of a notifier's URL: webhook paths often carry a token (Slack-style).
std::string safeTarget(const std::string& url, bool path_is_secret) {
  std::string error;
  auto parts = http::parseHttpUrl(url, path_is_secret, error);  // the parser checked it
  return parts ? parts->safe : std::string();
}

std::unique_ptr<SinkConfig> parsePd(config::Section& s, const ParseContext& context) {
  PagerDutyOptions o = parsePagerDuty(s, context.gateway_id);
  std::string name = "notify." + o.name, target = safeTarget(o.url, false);
  return std::make_unique<BasicSinkConfig>(
      std::move(name), std::move(target),
      [o](const BuildContext&) { return makeOutboxSink(makePagerDutyNotifier(o)); },
      [o](Nanos timeout) {
        return http::probe({o.url, o.ca_file, {}, false}, timeout);
      });
}

std::unique_ptr<SinkConfig> parseHook(config::Section& s, const ParseContext& context) {
  WebhookOptions o = parseWebhook(s, context.instance);
  std::string name = "notify." + o.name, target = safeTarget(o.url, true);
  return std::make_unique<BasicSinkConfig>(
      std::move(name), std::move(target),
      [o](const BuildContext&) { return makeOutboxSink(makeWebhookNotifier(o)); },
      [o](Nanos timeout) {
        return http::probe({o.url, o.ca_file, {}, false}, timeout);
      });
}

}  // namespace

Component pagerDutyComponent() {
  return {ComponentKind::kNotifier, "notify.pagerduty", false, nullptr, &parsePd};
}

Component webhookComponent() {
  return {ComponentKind::kNotifier, "notify.webhook", true, nullptr, &parseHook};
}

}  // namespace gw::alerts
