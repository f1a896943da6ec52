// The sink against a scripted local HTTP server: status handling, splitting, gzip, headers.
#include "protocols/timeseries/timeseries_sink.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <deque>
#include <string>
#include <vector>

#include "test_http.h"
#include "tests/support/sink_conformance.h"

using gw::ReadingRecord;
using gw::SendStatus;
using gw::Series;
using namespace gw::timeseries;
using namespace gw::timeseries::test;

namespace {

struct Batch {
  std::deque<Series> series;  // stable addresses
  std::deque<gw::InternedSeries> interned;
  std::vector<ReadingRecord> records;

  void add(const std::string& device, double value, gw::Nanos t) {
    series.push_back(Series{device, "temp", {{"zone", "a"}}});
    ReadingRecord r;
    r.seq = records.size() + 1;
    r.series = &interned.emplace_back(series.back());
    r.value = value;
    r.event_time = t;
    records.push_back(r);
  }
  std::string expectedBody() const {
    std::string out;
    for (const ReadingRecord& r : records) appendLineProtocol(out, r);
    return out;
  }
};

Batch makeBatch(int n) {
  Batch b;
  for (int i = 0; i < n; ++i)
    b.add("pump " + std::to_string(i), 20.0 + i, 1'000'000'000LL * (i + 1));
  return b;
}

std::size_t countLines(const std::string& body) { return splitLines(body).size(); }

std::string body(const HttpRequest& req) {
  if (req.headers.count("content-encoding") == 0) return req.body;
  return gunzip(req.body).value_or("<not gzip>");  // runs on the server thread: no REQUIRE
}

TimeseriesOptions optionsFor(const TestHttpServer& server) {
  TimeseriesOptions o;
  o.url = server.url("/api/v2/write?org=o&bucket=b&precision=ns");
  o.timeout = 2 * gw::kNanosPerSecond;
  return o;
}

}  // namespace

TEST_CASE("sink: 204 is delivered; body is gzip line protocol; headers are set") {
  TestHttpServer server([](const HttpRequest&) { return HttpResponse{204, {}}; });
  TimeseriesOptions o = optionsFor(server);
  o.token = "s3cret";
  auto sink = makeTimeseriesSink(o);
  CHECK(sink->name() == "timeseries");

  const Batch b = makeBatch(3);
  const auto r = sink->send(b.records);
  CHECK(r.status == SendStatus::kDelivered);
  CHECK(r.error.empty());

  const auto reqs = server.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].method == "POST");
  CHECK(reqs[0].target == "/api/v2/write?org=o&bucket=b&precision=ns");
  CHECK(reqs[0].headers.at("content-encoding") == "gzip");
  CHECK(reqs[0].headers.at("content-type") == "text/plain; charset=utf-8");
  CHECK(reqs[0].headers.at("authorization") == "Token s3cret");
  CHECK(reqs[0].headers.count("expect") == 0);
  const auto plain = gunzip(reqs[0].body);
  REQUIRE(plain);
  CHECK(*plain ==
        "temp,device=pump\\ 0,zone=a value=20 1000000000\n"
        "temp,device=pump\\ 1,zone=a value=21 2000000000\n"
        "temp,device=pump\\ 2,zone=a value=22 3000000000\n");
}

TEST_CASE("sink: without gzip the body is plain and no token header is sent") {
  TestHttpServer server([](const HttpRequest&) { return HttpResponse{200, "ok"}; });
  TimeseriesOptions o = optionsFor(server);
  o.gzip = false;
  auto sink = makeTimeseriesSink(o);
  const Batch b = makeBatch(2);
  CHECK(sink->send(b.records).status == SendStatus::kDelivered);
  const auto reqs = server.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].headers.count("content-encoding") == 0);
  CHECK(reqs[0].headers.count("authorization") == 0);
  CHECK(reqs[0].body == b.expectedBody());
}

TEST_CASE("sink: one connection is reused across batches") {
  TestHttpServer server([](const HttpRequest&) { return HttpResponse{204, {}}; });
  auto sink = makeTimeseriesSink(optionsFor(server));
  const Batch b = makeBatch(2);
  for (int i = 0; i < 5; ++i) REQUIRE(sink->send(b.records).status == SendStatus::kDelivered);
  CHECK(server.requests().size() == 5);
  CHECK(server.connections() == 1);
}

TEST_CASE("sink: 400 is rejected with the server's message") {
  const std::string msg =
      R"({"code":"invalid","message":"unable to parse 'temp value=': missing field value"})";
  TestHttpServer server([&](const HttpRequest&) { return HttpResponse{400, msg + "\n"}; });
  auto sink = makeTimeseriesSink(optionsFor(server));
  const Batch b = makeBatch(2);
  const auto r = sink->send(b.records);
  CHECK(r.status == SendStatus::kRejected);
  CHECK(r.error == "HTTP 400: " + msg);
}

TEST_CASE("sink: a long error body is trimmed") {
  TestHttpServer server([&](const HttpRequest&) {
    return HttpResponse{422, std::string(5000, 'x')};
  });
  auto sink = makeTimeseriesSink(optionsFor(server));
  const Batch b = makeBatch(1);
  const auto r = sink->send(b.records);
  CHECK(r.status == SendStatus::kRejected);
  CHECK(r.error.rfind("HTTP 422: xxx", 0) == 0);
  CHECK(r.error.size() < 320);
}

TEST_CASE("sink: 5xx, 429 and auth/url errors are retried") {
  for (const int status : {500, 503, 429, 401, 403, 404, 408}) {
    CAPTURE(status);
    TestHttpServer server([&](const HttpRequest&) { return HttpResponse{status, "engine busy"}; });
    auto sink = makeTimeseriesSink(optionsFor(server));
    const Batch b = makeBatch(2);
    const auto r = sink->send(b.records);
    CHECK(r.status == SendStatus::kRetry);
    CHECK(r.error == "HTTP " + std::to_string(status) + ": engine busy");
  }
}

TEST_CASE("sink: a retry carries the server's Retry-After (seconds or HTTP-date)") {
  TestHttpServer server([](const HttpRequest& req) {
    if (req.target.find("date") != std::string::npos)
      return HttpResponse{503, "later", false, {"Retry-After: Wed, 21 Oct 2026 07:28:00 GMT"}};
    return HttpResponse{429, "slow down", false, {"Retry-After: 7"}};
  });
  TimeseriesOptions o = optionsFor(server);
  auto sink = makeTimeseriesSink(o);
  const Batch b = makeBatch(1);
  auto r = sink->send(b.records);
  CHECK(r.status == SendStatus::kRetry);
  CHECK(r.retry_after == 7 * gw::kNanosPerSecond);

  o.url = server.url("/write?date=1");
  o.wall_clock = [] { return 1'792'567'650 * gw::kNanosPerSecond; };  // 30 s before that date
  sink = makeTimeseriesSink(o);
  r = sink->send(b.records);
  CHECK(r.status == SendStatus::kRetry);
  CHECK(r.retry_after == 30 * gw::kNanosPerSecond);
  CHECK(r.error == "HTTP 503: later");
}

TEST_CASE("sink: connect_timeout bounds a connection that is never accepted") {
  // A listening socket with a full accept queue: Linux drops further SYNs, so a connect hangs
  // (the state a firewalled or overloaded endpoint is in) until the connect timeout.
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(listener >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(listener, 0) == 0);
  REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  std::vector<int> fillers;
  for (int i = 0; i < 8; ++i) {  // fill the queue: stop at the first connect that hangs
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    fillers.push_back(fd);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) continue;
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 200) == 0) break;
  }

  TimeseriesOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/write";
  o.timeout = 20 * gw::kNanosPerSecond;
  o.connect_timeout = 300 * gw::kNanosPerMilli;
  auto sink = makeTimeseriesSink(o);
  const Batch b = makeBatch(1);
  const gw::Nanos t0 = gw::monoNow();
  const auto r = sink->send(b.records);
  const gw::Nanos took = gw::monoNow() - t0;
  CHECK(r.status == SendStatus::kRetry);
  CHECK(r.error.find("onnect") != std::string::npos);
  CHECK(took >= 250 * gw::kNanosPerMilli);
  CHECK(took < 3 * gw::kNanosPerSecond);  // not the 20 s request timeout
  MESSAGE("after ", took / gw::kNanosPerMilli, " ms: ", r.error);
  for (const int fd : fillers) ::close(fd);
  ::close(listener);
}

TEST_CASE("sink: 413 splits the batch in halves, recursively, in order") {
  // The server takes at most two lines per request.
  TestHttpServer server([](const HttpRequest& req) {
    return HttpResponse{countLines(body(req)) > 2 ? 413 : 204, "too large"};
  });
  auto sink = makeTimeseriesSink(optionsFor(server));

  SUBCASE("four records: 4 -> 2 + 2") {
    const Batch b = makeBatch(4);
    CHECK(sink->send(b.records).status == SendStatus::kDelivered);
    const auto reqs = server.requests();
    REQUIRE(reqs.size() == 3);
    CHECK(countLines(body(reqs[0])) == 4);
    CHECK(countLines(body(reqs[1])) == 2);
    CHECK(countLines(body(reqs[2])) == 2);
    CHECK(body(reqs[1]) + body(reqs[2]) == b.expectedBody());
  }
  SUBCASE("five records: 5 -> 2 + 3 -> 2 + (1 + 2)") {
    const Batch b = makeBatch(5);
    CHECK(sink->send(b.records).status == SendStatus::kDelivered);
    const auto reqs = server.requests();
    std::vector<std::size_t> sizes;
    std::string delivered;
    for (const auto& req : reqs) {
      sizes.push_back(countLines(body(req)));
      if (sizes.back() <= 2) delivered += body(req);
    }
    CHECK(sizes == std::vector<std::size_t>{5, 2, 3, 1, 2});
    CHECK(delivered == b.expectedBody());
  }
}

TEST_CASE("sink: 413 for a single record is a rejection") {
  TestHttpServer server([](const HttpRequest&) { return HttpResponse{413, "too large"}; });
  auto sink = makeTimeseriesSink(optionsFor(server));
  const Batch b = makeBatch(1);
  const auto r = sink->send(b.records);
  CHECK(r.status == SendStatus::kRejected);
  CHECK(r.error.find("HTTP 413: too large") != std::string::npos);
}

TEST_CASE("sink: after a split, a retry in a half makes the batch a retry") {
  int calls = 0;
  TestHttpServer server([&](const HttpRequest& req) {
    ++calls;
    if (countLines(body(req)) > 2) return HttpResponse{413, {}};
    return HttpResponse{calls == 2 ? 204 : 503, "down"};
  });
  auto sink = makeTimeseriesSink(optionsFor(server));
  const Batch b = makeBatch(4);
  const auto r = sink->send(b.records);
  CHECK(r.status == SendStatus::kRetry);
  CHECK(r.error == "HTTP 503: down");
  CHECK(server.requests().size() == 3);
}

TEST_CASE("sink: connection refused is retried") {
  TimeseriesOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(closedPort()) + "/write";
  auto sink = makeTimeseriesSink(o);
  const Batch b = makeBatch(2);
  const auto r = sink->send(b.records);
  CHECK(r.status == SendStatus::kRetry);
  CHECK(!r.error.empty());
  MESSAGE("connection refused: " << r.error);
}

TEST_CASE("sink: a server that never answers is a retry after the timeout") {
  TestHttpServer server([](const HttpRequest&) { return HttpResponse{204, {}, true}; });
  TimeseriesOptions o = optionsFor(server);
  o.timeout = 200 * gw::kNanosPerMilli;
  auto sink = makeTimeseriesSink(o);
  const Batch b = makeBatch(1);
  const auto r = sink->send(b.records);
  CHECK(r.status == SendStatus::kRetry);
  CHECK(r.error.find("imed out") != std::string::npos);
}

TEST_CASE("sink: non-finite values are skipped; an all-unwritable batch is rejected unsent") {
  TestHttpServer server([](const HttpRequest&) { return HttpResponse{204, {}}; });
  auto sink = makeTimeseriesSink(optionsFor(server));

  Batch mixed;
  mixed.add("a", std::nan(""), 1);
  mixed.add("b", 2.5, 2);
  CHECK(sink->send(mixed.records).status == SendStatus::kDelivered);
  auto reqs = server.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(body(reqs[0]) == "temp,device=b,zone=a value=2.5 2\n");

  Batch bad;
  bad.add("a", std::nan(""), 1);
  bad.add("b", INFINITY, 2);
  const auto r = sink->send(bad.records);
  CHECK(r.status == SendStatus::kRejected);
  CHECK(server.requests().size() == 1);

  CHECK(sink->send({}).status == SendStatus::kDelivered);
  CHECK(server.requests().size() == 1);
}

TEST_CASE("sink: bad URLs fail at construction") {
  TimeseriesOptions o;
  o.url = "ftp://127.0.0.1/write";
  CHECK_THROWS(makeTimeseriesSink(o));
  o.url = "not a url";
  CHECK_THROWS(makeTimeseriesSink(o));
}

TEST_CASE("sink conformance: time-series sink") {
  TestHttpServer live([](const HttpRequest&) { return HttpResponse{204, {}}; });
  TestHttpServer hanging([](const HttpRequest&) { return HttpResponse{204, {}, true}; });
  gw::test::SinkConformance c;
  c.live = [&] { return makeTimeseriesSink(optionsFor(live)); };
  c.dead = [] {
    TimeseriesOptions o;
    o.url = "http://127.0.0.1:" + std::to_string(closedPort()) + "/write";
    o.timeout = 2 * gw::kNanosPerSecond;
    return makeTimeseriesSink(o);
  };
  c.blocking = [&] {
    TimeseriesOptions o = optionsFor(hanging);
    o.timeout = 60 * gw::kNanosPerSecond;
    return makeTimeseriesSink(o);
  };
  c.forwarded = 3;  // the alert goes to Kafka and the notifiers, not here
  c.arrived = [&](std::size_t n) {
    std::size_t lines = 0;
    for (const HttpRequest& req : live.requests()) lines += countLines(body(req));
    return lines == n;
  };
  gw::test::checkSinkConformance(c);
}
