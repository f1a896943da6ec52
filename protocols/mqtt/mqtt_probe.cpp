#include "protocols/mqtt/mqtt_probe.h"

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <optional>
#include <string>

namespace gw::mqtt {

ProbeResult probeBroker(ClientOptions o, Nanos timeout) {
  o.client_id += "-check";
  o.clean_start = true;
  o.session_expiry_s = 0;
  o.subscriptions.clear();
  o.make_will = {};
  o.connect_timeout = timeout;
  o.reconnect_min = o.reconnect_max = timeout * 2;  // one attempt
  boost::asio::io_context io;
  std::optional<ProbeResult> result;
  auto client = Client::create(
      io, o, [](const Message&, AckToken) {},
      [&](bool connected, const std::string& reason) {
        if (result) return;
        result = connected ? ProbeResult{true, o.tls.enabled ? "TCP, TLS and CONNECT accepted"
                                                             : "TCP and CONNECT accepted"}
                           : ProbeResult{false, reason};
        io.stop();
      });
  client->start();
  io.run_for(std::chrono::nanoseconds(timeout));
  if (!result) result = ProbeResult{false, "no CONNACK within the timeout"};
  client->stop();
  io.restart();
  io.run_for(std::chrono::milliseconds(200));  // the DISCONNECT goes out
  client.reset();
  return *result;
}

}  // namespace gw::mqtt
