// The strict config reader every component parses its own table with (conventions: "Config
// is declarative and strict"). A Section is one TOML table: each key read is marked, done()
// rejects the rest, and every error is `file:line: key: reason`. No TOML library type crosses
// this header, so a component's config code does not pull the parser into its build.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/time.h"

namespace gw::config {

/// A configuration error, already formatted as `file:line: key: reason`.
class ConfigError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr int kExitConfig = 78;  // EX_CONFIG

/// A value of a free-form table (`[kafka.properties]`, `headers = {…}`, `tags = {…}`), where
/// the keys are data rather than config names.
struct Entry {
  std::string key;
  std::string text;  ///< strings as they are; integers and booleans written out
  bool is_string = true;
  int line = 0;
};

/// A file or folder the config names (every Section::path), for checks beyond parsing.
struct PathRef {
  std::string key;  ///< dotted ("mqtt.password_file")
  int line = 0;
  std::filesystem::path path;  ///< resolved
};

class Section {
 public:
  /// Parses `file` and returns its top-level table; paths are relative to the file's folder.
  /// Throws ConfigError for a file that cannot be read or is not TOML.
  static Section parseFile(const std::filesystem::path& file);
  /// The same for a config already in memory, read as if it were `file` (the fuzz target).
  static Section parse(std::string_view text, const std::filesystem::path& file);

  [[noreturn]] void fail(std::string_view key, std::string_view reason) const;
  /// An error on element `index` of the array `key` (its own line).
  [[noreturn]] void failElement(std::string_view key, size_t index, std::string_view reason) const;
  /// An error at a given line (e.g. an Entry's).
  [[noreturn]] void failAt(int line, std::string_view key, std::string_view reason) const;

  /// True when the key is present (does not mark it read).
  bool has(std::string_view key) const;
  /// True when the key is present and a string (does not mark it read).
  bool isString(std::string_view key) const;
  /// Marks a key read without reading it (a key another part of the code reads).
  void take(std::string_view key);

  std::optional<std::string> str(std::string_view key);
  std::string str(std::string_view key, std::string def);
  /// Present and not empty.
  std::string requiredStr(std::string_view key);
  std::optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max);
  std::optional<bool> boolean(std::string_view key);
  /// An integer or a float.
  std::optional<double> number(std::string_view key);
  /// "50ms", "10s", "1h", at least `min`.
  std::optional<Nanos> duration(std::string_view key, Nanos min = 0);
  /// "512MiB" or a positive integer of bytes.
  std::optional<std::uint64_t> size(std::string_view key);
  /// A non-empty path, relative to the config file's folder unless absolute.
  std::optional<std::filesystem::path> path(std::string_view key);
  /// The content of the file named by `key` (a secret: a password, token or key), trailing
  /// newlines removed; the file's name, never its content, appears in errors.
  std::optional<std::string> secretFile(std::string_view key);
  /// An array of strings; with `single_ok` a lone string is taken as a list of one.
  std::optional<std::vector<std::string>> strings(std::string_view key, bool single_ok = false);
  /// A sub-table, or nullopt when absent.
  std::optional<Section> table(std::string_view key);
  /// An array of tables (`[[key]]`), each named `key[i]` in errors; empty when absent.
  std::vector<Section> tables(std::string_view key);
  /// A free-form table of scalars: string values, or also integers and booleans when
  /// `scalars_ok` (anything else is an error). Nullopt when absent.
  std::optional<std::vector<Entry>> entries(std::string_view key, bool scalars_ok = false);
  /// The keys of this table, in file order (for tables whose keys are names, e.g.
  /// `[notify.webhook.<name>]`).
  std::vector<std::string> keys() const;

  /// Throws for the first key that was never read: `unknown key`.
  void done() const;

  /// The dotted name of `key` in this table ("kafka.brokers").
  std::string join(std::string_view key) const;
  /// This table's dotted name ("kafka", "mqtt.subscribe[0]").
  const std::string& name() const { return path_; }
  const std::string& file() const;
  /// The config file's folder (relative paths are resolved against it).
  const std::filesystem::path& base() const;
  int line() const { return line_; }
  int lineOf(std::string_view key) const;
  /// Every path read so far through path() or secretFile(), from any Section of this file.
  std::vector<PathRef> paths() const;

 private:
  struct Document;
  Section(std::shared_ptr<const Document> doc, const void* table, std::string path, int line);
  static Section parseDocument(const std::filesystem::path& file, const std::string_view* text);
  const void* node(std::string_view key) const;
  const void* mark(std::string_view key);

  std::shared_ptr<const Document> doc_;
  const void* table_;  // the toml::table this Section reads (owned by doc_)
  std::string path_;
  int line_;
  std::shared_ptr<std::set<std::string, std::less<>>> used_;  // shared by copies
};

}  // namespace gw::config
