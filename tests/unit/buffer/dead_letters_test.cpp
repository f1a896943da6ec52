#include "buffer/dead_letters.h"

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "buffer/journal.h"

using namespace gw;
using namespace gw::buffer;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "gw-dead-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path db() const { return path / "journal.db"; }
};

std::unique_ptr<Journal> openAt(const TempDir& dir) {
  JournalOptions o;
  o.path = dir.db();
  o.sinks = {"a"};
  return Journal::open(o);
}

DeadLetter letter(int i, std::string payload = "not json") {
  DeadLetter d;
  d.time = 1000 + i;
  d.source = "mqtt";
  d.where = "plant1/line3/pump-" + std::to_string(i) + "/temp";
  d.reason = "not_json";
  d.device = "pump-" + std::to_string(i);
  d.size = payload.size();
  d.excerpt = escapeExcerpt(payload);
  return d;
}

std::int64_t queryInt(const fs::path& db, const char* sql) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(h, sql, -1, &s, nullptr) == SQLITE_OK);
  std::int64_t v = -1;
  if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(h);
  return v;
}

}  // namespace

TEST_CASE("escapeExcerpt: printable as is, control bytes escaped, UTF-8 kept, cut with ...") {
  CHECK(escapeExcerpt("{\"v\": 1}") == "{\"v\": 1}");
  CHECK(escapeExcerpt("a\nb\tc\rd\\e") == "a\\nb\\tc\\rd\\\\e");
  CHECK(escapeExcerpt(std::string("\x00\x1b[31m\x7f", 7)) == "\\x00\\x1b[31m\\x7f");
  CHECK(escapeExcerpt("23.5 \xc2\xb0"
                      "C") ==
        "23.5 \xc2\xb0"
        "C");                                                 // °: valid UTF-8
  CHECK(escapeExcerpt("\xff\xfe\xc2") == "\\xff\\xfe\\xc2");  // not UTF-8
  CHECK(escapeExcerpt("\xc2\x9b"
                      "2J") == "\\xc2\\x9b2J");  // C1 CSI escaped
  CHECK(escapeExcerpt("abcdef", 4) == "abcd...");
  CHECK(escapeExcerpt("ab\xc2\xb0", 3) == "ab...");  // a character is never cut in two
  CHECK(escapeExcerpt("") == "");
}

TEST_CASE("dead letters are written with the next commit and survive a restart") {
  TempDir dir;
  {
    auto j = openAt(dir);
    j->addDeadLetter(letter(1));
    j->addDeadLetter(letter(2, "\x01\x02"));
    auto got = j->deadLetters(10);  // before the commit: from memory
    REQUIRE(got.size() == 2);
    CHECK(got[0].device == "pump-2");
    REQUIRE(j->commit());
  }
  CHECK(queryInt(dir.db(), "PRAGMA user_version") == 8);
  auto j = openAt(dir);
  auto got = j->deadLetters(10);
  REQUIRE(got.size() == 2);
  CHECK(got[0].device == "pump-2");  // newest first
  CHECK(got[0].excerpt == "\\x01\\x02");
  CHECK(got[0].size == 2);
  CHECK(got[0].id > got[1].id);
  CHECK(got[1].time == 1001);
  CHECK(got[1].source == "mqtt");
  CHECK(got[1].where == "plant1/line3/pump-1/temp");
  CHECK(got[1].reason == "not_json");
  CHECK(j->deadLetters(1).size() == 1);
}

TEST_CASE("the dead-letter table is capped by count and by bytes, oldest deleted first") {
  TempDir dir;
  auto j = openAt(dir);
  SUBCASE("count") {
    for (size_t i = 0; i < kDeadLetterMaxRows + 250; ++i) {
      j->addDeadLetter(letter(static_cast<int>(i), "x"));
      if (i % 100 == 0) REQUIRE(j->commit());
    }
    REQUIRE(j->commit());
    CHECK(queryInt(dir.db(), "SELECT count(*) FROM dead") ==
          static_cast<std::int64_t>(kDeadLetterMaxRows));
    const auto got = j->deadLetters(kDeadLetterMaxRows + 10);
    REQUIRE(got.size() == kDeadLetterMaxRows);
    CHECK(got.front().device == "pump-" + std::to_string(kDeadLetterMaxRows + 249));
    CHECK(got.back().device == "pump-250");
  }
  SUBCASE("bytes") {
    const std::string big(1000, 'z');  // an excerpt of kDeadLetterExcerpt bytes + "..."
    for (int i = 0; i < 5000; ++i) {
      DeadLetter d = letter(i, big);
      d.where = std::string(300, 'w');  // cut to kDeadLetterMaxWhere: ~380 bytes a letter
      j->addDeadLetter(d);
    }
    REQUIRE(j->commit());
    const auto bytes = queryInt(dir.db(),
                                "SELECT sum(length(source) + length(w) + length(reason) + "
                                "length(device) + length(x)) FROM dead");
    CHECK(bytes <= static_cast<std::int64_t>(kDeadLetterMaxBytes));
    CHECK(bytes > static_cast<std::int64_t>(kDeadLetterMaxBytes) - 400);
    const auto got = j->deadLetters(1);
    CHECK(got[0].device == "pump-4999");
    CHECK(got[0].size == 1000);
    CHECK(got[0].where.size() == kDeadLetterMaxWhere);
    CHECK(queryInt(dir.db(), "SELECT count(*) FROM dead") < 1000);  // the bytes cap held
  }
}

TEST_CASE("a version 3 journal gains the dead-letter table in place, its rows kept") {
  TempDir dir;
  {
    auto j = openAt(dir);
    Series s{"press-7", "temperature", {}};
    j->append(j->internSeries(s), 1.5, 1000, std::nullopt, TimeReference::kReceive);
    REQUIRE(j->commit());
  }
  {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(dir.db().c_str(), &h) == SQLITE_OK);
    REQUIRE(sqlite3_exec(h,
                         "DROP TABLE dead; DROP TABLE alert_firing; DROP INDEX r_0_alerts; "
                         "ALTER TABLE r_0 RENAME TO r; "
                         "CREATE INDEX r_alerts ON r(k) WHERE k = 2; PRAGMA user_version = 3;",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(h);
  }
  auto j = openAt(dir);
  CHECK(j->lastSeq() == 1);
  j->addDeadLetter(letter(1));
  REQUIRE(j->commit());
  CHECK(j->deadLetters(5).size() == 1);
  CHECK(queryInt(dir.db(), "PRAGMA user_version") == 8);
  CHECK(queryInt(dir.db(), "SELECT count(*) FROM r_0") == 1);
}
