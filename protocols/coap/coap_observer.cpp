// The CoAP source's observer side (RFC 7641): observations of device resources, discovery
// through /.well-known/core, re-registration of silent observations, and the notifications
// handed to the pipeline.
#include <fmt/format.h>

#include <cstring>

#include "core/log.h"
#include "protocols/coap/coap_source_impl.h"

namespace gw::coap::detail {
namespace {

constexpr std::uint32_t kObserveFreshWindow = 1u << 23;  // RFC 7641 3.4
constexpr Nanos kObserveFreshTime = 128 * kNanosPerSecond;

std::string codeString(coap_pdu_code_t code) {
  return fmt::format("{}.{:02}", static_cast<int>(code) >> 5, static_cast<int>(code) & 0x1f);
}

std::uint64_t tokenId(coap_bin_const_t token) {
  if (token.length != 8) return 0;
  std::uint64_t id;
  std::memcpy(&id, token.s, 8);
  return id;
}

}  // namespace

void SourceImpl::addObservation(const ObserveOptions& o, const Uri& uri, const std::string& device,
                                const std::string& metric, const Series& captured) {
  auto obs = std::make_unique<Observation>(o, uri);
  obs->where = fmt::format("{}://{}:{}/{}", uri.secure ? "coaps" : "coap", uri.endpoint.host,
                           uri.endpoint.port, uri.pathString());
  obs->series = captured;
  if (obs->series.device.empty()) obs->series.device = device;
  if (obs->series.metric.empty()) obs->series.metric = metric;
  obs->next_attempt = monoNow();
  observations_.push_back(std::move(obs));
}

std::uint64_t SourceImpl::newToken() {
  std::uint64_t t;
  do {
    t = token_base_ + ++token_counter_ * 0x9E3779B97F4A7C15ull;
  } while (t == 0 || tokens_.count(t));
  return t;
}

coap_session_t* SourceImpl::sessionFor(const Uri& uri, const PskOptions& psk, std::string& error) {
  coap_address_t dst;
  if (!resolve(uri.endpoint, false, dst, error)) return nullptr;
  coap_session_t* s = nullptr;
  if (uri.secure) {
    coap_dtls_cpsk_t cpsk{};
    cpsk.version = COAP_DTLS_CPSK_SETUP_VERSION;
    cpsk.psk_info.identity.s = reinterpret_cast<const uint8_t*>(psk.identity.data());
    cpsk.psk_info.identity.length = psk.identity.size();
    cpsk.psk_info.key.s = reinterpret_cast<const uint8_t*>(psk.key.data());
    cpsk.psk_info.key.length = psk.key.size();
    s = coap_new_client_session_psk2(ctx_.get(), nullptr, &dst, COAP_PROTO_DTLS, &cpsk);
  } else {
    s = coap_new_client_session(ctx_.get(), nullptr, &dst, COAP_PROTO_UDP);
  }
  if (!s) {
    error = "cannot create a client session";
    return nullptr;
  }
  // Our own backoff and re-registration take over quickly from libcoap's retransmissions
  // (the default would keep trying a restarted device's old port for ~45 s).
  coap_session_set_ack_timeout(s, coap_fixed_point_t{1, 0});
  coap_session_set_max_retransmit(s, 2);
  return s;
}

std::uint64_t SourceImpl::sendGet(coap_session_t* s, const std::vector<std::string>& path,
                                  const std::vector<std::string>& query, bool observe,
                                  std::uint64_t reuse_token) {
  coap_pdu_t* pdu = coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_GET, coap_new_message_id(s),
                                  coap_session_max_pdu_size(s));
  if (!pdu) return 0;
  const std::uint64_t token = reuse_token ? reuse_token : newToken();
  coap_add_token(pdu, 8, reinterpret_cast<const uint8_t*>(&token));
  uint8_t buf[4];
  if (observe)
    coap_add_option(pdu, COAP_OPTION_OBSERVE,
                    coap_encode_var_safe(buf, sizeof buf, COAP_OBSERVE_ESTABLISH), buf);
  for (const auto& seg : path)
    coap_add_option(pdu, COAP_OPTION_URI_PATH, seg.size(),
                    reinterpret_cast<const uint8_t*>(seg.data()));
  for (const auto& q : query)
    coap_add_option(pdu, COAP_OPTION_URI_QUERY, q.size(),
                    reinterpret_cast<const uint8_t*>(q.data()));
  if (coap_send(s, pdu) == COAP_INVALID_MID) return 0;
  return token;
}

void SourceImpl::backoff(Nanos& next_attempt, RetryPolicy& retry) {
  next_attempt = monoNow() + retry.next();
}

void SourceImpl::registerObservation(Observation& o, bool again) {
  std::string error;
  if (!o.session) o.session = sessionFor(o.uri, o.options.psk, error);
  // Re-registering with the same token replaces our registration on the device instead of
  // adding a second one (RFC 7641 3.3.1); a fresh token only after a failure.
  const std::uint64_t previous = o.token;
  o.have_seq = false;
  if (o.session) o.token = sendGet(o.session, o.uri.path, o.uri.query, true, previous);
  if (previous && previous != o.token) tokens_.erase(previous);
  if (!o.token) {
    log::warn("coap: cannot observe {}: {}", o.where, error.empty() ? "send failed" : error);
    o.state = Observation::State::kIdle;
    return backoff(o.next_attempt, o.retry);
  }
  if (again) ++counters_.reregistrations;
  tokens_[o.token] = TokenUse{&o, nullptr};
  o.state = Observation::State::kRegistering;
  o.last_heard = monoNow();
}

void SourceImpl::startDiscovery(Discovery& d) {
  std::string error;
  if (!d.session) d.session = sessionFor(d.uri, d.options.psk, error);
  if (d.token) tokens_.erase(d.token);
  d.token = 0;
  std::vector<std::string> query;
  if (d.has_filter) query.push_back(d.options.filter);
  if (d.session) d.token = sendGet(d.session, {".well-known", "core"}, query, false);
  if (!d.token) {
    log::warn("coap: cannot discover {}: {}", d.where, error.empty() ? "send failed" : error);
    return backoff(d.next_attempt, d.retry);
  }
  tokens_[d.token] = TokenUse{nullptr, &d};
  d.pending = true;
  d.next_attempt = monoNow() + 10 * kNanosPerSecond;  // no answer by then: ask again
}

void SourceImpl::watchdog() {
  const Nanos now = monoNow();
  for (auto& d : discoveries_) {
    if (now >= d->next_attempt) startDiscovery(*d);  // also when an answer is overdue
  }
  // Index loop: discovery answers append observations.
  for (size_t i = 0; i < observations_.size(); ++i) {
    Observation& o = *observations_[i];
    switch (o.state) {
      case Observation::State::kIdle:
        if (now >= o.next_attempt)
          registerObservation(o, o.retry.failures() != 0 || o.last_heard != 0);
        break;
      case Observation::State::kRegistering:
        if (now - o.last_heard > 10 * kNanosPerSecond) {
          log::warn("coap: no answer from {} to the observe request; trying again", o.where);
          registerObservation(o, true);
        }
        break;
      case Observation::State::kObserving:
        if (now - o.last_heard > o.options.reregister_after) {
          // Normal for a value that does not change (libcoap servers send no fresh Max-Age);
          // a device that restarted and forgot us is found the same way.
          log::info("coap: {} silent for {} ms; registering again", o.where,
                    (now - o.last_heard) / kNanosPerMilli);
          registerObservation(o, true);
        }
        break;
    }
  }
}

coap_response_t SourceImpl::onResponseThunk(coap_session_t* session, const coap_pdu_t* sent,
                                            const coap_pdu_t* received, const coap_mid_t) {
  return self(session)->onResponse(received);
}

void SourceImpl::onNackThunk(coap_session_t* session, const coap_pdu_t* sent,
                             const coap_nack_reason_t reason, const coap_mid_t) {
  if (sent) self(session)->onNack(sent, reason);
}

void SourceImpl::onNack(const coap_pdu_t* sent, coap_nack_reason_t reason) {
  auto it = tokens_.find(tokenId(coap_pdu_get_token(sent)));
  if (it == tokens_.end()) return;
  const TokenUse use = it->second;
  tokens_.erase(it);
  const char* why = reason == COAP_NACK_TOO_MANY_RETRIES ? "no answer"
                    : reason == COAP_NACK_RST            ? "reset"
                    : reason == COAP_NACK_TLS_FAILED     ? "DTLS handshake failed"
                                                         : "not deliverable";
  if (use.observation) {
    Observation& o = *use.observation;
    log::warn("coap: observe {}: {}; retrying", o.where, why);
    o.token = 0;
    o.state = Observation::State::kIdle;
    o.announced = false;
    backoff(o.next_attempt, o.retry);
  } else if (use.discovery) {
    Discovery& d = *use.discovery;
    log::warn("coap: discover {}: {}; retrying", d.where, why);
    d.token = 0;
    d.pending = false;
    backoff(d.next_attempt, d.retry);
  }
}

coap_response_t SourceImpl::onResponse(const coap_pdu_t* received) {
  auto it = tokens_.find(tokenId(coap_pdu_get_token(received)));
  // A stale observation, or we are shutting down: the RST cancels it on the device.
  if (it == tokens_.end() || stopped_) return COAP_RESPONSE_FAIL;
  const TokenUse use = it->second;
  if (use.discovery) {
    onDiscovered(*use.discovery, received);
    return COAP_RESPONSE_OK;
  }
  Observation& o = *use.observation;
  const coap_pdu_code_t code = coap_pdu_get_code(received);
  const Nanos now = monoNow();
  if ((static_cast<int>(code) >> 5) != 2) {
    log::warn("coap: observe {}: the device answered {}; retrying", o.where, codeString(code));
    tokens_.erase(it);
    o.token = 0;
    o.state = Observation::State::kIdle;
    o.announced = false;
    backoff(o.next_attempt, o.retry);
    return COAP_RESPONSE_OK;
  }
  coap_opt_iterator_t opt_iter;
  const coap_opt_t* opt = coap_check_option(received, COAP_OPTION_OBSERVE, &opt_iter);
  if (opt) {
    const std::uint32_t seq = coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt));
    if (o.have_seq) {
      const std::uint32_t v1 = o.last_seq, v2 = seq;
      const bool fresh = (v1 < v2 && v2 - v1 < kObserveFreshWindow) ||
                         (v1 > v2 && v1 - v2 > kObserveFreshWindow) ||
                         now > o.last_seq_time + kObserveFreshTime;
      if (!fresh) return COAP_RESPONSE_OK;  // reordered: an older state than we have
    }
    o.have_seq = true;
    o.last_seq = seq;
    o.last_seq_time = now;
    if (o.state != Observation::State::kObserving && !o.announced)
      log::notice("coap: observing {} ({} {})", o.where, o.series.device, o.series.metric);
    o.announced = true;
    o.state = Observation::State::kObserving;
  } else {
    // The device does not keep us as an observer: read it again after reregister_after.
    if (!o.warned_no_observe)
      log::warn("coap: {} does not support observe; reading it every {} ms", o.where,
                o.options.reregister_after / kNanosPerMilli);
    o.warned_no_observe = true;
    tokens_.erase(it);
    o.token = 0;
    o.state = Observation::State::kIdle;
    o.next_attempt = now + o.options.reregister_after;
  }
  o.retry.reset();
  o.last_heard = now;
  ++counters_.notifications;

  size_t len = 0, offset = 0, total = 0;
  const uint8_t* data = nullptr;
  if (!coap_get_data_large(received, &len, &data, &offset, &total)) len = 0;
  const std::string_view body(reinterpret_cast<const char*>(data), data ? len : 0);
  if (handlers_.busy()) {
    handlers_.bad({"coap", "journal_backpressure_notification_lost", o.where, body, o.series.device,
                   body.size()});
    return COAP_RESPONSE_OK;
  }
  if (body.size() > o.reader.options().decoder.max_payload) {
    handlers_.bad({"coap", "too_large", o.where, body, o.series.device, body.size()});
    return COAP_RESPONSE_OK;
  }
  const char* error = o.reader.decode(body, o.series);
  if (error) {
    handlers_.bad({"coap", error, o.where, body, o.series.device, body.size()});
    return COAP_RESPONSE_OK;
  }
  if (o.reader.badTimestamp())
    handlers_.bad({"coap", "bad_timestamp", o.where, body, o.series.device, body.size()});
  obs_series_ = o.series;
  ingest(o.reader, obs_series_, wallNow());
  return COAP_RESPONSE_OK;
}

void SourceImpl::onDiscovered(Discovery& d, const coap_pdu_t* received) {
  tokens_.erase(d.token);
  d.token = 0;
  d.pending = false;
  const coap_pdu_code_t code = coap_pdu_get_code(received);
  if (code != COAP_RESPONSE_CODE_CONTENT) {
    log::warn("coap: discover {}: the device answered {}; retrying", d.where, codeString(code));
    return backoff(d.next_attempt, d.retry);
  }
  size_t len = 0, offset = 0, total = 0;
  const uint8_t* data = nullptr;
  if (!coap_get_data_large(received, &len, &data, &offset, &total)) len = 0;
  const std::string_view body(reinterpret_cast<const char*>(data), data ? len : 0);
  size_t added = 0;
  for (const auto& link : parseLinkFormat(body)) {
    // Devices may ignore the query filter (it is optional in RFC 6690): filter here too.
    if (d.has_filter && !matches(link, d.filter)) continue;
    std::string target = link.target;
    if (target.rfind("coap", 0) == 0) continue;  // a link to another host: not ours to follow
    if (!target.empty() && target.front() == '/') target.erase(0, 1);
    if (target == ".well-known/core") continue;
    Series captured;
    if (d.tmpl && !d.tmpl->match(target, captured)) continue;
    Uri uri = d.uri;
    uri.query.clear();
    std::string error;
    auto parsed = parseUri(fmt::format("coap://x/{}", target), error);
    if (!parsed) continue;
    uri.path = parsed->path;
    uri.query = parsed->query;
    bool known = false;
    for (const auto& o : observations_) {
      known |= o->uri.endpoint.host == uri.endpoint.host &&
               o->uri.endpoint.port == uri.endpoint.port && o->uri.path == uri.path;
    }
    if (known) continue;
    const std::string metric =
        !d.options.metric.empty() ? d.options.metric : (uri.path.empty() ? "" : uri.path.back());
    addObservation(d.options, uri, d.options.device, metric, captured);
    ++added;
  }
  if (added > 0 || !d.done)
    log::notice("coap: discovered {} resource(s) to observe on {}{}", added, d.where,
                d.has_filter ? fmt::format(" matching {}", d.options.filter) : "");
  d.done = true;
  d.retry.reset();
  d.next_attempt = monoNow() + d.options.rediscover;
}

}  // namespace gw::coap::detail
