#include "core/config/section.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/log.h"
#include "core/secret.h"

namespace gw::config {

namespace fs = std::filesystem;

struct Section::Document {
  toml::table root;
  std::string file;
  fs::path base;
  mutable std::vector<PathRef> paths;  // what path() resolved, in reading order
};

namespace {

const toml::table& tableOf(const void* p) { return *static_cast<const toml::table*>(p); }

int lineOfNode(const toml::node& n) { return static_cast<int>(n.source().begin.line); }

}  // namespace

Section::Section(std::shared_ptr<const Document> doc, const void* table, std::string path, int line)
    : doc_(std::move(doc)),
      table_(table),
      path_(std::move(path)),
      line_(line),
      used_(std::make_shared<std::set<std::string, std::less<>>>()) {}

Section Section::parseFile(const fs::path& file) { return parseDocument(file, nullptr); }

Section Section::parse(std::string_view text, const fs::path& file) {
  return parseDocument(file, &text);
}

Section Section::parseDocument(const fs::path& file, const std::string_view* text) {
  auto doc = std::make_shared<Document>();
  doc->file = file.string();
  doc->base = fs::absolute(file).parent_path();
  try {
    doc->root = text ? toml::parse(*text, doc->file) : toml::parse_file(doc->file);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    if (src.begin.line == 0)  // could not open
      throw ConfigError(fmt::format("{}:0: (file): {}", doc->file, e.description()));
    throw ConfigError(
        fmt::format("{}:{}: (syntax): {}", doc->file, src.begin.line, e.description()));
  }
  const void* root = &doc->root;
  return Section(std::move(doc), root, "", 1);
}

const std::string& Section::file() const { return doc_->file; }
const fs::path& Section::base() const { return doc_->base; }

std::string Section::join(std::string_view key) const {
  return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
}

const void* Section::node(std::string_view key) const { return tableOf(table_).get(key); }

const void* Section::mark(std::string_view key) {
  used_->insert(std::string(key));
  return node(key);
}

int Section::lineOf(std::string_view key) const {
  const auto* n = static_cast<const toml::node*>(node(key));
  return n ? lineOfNode(*n) : line_;
}

void Section::fail(std::string_view key, std::string_view reason) const {
  failAt(lineOf(key), key, reason);
}

void Section::failElement(std::string_view key, size_t index, std::string_view reason) const {
  const auto* n = static_cast<const toml::node*>(node(key));
  int line = n ? lineOfNode(*n) : line_;
  if (n && n->is_array() && index < n->as_array()->size())
    line = lineOfNode(*n->as_array()->get(index));
  failAt(line, key, reason);
}

void Section::failAt(int line, std::string_view key, std::string_view reason) const {
  throw ConfigError(
      fmt::format("{}:{}: {}: {}", file(), line, key.empty() ? path_ : join(key), reason));
}

bool Section::has(std::string_view key) const { return node(key) != nullptr; }
void Section::take(std::string_view key) { mark(key); }
bool Section::isString(std::string_view key) const {
  const auto* n = static_cast<const toml::node*>(node(key));
  return n != nullptr && n->is_string();
}

std::optional<std::string> Section::str(std::string_view key) {
  const auto* n = static_cast<const toml::node*>(mark(key));
  if (!n) return std::nullopt;
  if (!n->is_string()) fail(key, "expected a string");
  return std::string(*n->value<std::string_view>());
}

std::string Section::str(std::string_view key, std::string def) {
  return str(key).value_or(std::move(def));
}

std::string Section::requiredStr(std::string_view key) {
  auto v = str(key);
  if (!v) fail(key, "is required");
  if (v->empty()) fail(key, "must not be empty");
  return *v;
}

std::optional<std::int64_t> Section::integer(std::string_view key, std::int64_t min,
                                             std::int64_t max) {
  const auto* n = static_cast<const toml::node*>(mark(key));
  if (!n) return std::nullopt;
  if (!n->is_integer()) fail(key, "expected an integer");
  const std::int64_t v = *n->value<std::int64_t>();
  if (v < min || v > max) fail(key, fmt::format("must be between {} and {}", min, max));
  return v;
}

std::optional<bool> Section::boolean(std::string_view key) {
  const auto* n = static_cast<const toml::node*>(mark(key));
  if (!n) return std::nullopt;
  if (!n->is_boolean()) fail(key, "expected true or false");
  return *n->value<bool>();
}

std::optional<double> Section::number(std::string_view key) {
  const auto* n = static_cast<const toml::node*>(mark(key));
  if (!n) return std::nullopt;
  if (!n->is_number()) fail(key, "expected a number");
  return *n->value<double>();
}

std::optional<Nanos> Section::duration(std::string_view key, Nanos min) {
  const auto* n = static_cast<const toml::node*>(mark(key));
  if (!n) return std::nullopt;
  if (!n->is_string()) fail(key, "expected a duration string such as \"50ms\", \"10s\", \"1h\"");
  auto v = parseDuration(*n->value<std::string_view>());
  if (!v) fail(key, "not a duration (use a number and a unit: ns, us, ms, s, m, h, d)");
  if (*v < min) fail(key, fmt::format("must be at least {}ms", min / kNanosPerMilli));
  return v;
}

std::optional<std::uint64_t> Section::size(std::string_view key) {
  const auto* n = static_cast<const toml::node*>(mark(key));
  if (!n) return std::nullopt;
  if (n->is_integer() && *n->value<std::int64_t>() > 0)
    return static_cast<std::uint64_t>(*n->value<std::int64_t>());
  if (!n->is_string()) fail(key, "expected a size such as \"512MiB\"");
  auto v = parseSize(*n->value<std::string_view>());
  if (!v || *v == 0) fail(key, "not a size (use e.g. \"64KiB\", \"512MiB\", \"1GiB\")");
  return v;
}

std::optional<fs::path> Section::path(std::string_view key) {
  auto v = str(key);
  if (!v) return std::nullopt;
  if (v->empty()) fail(key, "must not be empty");
  fs::path p(*v);
  if (!p.is_absolute()) p = base() / p;
  doc_->paths.push_back({join(key), lineOf(key), p});
  return p;
}

std::vector<PathRef> Section::paths() const { return doc_->paths; }

std::optional<std::string> Section::secretFile(std::string_view key) {
  const auto p = path(key);
  if (!p) return std::nullopt;
  // The one secret reader (size cap, permission warning), errors naming the file only.
  LoadedSecret secret = readSecretFile(*p);
  if (!secret.ok()) fail(key, secret.error);
  if (!secret.warning.empty()) log::warn("{}: {}", join(key), secret.warning);
  return std::move(secret.value);
}

std::optional<std::vector<std::string>> Section::strings(std::string_view key, bool single_ok) {
  const auto* n = static_cast<const toml::node*>(mark(key));
  if (!n) return std::nullopt;
  std::vector<std::string> out;
  if (single_ok && n->is_string()) {
    out.emplace_back(*n->value<std::string_view>());
    return out;
  }
  if (!n->is_array()) fail(key, "expected an array");
  const toml::array& arr = *n->as_array();
  for (size_t i = 0; i < arr.size(); ++i) {
    const toml::node& item = *arr.get(i);
    if (!item.is_string()) failElement(key, i, "entries must be strings");
    out.emplace_back(*item.value<std::string_view>());
  }
  return out;
}

std::optional<Section> Section::table(std::string_view key) {
  const auto* n = static_cast<const toml::node*>(mark(key));
  if (!n) return std::nullopt;
  if (!n->is_table()) fail(key, "expected a table");
  return Section(doc_, n->as_table(), join(key), lineOfNode(*n));
}

std::vector<Section> Section::tables(std::string_view key) {
  std::vector<Section> out;
  const auto* n = static_cast<const toml::node*>(mark(key));
  if (!n) return out;
  if (!n->is_array()) fail(key, "expected an array");
  const toml::array& arr = *n->as_array();
  for (size_t i = 0; i < arr.size(); ++i) {
    const toml::node& item = *arr.get(i);
    const std::string name = fmt::format("{}[{}]", key, i);
    if (!item.is_table())
      failAt(lineOfNode(item), name, fmt::format("expected a table ([[{}]])", join(key)));
    out.push_back(Section(doc_, item.as_table(), join(name), lineOfNode(item)));
  }
  return out;
}

std::optional<std::vector<Entry>> Section::entries(std::string_view key, bool scalars_ok) {
  const auto* n = static_cast<const toml::node*>(mark(key));
  if (!n) return std::nullopt;
  if (!n->is_table()) fail(key, "expected a table");
  std::vector<Entry> out;
  for (auto&& [k, v] : *n->as_table()) {
    Entry e;
    e.key = std::string(k.str());
    e.line = lineOfNode(v);
    if (v.is_string()) {
      e.text = *v.value<std::string>();
    } else if (scalars_ok && v.is_integer()) {
      e.text = std::to_string(*v.value<std::int64_t>());
      e.is_string = false;
    } else if (scalars_ok && v.is_boolean()) {
      e.text = *v.value<bool>() ? "true" : "false";
      e.is_string = false;
    } else {
      failAt(e.line, fmt::format("{}.{}", key, e.key),
             scalars_ok ? "expected a string, integer or boolean" : "expected a string");
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<std::string> Section::keys() const {
  std::vector<std::string> out;
  for (auto&& [k, v] : tableOf(table_)) out.emplace_back(k.str());
  return out;
}

void Section::done() const {
  for (auto&& [k, v] : tableOf(table_)) {
    if (used_->count(k.str())) continue;
    failAt(static_cast<int>(k.source().begin.line), k.str(), "unknown key");
  }
}

}  // namespace gw::config
