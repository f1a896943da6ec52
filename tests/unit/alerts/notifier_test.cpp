// The PagerDuty and webhook notifiers against tests/tools/pagerduty_receiver (a PagerDuty
// Events API v2 look-alike) on an ephemeral loopback port: status handling, Retry-After,
// the routing key kept out of every error text; and loading the routing key.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <simdjson.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "alerts/alert_event.h"
#include "alerts/pagerduty_notifier.h"
#include "alerts/secret.h"
#include "alerts/webhook_notifier.h"
#include "test_print.h"
#include "tests/support/net.h"

extern char** environ;

namespace fs = std::filesystem;
using namespace gw::alerts;
using gw::kNanosPerSecond;
using gw::LoadedSecret;
using gw::Nanos;
using gw::Series;

namespace {

constexpr const char* kPython = "/usr/bin/python3";
const std::string kKey = "4f1c9a7e2b8d6035e1a4c7f9b2d8e603";  // 32 characters, made up

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// A plain libcurl request for the test's own use (control and inspection endpoints).
std::string http(const std::string& method, const std::string& url, const std::string& body = {}) {
  CURL* c = curl_easy_init();
  REQUIRE(c != nullptr);
  std::string out;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  if (method == "POST") curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  const CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(c);
  REQUIRE_MESSAGE(rc == CURLE_OK, curl_easy_strerror(rc));
  REQUIRE_MESSAGE(status == 200, out);
  return out;
}

// Runs pagerduty_receiver.py on 127.0.0.1:0, reads "LISTENING <port>" from its stdout, stops
// it on destruction and prints its log unless the test called passed().
class Receiver {
 public:
  Receiver() {
    std::string templ = (fs::temp_directory_path() / "gw-pd-XXXXXX").string();
    REQUIRE(::mkdtemp(templ.data()) != nullptr);
    dir_ = templ;
    record_ = dir_ / "events.jsonl";
    log_ = dir_ / "receiver.log";
    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    std::vector<std::string> args = {kPython,    GW_PAGERDUTY_RECEIVER, "--port", "0",
                                     "--record", record_.string()};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int rc = posix_spawn(&pid_, kPython, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    REQUIRE(rc == 0);

    // Read up to the first newline, with a deadline.
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (line.find('\n') == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{out[0], POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1) break;
      char buf[64];
      const ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<size_t>(n));
    }
    ::close(out[0]);
    REQUIRE_MESSAGE(line.rfind("LISTENING ", 0) == 0, "receiver did not start: " << line);
    port_ = std::stoi(line.substr(10));
  }

  ~Receiver() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (!passed_) {
      std::ifstream in(log_);
      std::cerr << "---- pagerduty_receiver log ----\n" << in.rdbuf() << "----\n";
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string url(const std::string& path = "/v2/enqueue") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  void control(const std::string& json) { http("POST", url("/control"), json); }
  /// GET /events, kept alive in `events_json_` for the returned array.
  simdjson::dom::array events() {
    events_json_ = http("GET", url("/events"));
    simdjson::dom::array a;
    REQUIRE(!parser_.parse(events_json_).get_array().get(a));
    return a;
  }
  const fs::path& record() const { return record_; }
  void passed() { passed_ = true; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  fs::path dir_, record_, log_;
  bool passed_ = false;
  std::string events_json_;
  simdjson::dom::parser parser_;
};

AlertEvent event(AlertState state = AlertState::kFiring) {
  AlertEvent e;
  e.rule = "bearing-overheat";
  e.series = Series{"pump-7", "bearing_temp", {{"line", "3"}}};
  e.state = state;
  e.severity = Severity::kCritical;
  e.statistic = "p95";
  e.value = str(state) == "firing" ? 91.5 : 79;
  e.threshold = str(state) == "firing" ? 85 : 80;
  e.time = 1'795'436'130'123'000'000;
  e.window = 10 * kNanosPerSecond;
  e.dedup_key = dedupKey("plant1-line3", e.rule, e.series);
  return e;
}

PagerDutyOptions pdOptions(const Receiver& r, std::string key = kKey) {
  PagerDutyOptions o;
  o.url = r.url();
  o.routing_key = std::move(key);
  o.gateway_id = "plant1-line3";
  o.timeout = 5 * kNanosPerSecond;
  return o;
}

// The routing key must not leak into anything a log line or gatewayctl could show.
void checkNoKey(const DeliveryResult& r, const std::string& key = kKey) {
  CHECK_MESSAGE(r.error.find(key) == std::string::npos, r.error);
}

}  // namespace

TEST_CASE("pagerduty: 202 is delivered; trigger and resolve share the dedup_key") {
  Receiver rx;
  auto pd = makePagerDutyNotifier(pdOptions(rx));
  CHECK(pd->name() == "pagerduty");
  const DeliveryResult t = pd->deliver(event(AlertState::kFiring));
  CHECK_MESSAGE(str(t.status) == "delivered", t.error);
  const DeliveryResult r = pd->deliver(event(AlertState::kResolved));
  CHECK_MESSAGE(str(r.status) == "delivered", r.error);

  auto events = rx.events();
  REQUIRE(events.size() == 2);
  std::vector<std::string> actions, keys;
  for (simdjson::dom::element e : events) {
    CHECK(int64_t(e["status"]) == 202);
    CHECK(std::string_view(e["path"]) == "/v2/enqueue");
    CHECK(std::string_view(e["headers"]["content-type"]) == "application/json");
    CHECK(std::string_view(e["headers"]["user-agent"]).substr(0, 12) == "iot-gateway/");
    actions.emplace_back(std::string_view(e["body"]["event_action"]));
    keys.emplace_back(std::string_view(e["body"]["dedup_key"]));
    CHECK(std::string_view(e["body"]["routing_key"]) == kKey);
  }
  CHECK(actions == std::vector<std::string>{"trigger", "resolve"});
  CHECK(keys[0] == keys[1]);
  CHECK(keys[0] == event().dedup_key);
  // The record file has the same two lines.
  std::ifstream in(rx.record());
  int lines = 0;
  for (std::string l; std::getline(in, l);) ++lines;
  CHECK(lines == 2);
  rx.passed();
}

TEST_CASE("pagerduty: a long summary and a long dedup key are still a valid event") {
  Receiver rx;
  auto pd = makePagerDutyNotifier(pdOptions(rx));
  AlertEvent e = event();
  e.series.device = std::string(3000, 'd');
  e.dedup_key = dedupKey("plant1-line3", e.rule, e.series);
  for (Severity s : {Severity::kCritical, Severity::kError, Severity::kWarning, Severity::kInfo}) {
    e.severity = s;
    const DeliveryResult r = pd->deliver(e);
    CHECK_MESSAGE(str(r.status) == "delivered", r.error);
  }
  rx.passed();
}

TEST_CASE("pagerduty: 400 invalid event is permanent, with PagerDuty's message, no key") {
  Receiver rx;
  const std::string short_key = kKey.substr(0, 31);
  auto pd = makePagerDutyNotifier(pdOptions(rx, short_key));
  const DeliveryResult r = pd->deliver(event());
  CHECK(str(r.status) == "permanent");
  CHECK_MESSAGE(r.error.find("HTTP 400: Event object is invalid: Length of 'routing_key' is "
                             "incorrect (should be 32 characters)") != std::string::npos,
                r.error);
  CHECK(r.error.find("PagerDuty refused the event") == 0);
  checkNoKey(r, short_key);
  CHECK_FALSE(r.retry_after);
  rx.passed();
}

TEST_CASE("pagerduty: 500 and 503 are retried; the next request succeeds") {
  Receiver rx;
  auto pd = makePagerDutyNotifier(pdOptions(rx));
  rx.control(R"({"mode":"500","count":1})");
  DeliveryResult r = pd->deliver(event());
  CHECK(str(r.status) == "retry");
  CHECK(r.error.find("HTTP 500: Internal Server Error") != std::string::npos);
  CHECK_FALSE(r.retry_after);
  checkNoKey(r);
  rx.control(R"({"mode":"503","count":1,"retry_after":3})");
  r = pd->deliver(event());
  CHECK(str(r.status) == "retry");
  CHECK(r.retry_after == 3 * kNanosPerSecond);
  checkNoKey(r);
  r = pd->deliver(event());
  CHECK_MESSAGE(str(r.status) == "delivered", r.error);
  rx.passed();
}

TEST_CASE("pagerduty: 429 with Retry-After: 7 is retried after at least 7 s") {
  Receiver rx;
  auto pd = makePagerDutyNotifier(pdOptions(rx));
  rx.control(R"({"mode":"429","retry_after":7})");
  const DeliveryResult r = pd->deliver(event());
  CHECK(str(r.status) == "retry");
  REQUIRE(r.retry_after);
  CHECK(*r.retry_after >= 7 * kNanosPerSecond);
  CHECK(*r.retry_after == 7 * kNanosPerSecond);
  CHECK(r.error.find("HTTP 429") != std::string::npos);
  CHECK(r.error.find("retry after 7s") != std::string::npos);
  checkNoKey(r);
  rx.passed();
}

TEST_CASE("pagerduty: Retry-After as an HTTP date, against the injected clock") {
  Receiver rx;
  PagerDutyOptions o = pdOptions(rx);
  o.wall_clock = [] { return Nanos{1'792'567'650} * kNanosPerSecond; };  // 30 s before
  auto pd = makePagerDutyNotifier(o);
  rx.control(R"({"mode":"429","retry_after":"Wed, 21 Oct 2026 07:28:00 GMT"})");
  const DeliveryResult r = pd->deliver(event());
  CHECK(str(r.status) == "retry");
  CHECK(r.retry_after == 30 * kNanosPerSecond);
  rx.passed();
}

TEST_CASE("pagerduty: connection refused and timeouts are retried") {
  PagerDutyOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(gw::test::unusedLoopbackPort()) + "/v2/enqueue";
  o.routing_key = kKey;
  auto pd = makePagerDutyNotifier(o);
  DeliveryResult r = pd->deliver(event());
  CHECK(str(r.status) == "retry");
  CHECK_MESSAGE(r.error.find("http://127.0.0.1:") == 0, r.error);
  checkNoKey(r);

  Receiver rx;
  o = pdOptions(rx);
  o.timeout = 300 * gw::kNanosPerMilli;
  pd = makePagerDutyNotifier(o);
  rx.control(R"({"mode":"ok","delay":3})");
  r = pd->deliver(event());
  CHECK(str(r.status) == "retry");
  CHECK_MESSAGE(r.error.find("timed out") != std::string::npos, r.error);
  checkNoKey(r);
  rx.passed();
}

TEST_CASE("pagerduty: interrupt makes deliveries give up at once") {
  Receiver rx;
  auto pd = makePagerDutyNotifier(pdOptions(rx));
  pd->interrupt();
  const DeliveryResult r = pd->deliver(event());
  CHECK(str(r.status) == "retry");
  CHECK(r.error.find("interrupted") != std::string::npos);
  CHECK(rx.events().size() == 0);
  rx.passed();
}

TEST_CASE("pagerduty: start-up errors") {
  PagerDutyOptions o;
  o.routing_key = kKey;
  o.url = "ftp://example.invalid/";
  CHECK_THROWS_WITH(makePagerDutyNotifier(o), "pagerduty: url must be http:// or https://");
  o.url = std::string(kPagerDutyUrl);
  o.routing_key.clear();
  CHECK_THROWS_WITH(makePagerDutyNotifier(o), "pagerduty: the routing key is empty");
}

TEST_CASE("webhook: the alert record with the configured headers; same status rules") {
  Receiver rx;
  WebhookOptions o;
  o.name = "ops";
  o.url = rx.url("/hooks/T0KEN-in-the-path-12345");
  o.headers = {{"X-Api-Key", "header-secret-value"}, {"X-Source", "gw"}};
  auto hook = makeWebhookNotifier(o);
  CHECK(hook->name() == "ops");
  DeliveryResult r = hook->deliver(event());
  CHECK_MESSAGE(str(r.status) == "delivered", r.error);
  {
    auto events = rx.events();
    REQUIRE(events.size() == 1);
    simdjson::dom::element e = events.at(0);
    CHECK(std::string_view(e["path"]) == "/hooks/T0KEN-in-the-path-12345");
    CHECK(std::string_view(e["headers"]["x-api-key"]) == "header-secret-value");
    CHECK(std::string_view(e["headers"]["x-source"]) == "gw");
    CHECK(std::string_view(e["headers"]["content-type"]) == "application/json");
    // The body is the Kafka alert record, field for field.
    simdjson::dom::parser p;
    simdjson::dom::element expected = p.parse(alertJson(event()));
    CHECK(simdjson::to_string(e["body"]) == simdjson::to_string(expected));
  }

  rx.control(R"({"mode":"503","retry_after":2})");
  r = hook->deliver(event());
  CHECK(str(r.status) == "retry");
  CHECK(r.retry_after == 2 * kNanosPerSecond);
  // Neither the URL path nor header values appear in errors.
  CHECK_MESSAGE(r.error.find("T0KEN") == std::string::npos, r.error);
  CHECK(r.error.find("header-secret-value") == std::string::npos);
  CHECK(r.error.find("http://127.0.0.1:") == 0);

  rx.control(R"({"mode":"400"})");
  r = hook->deliver(event());
  CHECK(str(r.status) == "permanent");
  CHECK(r.error.find("HTTP 400") != std::string::npos);
  rx.passed();
}

TEST_CASE("webhook: invalid headers and URLs are start-up errors") {
  WebhookOptions o;
  o.name = "ops";
  o.url = "http://127.0.0.1:9/x";
  o.headers = {{"Bad Name", "v"}};
  CHECK_THROWS_WITH(makeWebhookNotifier(o), "webhook ops: invalid header name \"Bad Name\"");
  o.headers = {{"X-Ok", "line\r\nInjected: 1"}};
  CHECK_THROWS_WITH(makeWebhookNotifier(o), "webhook ops: header X-Ok contains a line break");
  o.headers.clear();
  o.url = "not a url";
  CHECK_THROWS(makeWebhookNotifier(o));
}

TEST_CASE("routing key: file, credential, and clear errors that never show the key") {
  std::string templ = (fs::temp_directory_path() / "gw-key-XXXXXX").string();
  REQUIRE(::mkdtemp(templ.data()) != nullptr);
  const fs::path dir = templ;
  auto write = [&](const fs::path& p, const std::string& content, mode_t mode) {
    std::ofstream(p) << content;
    ::chmod(p.c_str(), mode);
  };

  SUBCASE("missing file") {
    const LoadedSecret s = loadRoutingKey(dir / "pagerduty.key", "", nullptr);
    CHECK_FALSE(s.ok());
    CHECK(s.error ==
          "cannot read " + (dir / "pagerduty.key").string() + ": No such file or directory");
    CHECK(s.value.empty());
  }
  SUBCASE("a good file, trailing newline trimmed") {
    write(dir / "pagerduty.key", kKey + "\n", 0600);
    const LoadedSecret s = loadRoutingKey(dir / "pagerduty.key", "", nullptr);
    CHECK(s.ok());
    CHECK(s.value == kKey);
    CHECK(s.warning.empty());
  }
  SUBCASE("readable by others: usable, with a warning") {
    write(dir / "pagerduty.key", kKey, 0644);
    const LoadedSecret s = loadRoutingKey(dir / "pagerduty.key", "", nullptr);
    CHECK(s.ok());
    CHECK(s.warning.find("readable by every user (mode 0644)") != std::string::npos);
  }
  SUBCASE("wrong length or spaces: the error does not quote the key") {
    write(dir / "pagerduty.key", "not-a-routing-key-really\n", 0600);
    LoadedSecret s = loadRoutingKey(dir / "pagerduty.key", "", nullptr);
    CHECK_FALSE(s.ok());
    CHECK(s.error.find("has 24 characters; a PagerDuty Events API v2 integration key has 32") !=
          std::string::npos);
    CHECK(s.error.find("not-a-routing") == std::string::npos);
    CHECK(s.value.empty());
    write(dir / "pagerduty.key", kKey.substr(0, 16) + " " + kKey.substr(17), 0600);
    s = loadRoutingKey(dir / "pagerduty.key", "", nullptr);
    CHECK(s.error.find("contains spaces") != std::string::npos);
    write(dir / "pagerduty.key", "\n", 0600);
    s = loadRoutingKey(dir / "pagerduty.key", "", nullptr);
    CHECK(s.error.find("is empty") != std::string::npos);
  }
  SUBCASE("systemd credential") {
    write(dir / "pagerduty", kKey, 0400);
    LoadedSecret s = loadRoutingKey({}, "pagerduty", dir.c_str());
    CHECK(s.ok());
    CHECK(s.value == kKey);
    s = loadRoutingKey({}, "pagerduty", nullptr);
    CHECK(s.error ==
          "credential \"pagerduty\" needs systemd's LoadCredential= (CREDENTIALS_DIRECTORY is "
          "not set)");
    s = loadRoutingKey({}, "../etc/passwd", dir.c_str());
    CHECK(s.error.find("is not a credential name") != std::string::npos);
  }
  SUBCASE("exactly one source") {
    CHECK(loadRoutingKey({}, "", nullptr).error ==
          "set exactly one of routing_key_file and routing_key_credential");
    CHECK(loadRoutingKey(dir / "k", "pd", nullptr).error ==
          "set exactly one of routing_key_file and routing_key_credential");
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}
