#include "protocols/kafka/kafka_sink.h"

#include <doctest/doctest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/log.h"
#include "core/record_json.h"
#include "core/time.h"
#include "tests/support/net.h"
#include "tests/support/sink_conformance.h"
#include "tests/support/syscall_counter.h"

namespace {

using gw::kNanosPerMilli;
using gw::kNanosPerSecond;
using gw::Nanos;
using gw::ReadingRecord;
using gw::SendStatus;
using gw::Series;
using gw::TimeReference;

// 2026-11-21T10:15:30.123456789Z
constexpr Nanos kT0 = 1'795'256'130'123'456'789;

std::string json(const ReadingRecord& r) {
  std::string out;
  gw::appendReadingJson(out, r);
  return out;
}

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using KafkaPtr = std::unique_ptr<rd_kafka_t, KafkaDeleter>;

KafkaPtr newClient(rd_kafka_type_t type, const std::map<std::string, std::string>& props) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [k, v] : props) {
    REQUIRE_MESSAGE(
        rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) == RD_KAFKA_CONF_OK, err);
  }
  KafkaPtr rk(rd_kafka_new(type, conf, err, sizeof err));
  REQUIRE_MESSAGE(rk != nullptr, err);
  return rk;
}

/// An in-process mock Kafka cluster on loopback (librdkafka's real wire protocol server).
class MockCluster {
 public:
  explicit MockCluster(int brokers) : brokers_(brokers) {
    rk_ = newClient(RD_KAFKA_PRODUCER, {{"log_level", "0"}});
    cluster_ = rd_kafka_mock_cluster_new(rk_.get(), brokers);
    REQUIRE(cluster_ != nullptr);
  }
  ~MockCluster() { rd_kafka_mock_cluster_destroy(cluster_); }

  std::string bootstraps() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }
  void createTopic(const std::string& topic, int partitions) {
    REQUIRE(rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, 1) ==
            RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  void setUp(bool up) {
    for (int id = 1; id <= brokers_; ++id) {
      REQUIRE((up ? rd_kafka_mock_broker_set_up(cluster_, id)
                  : rd_kafka_mock_broker_set_down(cluster_, id)) == RD_KAFKA_RESP_ERR_NO_ERROR);
    }
  }

 private:
  int brokers_;
  KafkaPtr rk_;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
};

struct Consumed {
  std::string key;
  std::string value;
  std::int64_t timestamp = 0;
  std::string gateway_header;
  bool has_header = false;
  std::int32_t partition = 0;
};

/// Reads every partition of `topic` from the beginning until `want` messages arrived or the
/// deadline passed; then reads on for `extra` to catch surplus messages.
std::vector<Consumed> consumeAll(const std::string& bootstrap, const std::string& topic,
                                 int partitions, size_t want, Nanos extra = 0) {
  KafkaPtr rk = newClient(RD_KAFKA_CONSUMER, {{"bootstrap.servers", bootstrap},
                                              {"group.id", "unit-kafka"},
                                              {"enable.auto.commit", "false"},
                                              {"enable.partition.eof", "false"}});
  rd_kafka_poll_set_consumer(rk.get());
  rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(parts, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  REQUIRE(rd_kafka_assign(rk.get(), parts) == RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(parts);

  std::vector<Consumed> out;
  Nanos deadline = gw::monoNow() + 20 * kNanosPerSecond;
  bool extended = false;
  while (gw::monoNow() < deadline) {
    if (out.size() >= want && !extended) {
      extended = true;
      deadline = gw::monoNow() + extra;
    }
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 100);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      Consumed c;
      c.key.assign(static_cast<const char*>(m->key), m->key_len);
      c.value.assign(static_cast<const char*>(m->payload), m->len);
      rd_kafka_timestamp_type_t tstype;
      c.timestamp = rd_kafka_message_timestamp(m, &tstype);
      c.partition = m->partition;
      rd_kafka_headers_t* headers = nullptr;
      if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const void* v = nullptr;
        size_t size = 0;
        if (rd_kafka_header_get_last(headers, "gateway", &v, &size) == RD_KAFKA_RESP_ERR_NO_ERROR) {
          c.has_header = true;
          c.gateway_header.assign(static_cast<const char*>(v), size);
        }
      }
      out.push_back(std::move(c));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk.get());
  return out;
}

/// 50 devices × 20 readings, seq 1..1000, event times 10 ms apart.
struct Batch {
  std::deque<Series> series;
  std::deque<gw::InternedSeries> interned;  // the records' series (as the journal's)
  std::vector<ReadingRecord> records;

  explicit Batch(std::uint64_t first_seq, size_t n = 1000, size_t devices = 50) {
    for (size_t d = 0; d < devices; ++d) {
      series.push_back(Series{"pump-" + std::to_string(d), "temperature", {{"line", "3"}}});
      interned.emplace_back(series.back());
    }
    for (size_t i = 0; i < n; ++i) {
      ReadingRecord r;
      r.seq = first_seq + i;
      r.series = &interned[i % devices];
      r.value = 20.0 + static_cast<double>(i) / 8;
      r.event_time = kT0 + static_cast<Nanos>(i) * 10 * kNanosPerMilli;
      if (i % 2 == 0) {
        r.device_time = r.event_time - 1500 * kNanosPerMilli;
        r.reference = TimeReference::kBroker;
      }
      records.push_back(r);
    }
  }
};

}  // namespace

TEST_CASE("invalid librdkafka properties are config errors with librdkafka's message") {
  gw::kafka::KafkaOptions o;
  o.brokers = "127.0.0.1:1";
  o.gateway_id = "gw";

  o.properties = {{"no.such.property", "1"}};
  CHECK_THROWS_WITH_AS(gw::kafka::makeKafkaSink(o),
                       doctest::Contains("No such configuration property"),
                       gw::kafka::KafkaConfigError);
  o.properties = {{"compression.type", "brotli"}};
  CHECK_THROWS_WITH_AS(gw::kafka::makeKafkaSink(o), doctest::Contains("\"brotli\""),
                       gw::kafka::KafkaConfigError);
  // Checked by rd_kafka_new, not by conf_set: idempotence needs acks=all.
  o.properties = {{"acks", "1"}};
  CHECK_THROWS_AS(gw::kafka::makeKafkaSink(o), gw::kafka::KafkaConfigError);

  o.properties = {{"linger.ms", "20"}, {"compression.type", "zstd"}};
  auto sink = gw::kafka::makeKafkaSink(o);
  CHECK(sink->name() == "kafka");
}

TEST_CASE("round trip through a mock Kafka cluster, outage and recovery") {
  const std::string topic = "iot.readings";
  const int partitions = 4;
  MockCluster cluster(1);
  cluster.createTopic(topic, partitions);

  gw::kafka::KafkaOptions o;
  o.brokers = cluster.bootstraps();
  o.readings_topic = topic;
  o.gateway_id = "plant1-line3";
  o.delivery_timeout = 2 * kNanosPerSecond;
  // librdkafka's default (10 s) would make recovery after `up` take up to 10 s.
  o.properties = {{"reconnect.backoff.max.ms", "500"}};
  // GW_KAFKA_DEBUG=eos,msg,broker shows what librdkafka does during the outage.
  if (const char* d = std::getenv("GW_KAFKA_DEBUG")) {
    o.properties["debug"] = d;
    gw::log::setLevel(gw::log::Level::kDebug);
  }
  auto sink = gw::kafka::makeKafkaSink(o);

  Batch first(1);
  const gw::SendResult ok = sink->send(first.records);
  REQUIRE_MESSAGE(ok.status == SendStatus::kDelivered, ok.error);
  CHECK(ok.error.empty());

  std::vector<Consumed> got = consumeAll(o.brokers, topic, partitions, 1000);
  REQUIRE(got.size() == 1000);
  std::map<std::string, const ReadingRecord*> by_value;
  for (const ReadingRecord& r : first.records) by_value[json(r)] = &r;
  std::map<std::string, std::int32_t> partition_of;
  std::map<std::string, std::uint64_t> last_seq;
  size_t matched = 0;
  for (const Consumed& c : got) {
    auto it = by_value.find(c.value);
    REQUIRE_MESSAGE(it != by_value.end(), c.value);
    const ReadingRecord& r = *it->second;
    CHECK(c.key == r.series->device);
    CHECK(c.timestamp == r.event_time / kNanosPerMilli);
    CHECK(c.has_header);
    CHECK(c.gateway_header == "plant1-line3");
    // One device, one partition, in journal order.
    auto [p, fresh] = partition_of.emplace(c.key, c.partition);
    CHECK(p->second == c.partition);
    CHECK(last_seq[c.key] < r.seq);
    last_seq[c.key] = r.seq;
    by_value.erase(it);
    ++matched;
  }
  CHECK(matched == 1000);
  CHECK(partition_of.size() == 50);

  // Outage: brokers drop connections and refuse new ones.
  cluster.setUp(false);
  Batch second(1001, 100);
  const Nanos t0 = gw::monoNow();
  const gw::SendResult down = sink->send(second.records);
  const Nanos took = gw::monoNow() - t0;
  CHECK(down.status == SendStatus::kRetry);
  CHECK(down.error.find("100 of 100 records failed") != std::string::npos);
  CHECK(took >= o.delivery_timeout - 200 * kNanosPerMilli);
  // message.timeout.ms fires at the deadline; librdkafka scans for it once a second.
  CHECK(took < o.delivery_timeout + 1500 * kNanosPerMilli);
  MESSAGE("send() during the outage returned after ", took / kNanosPerMilli, " ms: ", down.error);

  // The forwarder resends until delivered; librdkafka's reconnect backoff (growing during
  // the outage) decides how soon after `up` that is.
  cluster.setUp(true);
  const Nanos up_at = gw::monoNow();
  gw::SendResult again;
  int attempts = 0;
  while (gw::monoNow() - up_at < 30 * kNanosPerSecond) {
    ++attempts;
    again = sink->send(second.records);
    if (again.status != SendStatus::kRetry) break;
    MESSAGE("resend ", attempts, ": ", again.error);
  }
  REQUIRE_MESSAGE(again.status == SendStatus::kDelivered, again.error);
  MESSAGE("delivered ", (gw::monoNow() - up_at) / kNanosPerMilli, " ms after up, attempt ",
          attempts);

  // Exactly the 1000 + 100: nothing of the failed attempt was delivered later.
  got = consumeAll(o.brokers, topic, partitions, 1100, 2 * kNanosPerSecond);
  CHECK(got.size() == 1100);
}

TEST_CASE("a record larger than message.max.bytes is rejected, not retried") {
  MockCluster cluster(1);
  cluster.createTopic("t", 1);
  gw::kafka::KafkaOptions o;
  o.brokers = cluster.bootstraps();
  o.readings_topic = "t";
  o.gateway_id = "gw";
  o.delivery_timeout = 5 * kNanosPerSecond;
  o.properties = {{"message.max.bytes", "2000"}};
  auto sink = gw::kafka::makeKafkaSink(o);

  std::deque<Series> series{Series{std::string(3000, 'x'), "m", {}}, Series{"ok", "m", {}}};
  std::vector<ReadingRecord> records(2);
  const gw::InternedSeries first(series[0]), second(series[1]);
  records[0].series = &first;
  records[1].series = &second;
  records[0].seq = 1;
  records[1].seq = 2;
  records[0].event_time = records[1].event_time = kT0;
  const gw::SendResult r = sink->send(records);
  CHECK(r.status == SendStatus::kRejected);
  CHECK(r.error.find("1 of 2 records failed") != std::string::npos);

  const std::vector<Consumed> got = consumeAll(o.brokers, "t", 1, 1, kNanosPerSecond);
  REQUIRE(got.size() == 1);
  CHECK(got[0].key == "ok");
}

TEST_CASE("interrupt() makes a send during an outage give up early") {
  MockCluster cluster(1);
  cluster.createTopic("t", 1);
  gw::kafka::KafkaOptions o;
  o.brokers = cluster.bootstraps();
  o.readings_topic = "t";
  o.gateway_id = "gw";
  o.delivery_timeout = 30 * kNanosPerSecond;
  auto sink = gw::kafka::makeKafkaSink(o);
  cluster.setUp(false);

  Batch b(1, 10, 2);
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    sink->interrupt();
  });
  const Nanos t0 = gw::monoNow();
  const gw::SendResult r = sink->send(b.records);
  stopper.join();
  CHECK(r.status == SendStatus::kRetry);
  CHECK(r.error.find("interrupted") != std::string::npos);
  CHECK(gw::monoNow() - t0 < 5 * kNanosPerSecond);
}

TEST_CASE("sink conformance: Kafka sink") {
  MockCluster cluster(1);
  gw::kafka::KafkaOptions live_options;
  live_options.brokers = cluster.bootstraps();
  for (const std::string& t :
       {live_options.readings_topic, live_options.aggregates_topic, live_options.alerts_topic})
    cluster.createTopic(t, 1);
  live_options.gateway_id = "gw";
  live_options.delivery_timeout = 10 * kNanosPerSecond;

  gw::kafka::KafkaOptions dead_options = live_options;
  dead_options.brokers = "127.0.0.1:" + std::to_string(gw::test::unusedLoopbackPort());
  dead_options.delivery_timeout = 1 * kNanosPerSecond;
  gw::kafka::KafkaOptions blocking_options = dead_options;
  blocking_options.delivery_timeout = 60 * kNanosPerSecond;

  gw::test::SinkConformance c;
  c.live = [&] { return gw::kafka::makeKafkaSink(live_options); };
  c.dead = [&] { return gw::kafka::makeKafkaSink(dead_options); };
  c.blocking = [&] { return gw::kafka::makeKafkaSink(blocking_options); };
  c.arrived = [&](std::size_t n) {
    // Two sample batches: 2 readings, 1 aggregate and 1 alert each, one topic per kind.
    const std::size_t readings =
        consumeAll(live_options.brokers, live_options.readings_topic, 1, 4).size();
    const std::size_t aggregates =
        consumeAll(live_options.brokers, live_options.aggregates_topic, 1, 2).size();
    const std::size_t alerts =
        consumeAll(live_options.brokers, live_options.alerts_topic, 1, 2).size();
    CHECK(readings == 4);
    CHECK(aggregates == 2);
    CHECK(alerts == 2);
    return readings + aggregates + alerts == n;
  };
  c.dead_bound = std::chrono::milliseconds(5000);  // delivery_timeout + report margin
  gw::test::checkSinkConformance(c);
}

TEST_CASE("send() waits for a batch's delivery reports with one futex call") {
  // The thread calling send() makes one call to produce (librdkafka's wakeup of its broker
  // thread) and one to wait for the batch's reports, and more when it meets librdkafka's
  // threads on a lock: 2.0–2.6 per batch. With rd_kafka_poll(100) as the wait 3.0–3.6: the
  // woken thread's unlock of the queue's lock, and the broker thread holding that lock.
  MockCluster cluster(1);
  cluster.createTopic("t", 1);
  gw::kafka::KafkaOptions o;
  o.brokers = cluster.bootstraps();
  o.readings_topic = "t";
  o.gateway_id = "gw";
  auto sink = gw::kafka::makeKafkaSink(o);
  Batch warm(1, 10, 2);
  REQUIRE(sink->send(warm.records).status == SendStatus::kDelivered);

  // One-record batches: no lock meetings with the broker thread while producing, whose
  // number varies; the least of 5 rounds, for other load on the machine (under load the least
  // of 3 reached 2.46 against a bound of 2.5; 2.8 stays below the poll wait's 3.0).
  constexpr int kBatches = 100;
  std::vector<Batch> batches;
  batches.reserve(5 * kBatches);
  for (int i = 0; i < 5 * kBatches; ++i) batches.emplace_back(100 + i, 1, 1);
  gw::test::SyscallCounter calls(static_cast<pid_t>(syscall(SYS_gettid)));
  if (!calls.available()) {
    MESSAGE("no raw_syscalls tracepoint to count with (not root?): not checked");
    return;
  }
  double least = 1e9;
  for (int round = 0; round < 5; ++round) {
    calls.start();
    for (int i = 0; i < kBatches; ++i) {
      const gw::SendResult r = sink->send(batches[round * kBatches + i].records);
      if (r.status != SendStatus::kDelivered) FAIL(r.error);
    }
    least = std::min(least, static_cast<double>(calls.count()) / kBatches);
  }
  MESSAGE("system calls per batch on the send() thread: ", least);
  CHECK(least <= 2.8);
}
