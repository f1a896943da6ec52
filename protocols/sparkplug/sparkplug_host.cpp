#include "protocols/sparkplug/sparkplug_host.h"

#include <fmt/format.h>
#include <protobuf-c/protobuf-c.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>
#include <vector>

#include "protocols/sparkplug/sparkplug_b.pb-c.h"

namespace gw::sparkplug {
namespace {

using PbPayload = Gw__Sparkplug__Pb__Payload;
using PbMetric = Gw__Sparkplug__Pb__Metric;

// Sparkplug 3.0 data types (the specification's DataType enumeration).
enum DataType : std::uint32_t {
  kUnknown = 0,
  kInt8 = 1,
  kInt16 = 2,
  kInt32 = 3,
  kInt64 = 4,
  kUInt8 = 5,
  kUInt16 = 6,
  kUInt32 = 7,
  kUInt64 = 8,
  kFloat = 9,
  kDouble = 10,
  kBoolean = 11,
  kString = 12,
  kDateTime = 13,
  kText = 14,
  kUUID = 15,
  kDataSet = 16,
  kBytes = 17,
  kFile = 18,
  kTemplate = 19,
};

constexpr std::int32_t kQualityGood = 192;
constexpr std::string_view kNamespace = "spBv1.0/";

/// protobuf-c's allocator for unpacking: a bump arena reused for every message, so a DATA
/// message costs no malloc once the arena has grown to the usual message size. What does not
/// fit goes to malloc and is freed, and the arena grown (up to kMaxArena), at the next reset.
class Arena {
 public:
  static constexpr size_t kMaxArena = 1 << 20;
  Arena() : allocator_{&Arena::alloc, &Arena::free, this} {}
  ~Arena() { reset(); }
  ProtobufCAllocator* allocator() { return &allocator_; }
  void reset() {
    for (void* p : overflow_) std::free(p);
    overflow_.clear();
    if (wanted_ > buffer_.size()) buffer_.assign(std::min(wanted_, kMaxArena), 0);
    used_ = 0;
    wanted_ = 0;
  }

 private:
  static void* alloc(void* self, size_t size) {
    auto& a = *static_cast<Arena*>(self);
    size = (size + 15) & ~size_t{15};
    a.wanted_ += size;
    if (a.used_ + size <= a.buffer_.size()) {
      void* p = a.buffer_.data() + a.used_;
      a.used_ += size;
      return p;
    }
    void* p = std::malloc(size);
    if (p) a.overflow_.push_back(p);
    return p;
  }
  static void free(void*, void*) {}  // everything goes at reset()

  ProtobufCAllocator allocator_;
  std::vector<char> buffer_;
  size_t used_ = 0, wanted_ = 0;
  std::vector<void*> overflow_;
};

/// The payload unpacked into the arena; the arena is reset when it goes.
struct Unpacked {
  Arena& arena;
  PbPayload* p = nullptr;
  ~Unpacked() { arena.reset(); }
};

struct AliasEntry {
  std::string name;
  std::uint32_t datatype = kUnknown;
};

/// One device's (or the node's own, device "") birth: alias → name and datatype, and the
/// datatype of each name (DATA may carry names without datatypes).
struct Birth {
  bool seen = false;
  bool online = false;
  std::unordered_map<std::uint64_t, AliasEntry> aliases;
  std::unordered_map<std::string, std::uint32_t> types;
};

struct Node {
  std::string group, edge_node;
  std::optional<std::uint64_t> bd_seq;
  Birth node;
  std::map<std::string, Birth, std::less<>> devices;
  // seq tracking: the next expected seq, and the seqs skipped and not yet seen.
  std::optional<int> next_seq;
  std::set<int> missing;
  std::optional<Nanos> gap_deadline;
  // rebirth rate limit
  std::optional<Nanos> last_rebirth;
  bool rebirth_due = false;
  std::string rebirth_why;
};

std::string stateKey(std::string_view group, std::string_view node) {
  return fmt::format("sparkplug/{}/{}", group, node);
}

// ---- the persisted births: a small binary record -----------------------------------------
// Per node: bdSeq (u64, ~0 = none), then per birth (node first, device ""): device name,
// alias count, then (alias u64, datatype u32, name). Strings are u32 length + bytes.
void putU32(std::string& out, std::uint32_t v) { out.append(reinterpret_cast<char*>(&v), 4); }
void putU64(std::string& out, std::uint64_t v) { out.append(reinterpret_cast<char*>(&v), 8); }
void putStr(std::string& out, std::string_view s) {
  putU32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}
struct Reader {
  std::string_view in;
  bool ok = true;
  template <typename T>
  T num() {
    T v{};
    if (in.size() < sizeof v) {
      ok = false;
      return v;
    }
    std::memcpy(&v, in.data(), sizeof v);
    in.remove_prefix(sizeof v);
    return v;
  }
  std::string str() {
    const auto n = num<std::uint32_t>();
    if (!ok || in.size() < n) {
      ok = false;
      return {};
    }
    std::string s(in.substr(0, n));
    in.remove_prefix(n);
    return s;
  }
};

void encodeBirth(std::string& out, std::string_view device, const Birth& b) {
  putStr(out, device);
  putU32(out, static_cast<std::uint32_t>(b.aliases.size()));
  for (const auto& [alias, e] : b.aliases) {
    putU64(out, alias);
    putU32(out, e.datatype);
    putStr(out, e.name);
  }
}

std::string encodeNode(const Node& n) {
  std::string out;
  putU64(out, n.bd_seq.value_or(~std::uint64_t{0}));
  if (n.node.seen) encodeBirth(out, "", n.node);
  for (const auto& [name, b] : n.devices)
    if (b.seen) encodeBirth(out, name, b);
  return out;
}

bool decodeNode(std::string_view in, Node& n) {
  Reader r{in};
  const auto bd = r.num<std::uint64_t>();
  if (bd != ~std::uint64_t{0}) n.bd_seq = bd;
  while (r.ok && !r.in.empty()) {
    const std::string device = r.str();
    Birth& b = device.empty() ? n.node : n.devices[device];
    b.seen = true;
    const auto count = r.num<std::uint32_t>();
    for (std::uint32_t i = 0; r.ok && i < count; ++i) {
      const auto alias = r.num<std::uint64_t>();
      const auto type = r.num<std::uint32_t>();
      std::string name = r.str();
      b.types[name] = type;
      b.aliases[alias] = {std::move(name), type};
    }
  }
  return r.ok;
}

/// The reading value of a metric of `type`: numbers and Boolean (0/1); nullopt with the reason
/// it is not a reading otherwise.
std::optional<double> metricValue(const PbMetric& m, std::uint32_t type, const char*& why) {
  using VC = Gw__Sparkplug__Pb__Metric__ValueCase;
  const VC vc = m.value_case;
  if (m.has_is_null && m.is_null) {
    why = "null";
    return std::nullopt;
  }
  if (type == kUnknown) {
    // DATA without a birth datatype: go by the value field itself.
    switch (vc) {
      case GW__SPARKPLUG__PB__METRIC__VALUE_INT_VALUE:
        type = kUInt32;
        break;
      case GW__SPARKPLUG__PB__METRIC__VALUE_LONG_VALUE:
        type = kUInt64;
        break;
      case GW__SPARKPLUG__PB__METRIC__VALUE_FLOAT_VALUE:
        type = kFloat;
        break;
      case GW__SPARKPLUG__PB__METRIC__VALUE_DOUBLE_VALUE:
        type = kDouble;
        break;
      case GW__SPARKPLUG__PB__METRIC__VALUE_BOOLEAN_VALUE:
        type = kBoolean;
        break;
      case GW__SPARKPLUG__PB__METRIC__VALUE_STRING_VALUE:
        type = kString;
        break;
      case GW__SPARKPLUG__PB__METRIC__VALUE_BYTES_VALUE:
        type = kBytes;
        break;
      case GW__SPARKPLUG__PB__METRIC__VALUE_DATASET_VALUE:
        type = kDataSet;
        break;
      case GW__SPARKPLUG__PB__METRIC__VALUE_TEMPLATE_VALUE:
        type = kTemplate;
        break;
      default:
        why = "no_value";
        return std::nullopt;
    }
  }
  const auto need = [&](VC want) {
    if (vc == want) return true;
    why = "type_mismatch";
    return false;
  };
  switch (type) {
    case kInt8:
      if (!need(GW__SPARKPLUG__PB__METRIC__VALUE_INT_VALUE)) return std::nullopt;
      return static_cast<std::int8_t>(m.int_value & 0xFF);
    case kInt16:
      if (!need(GW__SPARKPLUG__PB__METRIC__VALUE_INT_VALUE)) return std::nullopt;
      return static_cast<std::int16_t>(m.int_value & 0xFFFF);
    case kInt32:
      if (!need(GW__SPARKPLUG__PB__METRIC__VALUE_INT_VALUE)) return std::nullopt;
      return static_cast<std::int32_t>(m.int_value);
    case kUInt8:
    case kUInt16:
    case kUInt32:
      // Some edge nodes put UInt32 in long_value; take either.
      if (vc == GW__SPARKPLUG__PB__METRIC__VALUE_LONG_VALUE) return double(m.long_value);
      if (!need(GW__SPARKPLUG__PB__METRIC__VALUE_INT_VALUE)) return std::nullopt;
      return double(m.int_value);
    case kInt64:
      if (!need(GW__SPARKPLUG__PB__METRIC__VALUE_LONG_VALUE)) return std::nullopt;
      return double(static_cast<std::int64_t>(m.long_value));
    case kUInt64:
      if (vc == GW__SPARKPLUG__PB__METRIC__VALUE_INT_VALUE) return double(m.int_value);
      if (!need(GW__SPARKPLUG__PB__METRIC__VALUE_LONG_VALUE)) return std::nullopt;
      return double(m.long_value);
    case kFloat:
      if (vc == GW__SPARKPLUG__PB__METRIC__VALUE_DOUBLE_VALUE) return m.double_value;
      if (!need(GW__SPARKPLUG__PB__METRIC__VALUE_FLOAT_VALUE)) return std::nullopt;
      return double(m.float_value);
    case kDouble:
      if (vc == GW__SPARKPLUG__PB__METRIC__VALUE_FLOAT_VALUE) return double(m.float_value);
      if (!need(GW__SPARKPLUG__PB__METRIC__VALUE_DOUBLE_VALUE)) return std::nullopt;
      return m.double_value;
    case kBoolean:
      if (!need(GW__SPARKPLUG__PB__METRIC__VALUE_BOOLEAN_VALUE)) return std::nullopt;
      return m.boolean_value ? 1.0 : 0.0;
    case kString:
    case kText:
    case kUUID:
      why = "string";
      return std::nullopt;
    case kBytes:
      why = "bytes";
      return std::nullopt;
    case kDataSet:
      why = "dataset";
      return std::nullopt;
    case kTemplate:
      why = "template";
      return std::nullopt;
    case kFile:
      why = "file";
      return std::nullopt;
    case kDateTime:
      why = "datetime";
      return std::nullopt;
    default:
      why = "other_type";
      return std::nullopt;
  }
}

/// The metric's quality property (Int32 "Quality"), if any.
std::optional<std::int32_t> quality(const PbMetric& m) {
  const auto* ps = m.properties;
  if (!ps) return std::nullopt;
  const size_t n = std::min(ps->n_keys, ps->n_values);
  for (size_t i = 0; i < n; ++i) {
    if (!ps->keys[i] || std::strcmp(ps->keys[i], "Quality") != 0 || !ps->values[i]) continue;
    const auto* v = ps->values[i];
    if (v->value_case == GW__SPARKPLUG__PB__PROPERTY_VALUE__VALUE_INT_VALUE)
      return static_cast<std::int32_t>(v->int_value);
    if (v->value_case == GW__SPARKPLUG__PB__PROPERTY_VALUE__VALUE_LONG_VALUE)
      return static_cast<std::int32_t>(v->long_value);
  }
  return std::nullopt;
}

/// ms since the epoch as ns, if it fits int64 and is not before 1970.
std::optional<Nanos> msToNanos(std::uint64_t ms) {
  if (ms > static_cast<std::uint64_t>(INT64_MAX / kNanosPerMilli)) return std::nullopt;
  return static_cast<Nanos>(ms) * kNanosPerMilli;
}

}  // namespace

bool parseTopic(std::string_view topic, Topic& out) {
  if (topic.substr(0, kNamespace.size()) != kNamespace) return false;
  std::string_view rest = topic.substr(kNamespace.size());
  std::string_view parts[5];
  size_t n = 0;
  while (true) {
    const auto slash = rest.find('/');
    if (n == 5) return false;
    parts[n++] = rest.substr(0, slash);
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (n < 3) return false;
  for (size_t i = 0; i < n; ++i)
    if (parts[i].empty()) return false;
  const std::string_view type = parts[1];
  static constexpr std::pair<std::string_view, MessageType> kTypes[] = {
      {"NBIRTH", MessageType::kNBirth}, {"NDEATH", MessageType::kNDeath},
      {"DBIRTH", MessageType::kDBirth}, {"DDEATH", MessageType::kDDeath},
      {"NDATA", MessageType::kNData},   {"DDATA", MessageType::kDData},
      {"NCMD", MessageType::kNCmd},     {"DCMD", MessageType::kDCmd},
  };
  const auto it = std::find_if(std::begin(kTypes), std::end(kTypes),
                               [&](const auto& t) { return t.first == type; });
  if (it == std::end(kTypes)) return false;
  const bool device_level = it->second == MessageType::kDBirth ||
                            it->second == MessageType::kDDeath ||
                            it->second == MessageType::kDData || it->second == MessageType::kDCmd;
  if (n != (device_level ? 4u : 3u)) return false;
  out.group = parts[0];
  out.type = it->second;
  out.edge_node = parts[2];
  out.device = device_level ? parts[3] : std::string_view();
  return true;
}

struct Host::Impl {
  HostOptions opts;
  StateStore* store;
  std::map<std::string, Node, std::less<>> nodes;  // key: group + '/' + edge_node
  HostCounters counters;
  // Scratch.
  Arena arena;
  Series series;
  Decoded decoded;
  std::string key;

  Impl(HostOptions o, StateStore* s) : opts(o), store(s) { decoded.values.resize(1); }

  Node* node(const Topic& t) {
    key.assign(t.group).append("/").append(t.edge_node);
    if (auto it = nodes.find(key); it != nodes.end()) return &it->second;
    if (nodes.size() >= opts.max_nodes) return nullptr;
    Node& n = nodes[key];
    n.group = t.group;
    n.edge_node = t.edge_node;
    if (store) {
      if (auto v = store->get(stateKey(t.group, t.edge_node))) {
        Node restored;
        restored.group = n.group;
        restored.edge_node = n.edge_node;
        if (decodeNode(*v, restored)) n = std::move(restored);
      }
    }
    return &n;
  }

  void persist(const Node& n) {
    if (store) store->put(stateKey(n.group, n.edge_node), encodeNode(n));
  }

  void askRebirth(Node& n, Nanos now, std::string why, HostOutput& out) {
    if (n.last_rebirth && now - *n.last_rebirth < opts.rebirth_interval) {
      if (!n.rebirth_due) n.rebirth_why = std::move(why);
      n.rebirth_due = true;
      return;
    }
    n.rebirth_due = false;
    n.last_rebirth = now;
    ++counters.rebirths_requested;
    out.rebirth(n.group, n.edge_node, why);
  }

  /// seq bookkeeping for every message of the node but NDEATH.
  void trackSeq(Node& n, const PbPayload& p, Nanos now) {
    if (!p.has_seq) return;
    const int s = static_cast<int>(p.seq % 256);
    if (!n.next_seq) {
      n.next_seq = (s + 1) % 256;
      return;
    }
    const int d = (s - *n.next_seq + 256) % 256;
    if (d == 0) {
      n.next_seq = (s + 1) % 256;
    } else if (d < 128) {  // ahead: the seqs in between are missing (for now)
      ++counters.seq_gaps;
      for (int i = *n.next_seq; i != s; i = (i + 1) % 256) n.missing.insert(i);
      n.next_seq = (s + 1) % 256;
      if (!n.gap_deadline) n.gap_deadline = now + opts.reorder_timeout;
    } else {
      n.missing.erase(s);  // a late one (or a duplicate)
    }
    if (n.missing.empty()) n.gap_deadline.reset();
  }

  /// A birth's names, aliases and types into `b`.
  void bind(Birth& b, const PbPayload& p) {
    for (size_t i = 0; i < p.n_metrics; ++i) {
      const PbMetric* m = p.metrics[i];
      if (!m || !m->name || !*m->name) continue;
      const std::uint32_t type = m->has_datatype ? m->datatype : kUnknown;
      if (m->has_alias && b.aliases.size() < opts.max_aliases)
        b.aliases[m->alias] = {m->name, type};
      if (b.types.size() < opts.max_aliases) b.types[m->name] = type;
    }
  }

  void emit(const Topic& t, Node* n, Birth* b, const PbPayload& p, Nanos now, HostOutput& out) {
    series.device.assign(t.edge_node);
    if (!t.device.empty()) series.device.append("/").append(t.device);
    const std::optional<Nanos> payload_time =
        p.has_timestamp ? msToNanos(p.timestamp) : std::nullopt;
    bool unknown = false;
    for (size_t i = 0; i < p.n_metrics; ++i) {
      const PbMetric* m = p.metrics[i];
      if (!m) continue;
      std::uint32_t type = m->has_datatype ? m->datatype : kUnknown;
      const char* name = m->name && *m->name ? m->name : nullptr;
      if (name && t.device.empty() && std::strcmp(name, "bdSeq") == 0) continue;
      if (!name && m->has_alias && b) {
        if (auto it = b->aliases.find(m->alias); it != b->aliases.end()) {
          series.metric.assign(it->second.name);
          if (type == kUnknown) type = it->second.datatype;
        } else {
          series.metric = fmt::format("alias:{}", m->alias);
          unknown = true;
        }
      } else if (name) {
        series.metric.assign(name);
        if (type == kUnknown && b) {
          if (auto it = b->types.find(series.metric); it != b->types.end()) type = it->second;
        }
      } else if (m->has_alias) {
        series.metric = fmt::format("alias:{}", m->alias);
        unknown = true;
      } else {
        out.skipped("no_name");
        continue;
      }
      const char* why = nullptr;
      const auto value = metricValue(*m, type, why);
      if (!value) {
        out.skipped(why);
        continue;
      }
      if (!std::isfinite(*value)) {
        out.skipped("not_finite");
        continue;
      }
      series.tags.clear();
      series.tags.emplace_back("group", t.group);
      if (auto q = quality(*m); q && *q != kQualityGood)
        series.tags.emplace_back("quality", std::to_string(*q));
      decoded.device_time = m->has_timestamp ? msToNanos(m->timestamp) : payload_time;
      decoded.bad_timestamp = false;
      decoded.values[0] = DecodedValue{{}, *value};
      const bool historical = m->has_is_historical && m->is_historical;
      if (historical) ++counters.historical;
      decoded.historical = historical;
      out.reading(series, decoded, historical);
    }
    if (unknown) {
      ++counters.unknown_alias;
      if (n) askRebirth(*n, now, "DATA with an alias no birth has bound", out);
    }
  }

  const char* handle(std::string_view topic, std::string_view payload, Nanos now, HostOutput& out) {
    Topic t;
    if (!parseTopic(topic, t)) return "sparkplug_topic";
    if (t.type == MessageType::kNCmd || t.type == MessageType::kDCmd) return nullptr;  // ours
    Unpacked u{arena};
    u.p = gw__sparkplug__pb__payload__unpack(arena.allocator(), payload.size(),
                                             reinterpret_cast<const uint8_t*>(payload.data()));
    if (!u.p) return "sparkplug_payload";
    const PbPayload& p = *u.p;
    Node* n = node(t);
    std::string device_name;
    if (!t.device.empty()) device_name = fmt::format("{}/{}", t.edge_node, t.device);
    switch (t.type) {
      case MessageType::kNBirth: {
        if (!n) return emitUntracked(t, p, now, out);
        ++counters.births;
        n->bd_seq.reset();
        for (size_t i = 0; i < p.n_metrics; ++i) {
          const PbMetric* m = p.metrics[i];
          if (m && m->name && std::strcmp(m->name, "bdSeq") == 0) {
            if (m->value_case == GW__SPARKPLUG__PB__METRIC__VALUE_LONG_VALUE)
              n->bd_seq = m->long_value;
            else if (m->value_case == GW__SPARKPLUG__PB__METRIC__VALUE_INT_VALUE)
              n->bd_seq = m->int_value;
          }
        }
        // A new NBIRTH starts over: its devices send new DBIRTHs.
        n->node = Birth{};
        n->node.seen = n->node.online = true;
        for (auto& [name, b] : n->devices)
          if (b.online) out.online(fmt::format("{}/{}", t.edge_node, name), false);
        n->devices.clear();
        n->next_seq.reset();
        n->missing.clear();
        n->gap_deadline.reset();
        n->rebirth_due = false;
        trackSeq(*n, p, now);
        out.online(t.edge_node, true);
        // Bound and put before the readings: whichever commit takes them also takes the
        // births, so an acknowledged birth is never lost to a crash.
        bind(n->node, p);
        persist(*n);
        emit(t, n, &n->node, p, now, out);
        return nullptr;
      }
      case MessageType::kDBirth: {
        if (!n) return emitUntracked(t, p, now, out);
        ++counters.births;
        trackSeq(*n, p, now);
        if (n->devices.size() >= opts.max_devices && !n->devices.count(t.device)) {
          emit(t, n, nullptr, p, now, out);  // by name only: its births are not kept
          return nullptr;
        }
        Birth& b = n->devices[std::string(t.device)];
        b = Birth{};
        b.seen = b.online = true;
        out.online(device_name, true);
        bind(b, p);
        persist(*n);
        emit(t, n, &b, p, now, out);
        if (!n->node.seen) askRebirth(*n, now, "DBIRTH without a known NBIRTH", out);
        return nullptr;
      }
      case MessageType::kNData:
      case MessageType::kDData: {
        if (!n) return emitUntracked(t, p, now, out);
        trackSeq(*n, p, now);
        Birth* b = &n->node;
        if (!t.device.empty()) {
          auto it = n->devices.find(t.device);
          b = it == n->devices.end() ? nullptr : &it->second;
        }
        emit(t, n, b, p, now, out);
        if (!n->node.seen || !b || !b->seen)
          askRebirth(
              *n, now,
              t.device.empty() ? "NDATA without a known NBIRTH" : "DDATA without a known DBIRTH",
              out);
        return nullptr;
      }
      case MessageType::kNDeath: {
        if (!n) return nullptr;
        std::optional<std::uint64_t> bd;
        for (size_t i = 0; i < p.n_metrics; ++i) {
          const PbMetric* m = p.metrics[i];
          if (m && m->name && std::strcmp(m->name, "bdSeq") == 0) {
            if (m->value_case == GW__SPARKPLUG__PB__METRIC__VALUE_LONG_VALUE) bd = m->long_value;
            if (m->value_case == GW__SPARKPLUG__PB__METRIC__VALUE_INT_VALUE) bd = m->int_value;
          }
        }
        if (bd && n->bd_seq && *bd != *n->bd_seq) {
          ++counters.stale_deaths;  // the Will of an older session
          return nullptr;
        }
        ++counters.deaths;
        n->node.online = false;
        out.online(t.edge_node, false);
        for (auto& [name, b] : n->devices) {
          if (!b.online) continue;
          b.online = false;
          out.online(fmt::format("{}/{}", t.edge_node, name), false);
        }
        n->next_seq.reset();
        n->missing.clear();
        n->gap_deadline.reset();
        return nullptr;
      }
      case MessageType::kDDeath: {
        if (!n) return nullptr;
        trackSeq(*n, p, now);
        ++counters.deaths;
        if (auto it = n->devices.find(t.device); it != n->devices.end()) it->second.online = false;
        out.online(device_name, false);
        return nullptr;
      }
      default:
        return nullptr;
    }
  }

  /// Past max_nodes: readings by name only, nothing kept.
  const char* emitUntracked(const Topic& t, const PbPayload& p, Nanos now, HostOutput& out) {
    emit(t, nullptr, nullptr, p, now, out);
    return nullptr;
  }

  void tick(Nanos now, HostOutput& out) {
    for (auto& [k, n] : nodes) {
      if (n.gap_deadline && now >= *n.gap_deadline) {
        n.gap_deadline.reset();
        const size_t missing = n.missing.size();
        n.missing.clear();
        askRebirth(n, now, fmt::format("{} seq number(s) missing after reorder_timeout", missing),
                   out);
      }
      if (n.rebirth_due && n.last_rebirth && now - *n.last_rebirth >= opts.rebirth_interval)
        askRebirth(n, now, n.rebirth_why, out);
    }
  }

  std::optional<Nanos> nextDeadline() const {
    std::optional<Nanos> next;
    const auto consider = [&](Nanos t) {
      if (!next || t < *next) next = t;
    };
    for (const auto& [k, n] : nodes) {
      if (n.gap_deadline) consider(*n.gap_deadline);
      if (n.rebirth_due && n.last_rebirth) consider(*n.last_rebirth + opts.rebirth_interval);
    }
    return next;
  }
};

Host::Host(HostOptions options, StateStore* store)
    : impl_(std::make_unique<Impl>(options, store)) {}
Host::~Host() = default;

const char* Host::handle(std::string_view topic, std::string_view payload, Nanos now,
                         HostOutput& out) {
  return impl_->handle(topic, payload, now, out);
}
void Host::tick(Nanos now, HostOutput& out) { impl_->tick(now, out); }
std::optional<Nanos> Host::nextDeadline() const { return impl_->nextDeadline(); }
HostCounters Host::counters() const {
  HostCounters c = impl_->counters;
  c.nodes = impl_->nodes.size();
  return c;
}

std::string rebirthPayload(std::uint64_t timestamp_ms) {
  Gw__Sparkplug__Pb__Metric m = GW__SPARKPLUG__PB__METRIC__INIT;
  m.name = const_cast<char*>("Node Control/Rebirth");
  m.has_timestamp = true;
  m.timestamp = timestamp_ms;
  m.has_datatype = true;
  m.datatype = kBoolean;
  m.value_case = GW__SPARKPLUG__PB__METRIC__VALUE_BOOLEAN_VALUE;
  m.boolean_value = 1;
  Gw__Sparkplug__Pb__Metric* metrics[] = {&m};
  Gw__Sparkplug__Pb__Payload p = GW__SPARKPLUG__PB__PAYLOAD__INIT;
  p.has_timestamp = true;
  p.timestamp = timestamp_ms;
  p.n_metrics = 1;
  p.metrics = metrics;
  std::string out(gw__sparkplug__pb__payload__get_packed_size(&p), '\0');
  gw__sparkplug__pb__payload__pack(&p, reinterpret_cast<uint8_t*>(out.data()));
  return out;
}

std::string statePayload(bool online, std::uint64_t timestamp_ms) {
  return fmt::format(R"({{"online":{},"timestamp":{}}})", online ? "true" : "false", timestamp_ms);
}

}  // namespace gw::sparkplug
