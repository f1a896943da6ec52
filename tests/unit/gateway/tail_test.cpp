// gatewayctl tail's request line and answer (gateway/tail.h).
#include "gateway/tail.h"

#include <doctest/doctest.h>

using namespace gw;

TEST_CASE("tail: the request line round-trips, the device last (spaces allowed)") {
  const TailRequest r{"pump 7", 42, 5};
  const auto back = parseTailRequest(tailRequestLine(r));
  REQUIRE(back);
  CHECK(back->device == "pump 7");
  CHECK(back->after == 42);
  CHECK(back->limit == 5);
  CHECK_FALSE(parseTailRequest("status"));
  CHECK(parseTailRequest("tail x 0 pump")->device.empty());  // malformed: no device
  CHECK(parseTailRequest("tail 99999999 0 d")->limit == kTailMax);
  CHECK(parseTailRequest("tail 0 0 d")->limit == 1);
}

TEST_CASE("tail: the answer holds each reading record") {
  Series s{"pump-7", "temp", {{"line", "l3"}}};
  ReadingRecord r;
  r.seq = 9;
  const gw::InternedSeries interned(s);
  r.series = &interned;
  r.value = 21.5;
  r.event_time = 1'795'256'130'123'000'000;
  r.device_time = r.event_time - 2'000'000;
  r.reference = TimeReference::kBroker;
  const std::string j = tailJson("pump-7", 12, {r});
  CHECK(j.rfind(R"({"device":"pump-7","last_seq":12,"readings":[{"device":"pump-7")", 0) == 0);
  CHECK(j.find(R"("value":21.5)") != std::string::npos);
  CHECK(j.find(R"("time":"2026-11-21T10:15:30.123Z")") != std::string::npos);
  CHECK(j.find(R"("device_time":"2026-11-21T10:15:30.121Z")") != std::string::npos);
  CHECK(j.find(R"("reference":"broker")") != std::string::npos);
  CHECK(tailJson("x", 0, {}) == R"({"device":"x","last_seq":0,"readings":[]})");
}
