// kafka_broker: a Kafka test broker for integration tests, built on librdkafka's mock cluster
// (a real Kafka wire-protocol server on loopback, ephemeral ports).
//
//   kafka_broker [--brokers N] [--partitions P] [--topics a,b,c]
//
// Prints one line `BOOTSTRAP=host:port[,host:port...]` on stdout once the cluster listens,
// then reads commands on stdin, one per line, and answers each with `OK <command>` (or
// `ERR <command>: <why>`):
//   down [ID]  broker ID (default: all) drops its connections and refuses new ones
//   up [ID]    broker ID (default: all) accepts connections again, on the same port
//   quit       exit
// Exits 0 on `quit`, end of stdin, SIGTERM or SIGINT; 2 on bad arguments; 1 on failure.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Args {
  int brokers = 1;
  int partitions = 1;
  std::vector<std::string> topics;
};

std::optional<int> parsePositive(std::string_view s) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 1) return std::nullopt;
  return v;
}

std::vector<std::string> splitList(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    const size_t comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

void usage() {
  std::fprintf(stderr,
               "usage: kafka_broker [--brokers N] [--partitions P] [--topics a,b,c]\n"
               "stdin commands: down [ID] | up [ID] | quit\n");
}

std::optional<Args> parseArgs(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string_view opt = argv[i];
    if (opt == "-h" || opt == "--help") return std::nullopt;
    if (i + 1 >= argc) {
      std::fprintf(stderr, "kafka_broker: %s needs a value\n", argv[i]);
      return std::nullopt;
    }
    const std::string_view val = argv[++i];
    if (opt == "--brokers" || opt == "--partitions") {
      const auto n = parsePositive(val);
      if (!n) {
        std::fprintf(stderr, "kafka_broker: %s: expected a positive integer, got '%s'\n",
                     argv[i - 1], argv[i]);
        return std::nullopt;
      }
      (opt == "--brokers" ? args.brokers : args.partitions) = *n;
    } else if (opt == "--topics") {
      args.topics = splitList(val);
    } else {
      std::fprintf(stderr, "kafka_broker: unknown option %s\n", argv[i - 1]);
      return std::nullopt;
    }
  }
  return args;
}

void logToStderr(const rd_kafka_t*, int level, const char* fac, const char* buf) {
  // The cluster's own client has no bootstrap.servers, and says so; that is expected.
  if (std::strcmp(fac, "CONFWARN") == 0) return;
  std::fprintf(stderr, "kafka_broker: %d %s: %s\n", level, fac, buf);
}

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct ClusterDeleter {
  void operator()(rd_kafka_mock_cluster_t* c) const { rd_kafka_mock_cluster_destroy(c); }
};

class Broker {
 public:
  Broker(rd_kafka_mock_cluster_t* cluster, int brokers) : cluster_(cluster), brokers_(brokers) {}

  /// Executes one command line; returns false on `quit`.
  bool execute(std::string_view line) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    if (line.empty()) return true;
    const size_t space = line.find(' ');
    const std::string_view cmd = line.substr(0, space);
    std::string_view arg;
    if (space != std::string_view::npos) arg = line.substr(space + 1);

    if (cmd == "quit" && arg.empty()) {
      reply("OK", line);
      return false;
    }
    if (cmd == "down" || cmd == "up") {
      std::string err = setUp(cmd == "up", arg);
      if (err.empty()) {
        reply("OK", line);
      } else {
        reply("ERR", line, err);
      }
      return true;
    }
    reply("ERR", line, "unknown command (down [ID] | up [ID] | quit)");
    return true;
  }

 private:
  std::string setUp(bool up, std::string_view arg) {
    int first = 1;
    int last = brokers_;
    if (!arg.empty()) {
      const auto id = parsePositive(arg);
      if (!id || *id > brokers_) return "no such broker id";
      first = last = *id;
    }
    for (int id = first; id <= last; ++id) {
      const rd_kafka_resp_err_t err = up ? rd_kafka_mock_broker_set_up(cluster_, id)
                                         : rd_kafka_mock_broker_set_down(cluster_, id);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return rd_kafka_err2str(err);
    }
    return {};
  }

  static void reply(const char* status, std::string_view line, std::string_view why = {}) {
    if (why.empty()) {
      std::printf("%s %.*s\n", status, static_cast<int>(line.size()), line.data());
    } else {
      std::printf("%s %.*s: %.*s\n", status, static_cast<int>(line.size()), line.data(),
                  static_cast<int>(why.size()), why.data());
    }
    std::fflush(stdout);
  }

  rd_kafka_mock_cluster_t* cluster_;
  int brokers_;
};

}  // namespace

int main(int argc, char** argv) {
  const auto args = parseArgs(argc, argv);
  if (!args) {
    usage();
    return 2;
  }

  // Block the stop signals before librdkafka starts its threads (they inherit the mask), and
  // take them through a signalfd next to stdin.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  const int sig_fd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
  if (sig_fd < 0) {
    std::perror("kafka_broker: signalfd");
    return 1;
  }

  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, logToStderr);
  std::unique_ptr<rd_kafka_t, KafkaDeleter> rk(
      rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr));
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    std::fprintf(stderr, "kafka_broker: %s\n", errstr);
    return 1;
  }
  std::unique_ptr<rd_kafka_mock_cluster_t, ClusterDeleter> cluster(
      rd_kafka_mock_cluster_new(rk.get(), args->brokers));
  if (!cluster) {
    std::fprintf(stderr, "kafka_broker: cannot create the mock cluster\n");
    return 1;
  }
  for (const std::string& topic : args->topics) {
    const rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
        cluster.get(), topic.c_str(), args->partitions, std::min(args->brokers, 3));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::fprintf(stderr, "kafka_broker: topic %s: %s\n", topic.c_str(), rd_kafka_err2str(err));
      return 1;
    }
  }

  std::printf("BOOTSTRAP=%s\n", rd_kafka_mock_cluster_bootstraps(cluster.get()));
  std::fflush(stdout);

  Broker broker(cluster.get(), args->brokers);
  std::string pending;
  bool running = true;
  while (running) {
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {sig_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      std::perror("kafka_broker: poll");
      return 1;
    }
    if (fds[1].revents & POLLIN) break;  // SIGTERM / SIGINT: a normal stop
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[4096];
      const ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {  // end of stdin: the test that started us is gone
        if (!pending.empty()) broker.execute(pending);
        break;
      }
      pending.append(buf, static_cast<size_t>(n));
      size_t nl;
      while (running && (nl = pending.find('\n')) != std::string::npos) {
        running = broker.execute(std::string_view(pending).substr(0, nl));
        pending.erase(0, nl + 1);
      }
    }
  }
  close(sig_fd);
  return 0;
}
