// CoAP URIs, listen addresses, CoRE link format and filters; CoAP paths through the shared
// topic templates; the gateway's /.well-known/core.
#include "protocols/coap/coap_uri.h"

#include <doctest/doctest.h>

#include "protocols/coap/coap_source.h"
#include "protocols/mqtt/topic_template.h"

using namespace gw::coap;

TEST_CASE("listen addresses") {
  std::string error;
  auto a = parseHostPort("0.0.0.0:5683", 1, error);
  REQUIRE(a);
  CHECK(a->host == "0.0.0.0");
  CHECK(a->port == 5683);
  a = parseHostPort("[::1]:0", 1, error);
  REQUIRE(a);
  CHECK(a->host == "::1");
  CHECK(a->port == 0);
  a = parseHostPort("localhost", 5684, error);
  REQUIRE(a);
  CHECK(a->port == 5684);
  CHECK_FALSE(parseHostPort("::1:5683", 1, error));
  CHECK(error == "an IPv6 address goes in brackets: [::1]:PORT");
  CHECK_FALSE(parseHostPort("0.0.0.0:70000", 1, error));
  CHECK(error == "port must be 0..65535");
  CHECK_FALSE(parseHostPort(":5683", 1, error));
  CHECK_FALSE(parseHostPort("[::1", 1, error));
}

TEST_CASE("coap URIs") {
  std::string error;
  auto u = parseUri("coap://192.0.2.7/sensors/temp", error);
  REQUIRE(u);
  CHECK_FALSE(u->secure);
  CHECK(u->endpoint.host == "192.0.2.7");
  CHECK(u->endpoint.port == 5683);
  CHECK(u->path == std::vector<std::string>{"sensors", "temp"});
  CHECK(u->pathString() == "sensors/temp");
  u = parseUri("coaps://[2001:db8::1]:6000/a%20b/c?x=1&y=%26", error);
  REQUIRE(u);
  CHECK(u->secure);
  CHECK(u->endpoint.port == 6000);
  CHECK(u->path == std::vector<std::string>{"a b", "c"});
  CHECK(u->query == std::vector<std::string>{"x=1", "y=&"});
  u = parseUri("coaps://dev.local", error);
  REQUIRE(u);
  CHECK(u->endpoint.port == 5684);
  CHECK(u->path.empty());
  CHECK_FALSE(parseUri("http://x/y", error));
  CHECK(error == "expected coap://HOST[:PORT]/PATH or coaps://…");
  CHECK_FALSE(parseUri("coap://x:0/y", error));
  CHECK_FALSE(parseUri("coap://x/a%zz", error));
  CHECK_FALSE(parseUri("coap://x/a#frag", error));
}

TEST_CASE("link format (RFC 6690) and filters") {
  const auto links = parseLinkFormat(
      R"(</sensors/t1>;rt="temperature";obs,</sensors/h1>;rt="humidity temperature-ish";ct=0,)"
      R"(</sensors/t2>;rt=temperature;title="a, b; c")");
  REQUIRE(links.size() == 3);
  CHECK(links[0].target == "/sensors/t1");
  REQUIRE(links[0].attributes.size() == 2);
  CHECK(links[0].attributes[0] == std::pair<std::string, std::string>{"rt", "temperature"});
  CHECK(links[0].attributes[1].first == "obs");
  CHECK(links[2].attributes[1].second == "a, b; c");

  std::string error;
  auto rt = parseLinkFilter("rt=temperature", error);
  REQUIRE(rt);
  CHECK(matches(links[0], *rt));
  CHECK_FALSE(matches(links[1], *rt));  // "temperature-ish" is another value
  CHECK(matches(links[2], *rt));
  auto prefix = parseLinkFilter("rt=temp*", error);
  REQUIRE(prefix);
  CHECK(matches(links[1], *prefix));
  auto hum = parseLinkFilter("rt=humidity", error);
  CHECK(matches(links[1], *hum));  // any value of a space-separated list
  auto href = parseLinkFilter("href=/sensors/t*", error);
  CHECK(matches(links[0], *href));
  CHECK_FALSE(matches(links[1], *href));
  CHECK_FALSE(parseLinkFilter("temperature", error));
  CHECK_FALSE(parseLinkFilter("rt=te*mp", error));
  CHECK(parseLinkFormat("garbage").empty());
}

TEST_CASE("CoAP paths use the topic templates: segments are levels") {
  std::string error;
  auto t = gw::mqtt::TopicTemplate::parse("sensors/{line}/{device}/{metric}", error);
  REQUIRE(t);
  gw::Series s;
  CHECK(t->match("sensors/l3/pump-7/temp", s));
  CHECK(s.device == "pump-7");
  CHECK(s.metric == "temp");
  REQUIRE(s.tags.size() == 1);
  CHECK(s.tags[0] == std::pair<std::string, std::string>{"line", "l3"});
  CHECK_FALSE(t->match("sensors/l3/pump-7", s));
  CHECK_FALSE(t->match("sensors/l3//temp", s));  // an empty segment does not match
  CHECK_FALSE(t->match("other/l3/pump-7/temp", s));
  auto senml = gw::mqtt::TopicTemplate::parse("senml", error);
  REQUIRE(senml);
  CHECK(senml->match("senml", s));
  CHECK(s.device.empty());
  CHECK_FALSE(gw::mqtt::TopicTemplate::parse("sensors/+/x", error));
}

TEST_CASE("/.well-known/core lists each template with its literal prefix") {
  ResourceOptions a;
  a.path = "sensors/{device}/{metric}";
  a.payload.decoder.format = gw::payload::Format::kValue;
  ResourceOptions b;
  b.path = "plant/senml/{device}";
  b.payload.senml = true;
  ResourceOptions c;
  c.path = "{device}/data";
  c.payload.decoder.format = gw::payload::Format::kJson;
  CHECK(wellKnownCore({a, b, c}) ==
        R"(</sensors>;title="sensors/{device}/{metric}";rt="gw.reading";ct=0,)"
        R"(</plant/senml>;title="plant/senml/{device}";rt="gw.reading";ct=110,)"
        R"(</>;title="{device}/data";rt="gw.reading";ct=50)");
}
