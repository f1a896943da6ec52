// A confirmable CoAP request is answered (2.04) only once the journal has committed its
// reading: committed(seq) releases the requests whose readings are at or below seq, never a
// later one whose reading is appended but not yet committed (a commit notice for the commit
// before it, e.g. its WAL sync, can arrive in between). A real libcoap client on loopback.
#include <arpa/inet.h>
#include <coap3/coap.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "protocols/coap/coap_source.h"

namespace {

using gw::coap::Handlers;
using gw::coap::ResourceOptions;
using gw::coap::Source;
using gw::coap::SourceOptions;

/// A UDP port free on loopback a moment ago.
std::uint16_t freeUdpPort() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::vector<int> g_codes;  // response codes the client received, in order

coap_response_t onResponse(coap_session_t*, const coap_pdu_t*, const coap_pdu_t* received,
                           const coap_mid_t) {
  g_codes.push_back(static_cast<int>(coap_pdu_get_code(received)));
  return COAP_RESPONSE_OK;
}

struct Client {
  coap_context_t* ctx = nullptr;
  coap_session_t* session = nullptr;
  std::uint8_t token = 0;

  explicit Client(std::uint16_t port) {
    coap_startup();
    ctx = coap_new_context(nullptr);
    REQUIRE(ctx != nullptr);
    coap_address_t dst;
    coap_address_init(&dst);
    dst.addr.sin.sin_family = AF_INET;
    dst.addr.sin.sin_port = htons(port);
    dst.addr.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    dst.size = sizeof(sockaddr_in);
    session = coap_new_client_session(ctx, nullptr, &dst, COAP_PROTO_UDP);
    REQUIRE(session != nullptr);
    coap_register_response_handler(ctx, onResponse);
  }
  ~Client() {
    coap_session_release(session);
    coap_free_context(ctx);
  }
  void put(const std::string& device, const std::string& value) {
    coap_pdu_t* pdu = coap_new_pdu(COAP_MESSAGE_CON, COAP_REQUEST_CODE_PUT, session);
    REQUIRE(pdu != nullptr);
    ++token;
    coap_add_token(pdu, 1, &token);
    for (const std::string& part : {std::string("sensors"), device, std::string("temp")})
      coap_add_option(pdu, COAP_OPTION_URI_PATH, part.size(),
                      reinterpret_cast<const std::uint8_t*>(part.data()));
    const std::string body = R"({"value": )" + value + "}";
    coap_add_data(pdu, body.size(), reinterpret_cast<const std::uint8_t*>(body.data()));
    REQUIRE(coap_send(session, pdu) != COAP_INVALID_MID);
  }
};

}  // namespace

TEST_CASE("a confirmable request is answered only when committed() reaches its reading") {
  g_codes.clear();
  boost::asio::io_context io;
  SourceOptions options;
  options.listen = true;
  const std::uint16_t port = freeUdpPort();
  options.listen_at = {"127.0.0.1", port};
  options.resources.push_back(ResourceOptions{"sensors/{device}/{metric}", {}});
  std::uint64_t appended = 10;  // the journal's last seq: each reading appends one
  int readings = 0;
  Handlers h;
  h.reading = [&](gw::Series&, const gw::payload::Decoded&, gw::Nanos) {
    ++readings;
    ++appended;
  };
  h.bad = [](const gw::BadInput& b) { FAIL("bad input: " << b.reason); };
  h.busy = [] { return false; };
  h.appended = [&] { return appended; };
  auto source = Source::create(io, options, std::move(h));
  source->start();
  Client client(port);

  // Both sides driven until `done`, for at most 5 s.
  const auto until = [&](const char* what, const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline)
        FAIL("timed out waiting for " << std::string(what));
      coap_io_process(client.ctx, 5);
      io.run_for(std::chrono::milliseconds(5));
    }
  };

  client.put("pump-1", "1");  // its reading is seq 11
  until("the first reading", [&] { return readings == 1 && source->status().deferred == 1; });
  source->committed(10);  // the commit before it (its WAL sync, say): it keeps waiting
  CHECK(source->status().deferred == 1);

  client.put("pump-2", "2");  // seq 12
  until("the second reading", [&] { return readings == 2 && source->status().deferred == 2; });
  source->committed(11);  // the first one's commit: the second keeps waiting
  CHECK(source->status().deferred == 1);
  until("the first answer", [&] { return g_codes.size() == 1; });
  CHECK(g_codes[0] == COAP_RESPONSE_CODE_CHANGED);

  source->committed(12);
  CHECK(source->status().deferred == 0);
  until("the second answer", [&] { return g_codes.size() == 2; });
  CHECK(g_codes[1] == COAP_RESPONSE_CODE_CHANGED);

  // Committed before the request comes: answered as soon as its reading is in.
  source->committed(13);
  client.put("pump-3", "3");  // seq 13
  until("the third answer", [&] { return g_codes.size() == 3; });
  CHECK(source->status().deferred == 0);
  source->stop();
}
