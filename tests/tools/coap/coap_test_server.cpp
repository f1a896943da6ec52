// gw-coap-server: a small libcoap server for the CoAP tests and the benchmark baseline.
//
//   --resource "sensors/t1;rt=temperature;ct=0"   an observable resource (repeatable): GET gives
//                                                 its value, PUT sets it and notifies observers
//                                                 (confirmable notifications)
//   --sink                                        every other PUT/POST is answered 2.04 at once
//                                                 and counted: the bare-libcoap baseline
// Prints PORT=<n> when it listens (port 0 picks an ephemeral one), "NOTIFY <path> <value>" per
// change, and "COUNT <n>" once a second in --sink mode. SIGTERM/SIGINT stop it.
#include <arpa/inet.h>
#include <coap3/coap.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace {

volatile std::sig_atomic_t g_stop = 0;
extern "C" void onSignal(int) { g_stop = 1; }

struct Resource {
  std::string path;
  std::string value;
  coap_resource_t* r = nullptr;
};

std::vector<std::unique_ptr<Resource>> g_resources;
std::uint64_t g_count = 0;

Resource* find(coap_resource_t* r) {
  for (auto& res : g_resources)
    if (res->r == r) return res.get();
  return nullptr;
}

void onGet(coap_resource_t* r, coap_session_t* session, const coap_pdu_t* request,
           const coap_string_t* query, coap_pdu_t* response) {
  Resource* res = find(r);
  coap_pdu_set_code(response, COAP_RESPONSE_CODE_CONTENT);
  coap_add_data_large_response(
      r, session, request, response, query, COAP_MEDIATYPE_TEXT_PLAIN, 1, 0, res->value.size(),
      reinterpret_cast<const uint8_t*>(res->value.data()), nullptr, nullptr);
}

void onPut(coap_resource_t* r, coap_session_t*, const coap_pdu_t* request, const coap_string_t*,
           coap_pdu_t* response) {
  Resource* res = find(r);
  size_t len = 0, offset = 0, total = 0;
  const uint8_t* data = nullptr;
  if (!coap_get_data_large(request, &len, &data, &offset, &total)) len = 0;
  res->value.assign(reinterpret_cast<const char*>(data), data ? len : 0);
  coap_resource_notify_observers(r, nullptr);
  std::printf("NOTIFY %s %s\n", res->path.c_str(), res->value.c_str());
  std::fflush(stdout);
  coap_pdu_set_code(response, COAP_RESPONSE_CODE_CHANGED);
}

void onSink(coap_resource_t*, coap_session_t*, const coap_pdu_t*, const coap_string_t*,
            coap_pdu_t* response) {
  ++g_count;
  coap_pdu_set_code(response, COAP_RESPONSE_CODE_CHANGED);
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 0;
  std::vector<std::string> specs;
  std::string initial = "0";
  bool sink = false;
  CLI::App app{"gw-coap-server: observable test resources and a counting sink on libcoap"};
  app.add_option("--host", host, "Address to bind")->capture_default_str();
  app.add_option("--port", port, "UDP port (0: ephemeral)")->capture_default_str();
  app.add_option("--resource", specs, "PATH[;attr=value...] (observable, PUT sets the value)");
  app.add_option("--value", initial, "Initial value of every resource")->capture_default_str();
  app.add_flag("--sink", sink, "Answer every other PUT/POST 2.04 and count it");
  CLI11_PARSE(app, argc, argv);

  std::signal(SIGINT, onSignal);
  std::signal(SIGTERM, onSignal);
  coap_startup();
  coap_set_log_level(LOG_WARNING);
  coap_context_t* ctx = coap_new_context(nullptr);
  if (!ctx) return 1;
  coap_context_set_block_mode(ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
  coap_address_t addr;
  coap_address_init(&addr);
  addr.addr.sin.sin_family = AF_INET;
  addr.addr.sin.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.addr.sin.sin_addr) != 1) {
    std::fprintf(stderr, "bad --host %s (IPv4 only)\n", host.c_str());
    return 2;
  }
  addr.size = sizeof(addr.addr.sin);
  coap_endpoint_t* ep = coap_new_endpoint(ctx, &addr, COAP_PROTO_UDP);
  if (!ep) {
    std::fprintf(stderr, "cannot listen on %s:%d\n", host.c_str(), port);
    return 1;
  }
  for (const auto& spec : specs) {
    auto res = std::make_unique<Resource>();
    size_t semi = spec.find(';');
    res->path = spec.substr(0, semi);
    res->value = initial;
    coap_str_const_t* path =
        coap_new_str_const(reinterpret_cast<const uint8_t*>(res->path.data()), res->path.size());
    res->r =
        coap_resource_init(path, COAP_RESOURCE_FLAGS_RELEASE_URI | COAP_RESOURCE_FLAGS_NOTIFY_CON);
    coap_resource_set_get_observable(res->r, 1);
    coap_register_request_handler(res->r, COAP_REQUEST_GET, onGet);
    coap_register_request_handler(res->r, COAP_REQUEST_PUT, onPut);
    while (semi != std::string::npos) {
      const size_t next = spec.find(';', semi + 1);
      const std::string attr =
          spec.substr(semi + 1, next == std::string::npos ? next : next - semi - 1);
      const size_t eq = attr.find('=');
      const std::string name = attr.substr(0, eq);
      const std::string value = eq == std::string::npos ? "" : "\"" + attr.substr(eq + 1) + "\"";
      coap_add_attr(
          res->r, coap_new_str_const(reinterpret_cast<const uint8_t*>(name.data()), name.size()),
          value.empty()
              ? nullptr
              : coap_new_str_const(reinterpret_cast<const uint8_t*>(value.data()), value.size()),
          COAP_ATTR_FLAGS_RELEASE_NAME | COAP_ATTR_FLAGS_RELEASE_VALUE);
      semi = next;
    }
    coap_add_resource(ctx, res->r);
    g_resources.push_back(std::move(res));
  }
  if (sink) {
    coap_resource_t* r = coap_resource_unknown_init2(onSink, 0);
    coap_register_request_handler(r, COAP_REQUEST_POST, onSink);
    coap_add_resource(ctx, r);
  }
  const std::string bound = reinterpret_cast<const char*>(coap_endpoint_str(ep));
  const size_t colon = bound.rfind(':');
  std::printf("PORT=%d\n", std::atoi(bound.c_str() + colon + 1));
  std::fflush(stdout);

  coap_tick_t last_print;
  coap_ticks(&last_print);
  std::uint64_t printed = 0;
  while (!g_stop) {
    if (coap_io_process(ctx, 200) < 0) break;
    coap_tick_t now;
    coap_ticks(&now);
    if (sink && now - last_print >= COAP_TICKS_PER_SECOND && g_count != printed) {
      std::printf("COUNT %llu\n", static_cast<unsigned long long>(g_count));
      std::fflush(stdout);
      printed = g_count;
      last_print = now;
    }
  }
  std::printf("COUNT %llu\n", static_cast<unsigned long long>(g_count));
  coap_free_context(ctx);
  coap_cleanup();
  return 0;
}
