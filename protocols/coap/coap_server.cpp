// The CoAP source's server side: the resources devices PUT/POST readings to (path templates
// behind libcoap's "unknown resource"), /.well-known/core, and the confirmable requests whose
// 2.04 waits for the journal commit (see coap_source.cpp).
#include <fmt/format.h>

#include <cstring>
#include <stdexcept>

#include "core/log.h"
#include "protocols/coap/coap_source_impl.h"

namespace gw::coap {
namespace {

/// The literal levels of a template before its first capture: "sensors/{device}" -> "sensors".
std::string literalPrefix(const std::string& path) {
  std::string prefix;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    const std::string_view level(path.data() + start, end - start);
    if (level.find('{') != std::string_view::npos || level == "#") break;
    if (!prefix.empty()) prefix += '/';
    prefix += level;
    start = end + 1;
  }
  return prefix;
}

int contentFormat(const PayloadOptions& p) {
  if (p.senml) return COAP_MEDIATYPE_APPLICATION_SENML_JSON;
  return p.decoder.format == payload::Format::kValue ? COAP_MEDIATYPE_TEXT_PLAIN
                                                     : COAP_MEDIATYPE_APPLICATION_JSON;
}

}  // namespace

std::string wellKnownCore(const std::vector<ResourceOptions>& resources) {
  std::string body;
  for (const auto& r : resources) {
    if (!body.empty()) body += ',';
    body += fmt::format("</{}>;title=\"{}\";rt=\"gw.reading\";ct={}", literalPrefix(r.path), r.path,
                        contentFormat(r.payload));
  }
  return body;
}

namespace detail {

void SourceImpl::listen(const HostPort& at, coap_proto_t proto) {
  coap_address_t addr;
  std::string error;
  if (!resolve(at, true, addr, error))
    throw std::runtime_error(fmt::format("coap: listen {}: {}", at.host, error));
  coap_endpoint_t* ep = coap_new_endpoint(ctx_.get(), &addr, proto);
  if (!ep)
    throw std::runtime_error(fmt::format("coap: cannot listen on {}:{} ({}): {}", at.host, at.port,
                                         proto == COAP_PROTO_DTLS ? "dtls" : "udp",
                                         std::strerror(errno)));
  // The bound address (port 0 becomes the ephemeral port): tests and operators read it here.
  // coap_endpoint_str() gives "127.0.0.1:5683 UDP" (or DTLS).
  log::notice("coap: listening on {}",
              std::string_view(reinterpret_cast<const char*>(coap_endpoint_str(ep))));
}

void SourceImpl::setUpResources() {
  // Templates cannot be libcoap resources (those have fixed paths), so the "unknown
  // resource" takes every PUT and POST and matches the path against the templates.
  coap_resource_t* r = coap_resource_unknown_init2(&SourceImpl::onRequestThunk, 0);
  coap_register_request_handler(r, COAP_REQUEST_POST, &SourceImpl::onRequestThunk);
  coap_add_resource(ctx_.get(), r);
  well_known_ = wellKnownCore(options_.resources);
  coap_resource_t* wk = coap_resource_init(coap_make_str_const(".well-known/core"), 0);
  coap_register_request_handler(wk, COAP_REQUEST_GET, &SourceImpl::onWellKnownThunk);
  coap_add_resource(ctx_.get(), wk);
}

void SourceImpl::onRequestThunk(coap_resource_t*, coap_session_t* session,
                                const coap_pdu_t* request, const coap_string_t*,
                                coap_pdu_t* response) {
  self(session)->onRequest(session, request, response);
}

void SourceImpl::onWellKnownThunk(coap_resource_t* resource, coap_session_t* session,
                                  const coap_pdu_t* request, const coap_string_t* query,
                                  coap_pdu_t* response) {
  self(session)->onWellKnown(resource, session, request, query, response);
}

void SourceImpl::onWellKnown(coap_resource_t* resource, coap_session_t* session,
                             const coap_pdu_t* request, const coap_string_t* query,
                             coap_pdu_t* response) {
  std::string body = well_known_;
  if (query && query->length) {  // RFC 6690 4.1 filtering, e.g. ?rt=gw.reading
    std::string error;
    auto f = parseLinkFilter(
        std::string_view(reinterpret_cast<const char*>(query->s), query->length), error);
    body.clear();
    if (f) {
      for (const auto& link : parseLinkFormat(well_known_)) {
        if (!matches(link, *f)) continue;
        // Re-serialise the matching link from the original text.
        for (const auto& r : options_.resources) {
          if ("/" + literalPrefix(r.path) != link.target) continue;
          std::string one = wellKnownCore({r});
          if (body.find(one) != std::string::npos) continue;
          if (!body.empty()) body += ',';
          body += one;
        }
      }
    }
  }
  coap_pdu_set_code(response, COAP_RESPONSE_CODE_CONTENT);
  auto* copy = new std::string(std::move(body));
  coap_add_data_large_response(
      resource, session, request, response, query, COAP_MEDIATYPE_APPLICATION_LINK_FORMAT, -1, 0,
      copy->size(), reinterpret_cast<const uint8_t*>(copy->data()),
      [](coap_session_t*, void* p) { delete static_cast<std::string*>(p); }, copy);
}

void SourceImpl::respond(coap_pdu_t* response, coap_pdu_code_t code, std::string_view diagnostic) {
  coap_pdu_set_code(response, code);
  if (!diagnostic.empty())
    coap_add_data(response, diagnostic.size(), reinterpret_cast<const uint8_t*>(diagnostic.data()));
}

void SourceImpl::onRequest(coap_session_t* session, const coap_pdu_t* request,
                           coap_pdu_t* response) {
  const coap_bin_const_t token = coap_pdu_get_token(request);
  if (coap_async_t* a = coap_find_async(session, token)) {
    // Either the call libcoap makes after committed() triggered the async (answer now), or
    // a retransmission of a request still waiting for its commit (another empty ACK).
    if (coap_async_get_app_data(a) == &kReleased)
      coap_pdu_set_code(response, COAP_RESPONSE_CODE_CHANGED);
    return;
  }
  ++counters_.requests;
  if (stopped_) {  // shutting down: the device should come back later
    uint8_t buf[4];
    coap_add_option(response, COAP_OPTION_MAXAGE, coap_encode_var_safe(buf, sizeof buf, 5), buf);
    return respond(response, COAP_RESPONSE_CODE_SERVICE_UNAVAILABLE, "shutting down");
  }
  const Nanos receive_time = wallNow();
  coap_string_t* p = coap_get_uri_path(request);
  path_.assign(p ? reinterpret_cast<const char*>(p->s) : "", p ? p->length : 0);
  coap_delete_string(p);
  size_t len = 0, offset = 0, total = 0;
  const uint8_t* data = nullptr;
  if (!coap_get_data_large(request, &len, &data, &offset, &total)) len = 0;
  const std::string_view body(reinterpret_cast<const char*>(data), data ? len : 0);

  Route* route = nullptr;
  for (auto& r : routes_) {
    if (r->tmpl.match(path_, series_)) {
      route = r.get();
      break;
    }
  }
  if (!route) {
    handlers_.bad({"coap", "no_template", path_, body, {}, body.size()});
    return respond(response, COAP_RESPONSE_CODE_NOT_FOUND, "no resource template matches");
  }
  const size_t max = route->options.payload.decoder.max_payload;
  if (body.size() > max || total > max) {
    handlers_.bad({"coap", "too_large", path_, body, series_.device, std::max(body.size(), total)});
    uint8_t buf[4];
    coap_add_option(response, COAP_OPTION_SIZE1,
                    coap_encode_var_safe(buf, sizeof buf, static_cast<unsigned>(max)), buf);
    return respond(response, COAP_RESPONSE_CODE_REQUEST_TOO_LARGE, "");
  }
  const bool confirmable = coap_pdu_get_type(request) == COAP_MESSAGE_CON;
  if (handlers_.busy()) {
    // The journal cannot commit and memory is at its bound: the device should retry.
    handlers_.bad({"coap", confirmable ? "journal_backpressure" : "journal_backpressure_non_lost",
                   path_, body, series_.device, body.size()});
    uint8_t buf[4];
    coap_add_option(response, COAP_OPTION_MAXAGE, coap_encode_var_safe(buf, sizeof buf, 1), buf);
    return respond(response, COAP_RESPONSE_CODE_SERVICE_UNAVAILABLE, "journal busy");
  }
  const char* error = route->reader.decode(body, series_);
  if (error) {
    handlers_.bad({"coap", error, path_, body, series_.device, body.size()});
    return respond(response, COAP_RESPONSE_CODE_BAD_REQUEST, error);
  }
  if (route->reader.badTimestamp())
    handlers_.bad({"coap", "bad_timestamp", path_, body, series_.device, body.size()});
  if (confirmable) {
    // Registered before the reading goes in: a full batch commits inside ingest(), and
    // committed() must find this request then.
    coap_async_t* a = coap_register_async(session, request, 0);
    if (!a) {
      handlers_.bad({"coap", "coap_async_failed", path_, body, series_.device, body.size()});
      return respond(response, COAP_RESPONSE_CODE_SERVICE_UNAVAILABLE, "busy");
    }
    deferred_.push_back(Deferred{coap_session_reference(session),
                                 std::vector<uint8_t>(token.s, token.s + token.length)});
  }
  ingest(route->reader, series_, receive_time);
  if (confirmable) {
    // Its readings are in: it waits for the commit of the last of them (which may already
    // have happened inside ingest(), by a full batch).
    for (auto& d : deferred_)
      if (d.seq == kPendingSeq) d.seq = handlers_.appended ? handlers_.appended() : 0;
    if (handlers_.appended) releaseCommitted();
  }
  if (!confirmable) coap_pdu_set_code(response, COAP_RESPONSE_CODE_CHANGED);
  // Confirmable: no code set, so libcoap sends an empty ACK; the 2.04 follows the commit.
}

void SourceImpl::ingest(PayloadReader& reader, Series& series, Nanos receive_time) {
  reader.emit(series, receive_time, [this, receive_time](Series& s, const Decoded& d) {
    handlers_.reading(s, d, receive_time);
  });
}

}  // namespace detail
}  // namespace gw::coap
