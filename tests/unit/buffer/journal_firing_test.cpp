// The firing alerts as journal rows (issue 13): a change of one alert among 100,000 firing
// writes one row, in the transaction of its outbox event; an older journal's 'alerts.firing'
// state becomes rows.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <filesystem>
#include <map>
#include <string>

#include "buffer/journal.h"
#include "tests/support/sqlite_connection.h"
#include "tests/support/temp_dir.h"

using namespace gw;
using namespace gw::buffer;
namespace fs = std::filesystem;

namespace {

constexpr Nanos kT0 = 1'795'256'130 * kNanosPerSecond;
const Series kFan{"fan-2", "rpm", {}};

JournalOptions optionsAt(const fs::path& db) {
  JournalOptions o;
  o.path = db;
  o.sinks = {"notify.pager"};
  return o;
}

std::map<std::string, std::string> firing(Journal& j) {
  std::map<std::string, std::string> out;
  REQUIRE(j.forEachFiring([&](std::string_view k, std::string_view v) {
    CHECK(out.emplace(std::string(k), std::string(v)).second);  // each key once
  }));
  return out;
}

using Db = gw::test::SqliteConnection;

std::string eventJson(int i, const char* state = "firing") {
  return "{\"rule\":\"silent\",\"device\":\"fan-" + std::to_string(i) + "\",\"state\":\"" + state +
         "\",\"dedup_key\":\"gw/silent/fan-" + std::to_string(i) + "/rpm/\"}";
}
std::string keyOf(int i) { return "gw/silent/fan-" + std::to_string(i) + "/rpm/"; }

std::uintmax_t walBytes(const fs::path& db) {
  std::error_code ec;
  const auto n = fs::file_size(fs::path(db) += "-wal", ec);
  return ec ? 0 : n;
}

}  // namespace

TEST_CASE("firing rows: put and remove go with the next commit and survive a reopen") {
  gw::test::TempDir dir("gw-firing");
  const fs::path db = dir.path / "journal.db";
  {
    auto j = Journal::open(optionsAt(db));
    j->putFiring(keyOf(1), eventJson(1));
    j->putFiring(keyOf(2), eventJson(2));
    j->putFiring(keyOf(3), eventJson(3));
    j->removeFiring(keyOf(3));  // fired and resolved before the commit: no row at all
    CHECK(firing(*j) ==
          std::map<std::string, std::string>{{keyOf(1), eventJson(1)}, {keyOf(2), eventJson(2)}});
    REQUIRE(j->commit());
    j->removeFiring(keyOf(1));
    j->putFiring(keyOf(2), eventJson(2, "firing again"));
    // Pending changes over the committed rows.
    CHECK(firing(*j) ==
          std::map<std::string, std::string>{{keyOf(2), eventJson(2, "firing again")}});
    REQUIRE(j->commit());
  }
  auto j = Journal::open(optionsAt(db));
  CHECK(firing(*j) == std::map<std::string, std::string>{{keyOf(2), eventJson(2, "firing again")}});
  // What the visitor changes while it is called is applied, and what it puts is not visited.
  int visits = 0;
  REQUIRE(j->forEachFiring([&](std::string_view k, std::string_view v) {
    ++visits;
    j->removeFiring(k);
    j->putFiring("moved/" + std::string(k), v);
  }));
  CHECK(visits == 1);
  REQUIRE(j->commit());
  CHECK(firing(*j) ==
        std::map<std::string, std::string>{{"moved/" + keyOf(2), eventJson(2, "firing again")}});
}

TEST_CASE("a firing row and its outbox event are committed in one transaction or not at all") {
  gw::test::TempDir dir("gw-firing");
  const fs::path db = dir.path / "journal.db";
  auto j = Journal::open(optionsAt(db));
  const SeriesId id = j->internSeries(kFan);
  REQUIRE(j->commit());
  j->appendAlert(id, kT0, 75, eventJson(1));
  j->putFiring(keyOf(1), eventJson(1));
  {
    Db lock(db);  // another process holds the write lock: the commit fails
    REQUIRE(lock.exec("BEGIN IMMEDIATE") == SQLITE_OK);
    CHECK_FALSE(j->commit());
    REQUIRE(lock.exec("COMMIT") == SQLITE_OK);
  }
  {
    Db other(db);
    CHECK(other.queryInt("SELECT count(*) FROM alert_firing") == 0);
    CHECK(other.queryInt("SELECT count(*) FROM r_0 WHERE k = 2") == 0);
  }
  REQUIRE(j->commit());  // both kept pending, both written now
  Db other(db);
  CHECK(other.queryInt("SELECT count(*) FROM alert_firing") == 1);
  CHECK(other.queryInt("SELECT count(*) FROM r_0 WHERE k = 2") == 1);
}

TEST_CASE("one alert changing among 100,000 firing writes one row, not the set") {
  gw::test::TempDir dir("gw-firing");
  const fs::path db = dir.path / "journal.db";
  constexpr int kFiring = 100'000;
  JournalOptions o = optionsAt(db);
  o.wal_checkpoint_bytes = 1ull << 30;  // no checkpoint: the -wal grows by what each commit writes
  auto j = Journal::open(o);
  const SeriesId id = j->internSeries(kFan);
  for (int i = 0; i < kFiring; ++i) {
    j->appendAlert(id, kT0, 75, eventJson(i));
    j->putFiring(keyOf(i), eventJson(i));
    if (j->pending() >= 5000) REQUIRE(j->commit());
  }
  REQUIRE(j->commit());
  Db audit(db);
  // Every row written to alert_firing counted, whichever statement writes it.
  REQUIRE(audit.exec("PRAGMA wal_autocheckpoint = 0") == SQLITE_OK);  // keeps the -wal growing
  REQUIRE(audit.exec("CREATE TABLE audit(n INTEGER NOT NULL);"
                     "CREATE TRIGGER a_ins AFTER INSERT ON alert_firing BEGIN "
                     "INSERT INTO audit VALUES(1); END;"
                     "CREATE TRIGGER a_del AFTER DELETE ON alert_firing BEGIN "
                     "INSERT INTO audit VALUES(1); END;"
                     "CREATE TRIGGER a_upd AFTER UPDATE ON alert_firing BEGIN "
                     "INSERT INTO audit VALUES(1); END;") == SQLITE_OK);
  CHECK(audit.queryInt("SELECT count(*) FROM alert_firing") == kFiring);

  const auto wal_before = walBytes(db);
  j->appendAlert(id, kT0 + kNanosPerSecond, 80, eventJson(77, "resolved"));
  j->removeFiring(keyOf(77));
  REQUIRE(j->commit());
  const auto one_change = walBytes(db) - wal_before;
  CHECK(audit.queryInt("SELECT count(*) FROM audit") == 1);
  CHECK(audit.queryInt("SELECT count(*) FROM alert_firing") == kFiring - 1);
  // A few pages (the b-tree path to the row, the outbox row, page 1), not the ~10 MB set.
  CHECK(one_change < 64 * 1024);
  MESSAGE("WAL bytes for one change among 100,000 firing: " << one_change);

  // What the set as one state value (schema 5) wrote for the same change, for comparison.
  std::string set;
  for (int i = 0; i < kFiring; ++i) set += eventJson(i) + "\n";
  j->putState("alerts.firing", set);
  REQUIRE(j->commit());
  const auto wal_mid = walBytes(db);
  set.replace(set.find("fan-77"), 6, "fan-7x");
  j->putState("alerts.firing", set);
  REQUIRE(j->commit());
  CHECK(walBytes(db) - wal_mid > 100 * one_change);
}

TEST_CASE("a version 5 journal's 'alerts.firing' state becomes rows, and the state goes") {
  gw::test::TempDir dir("gw-firing");
  const fs::path db = dir.path / "journal.db";
  {
    auto j = Journal::open(optionsAt(db));
    j->internSeries(kFan);
    REQUIRE(j->commit());
  }
  {
    // Schema 5: no alert_firing; the set in one state value, as gatewayd 5 wrote it.
    Db v5(db);
    REQUIRE(v5.exec("DROP TABLE alert_firing; PRAGMA user_version = 5;") == SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(v5.db, "INSERT INTO state(k, v) VALUES('alerts.firing', ?)", -1, &s,
                               nullptr) == SQLITE_OK);
    const std::string set = eventJson(1) + "\n" + eventJson(2) + "\nnot json\n";
    sqlite3_bind_blob(s, 1, set.data(), static_cast<int>(set.size()), SQLITE_TRANSIENT);
    REQUIRE(sqlite3_step(s) == SQLITE_DONE);
    sqlite3_finalize(s);
    REQUIRE(v5.exec("INSERT INTO state(k, v) VALUES('windows', '1 2')") == SQLITE_OK);
  }
  auto j = Journal::open(optionsAt(db));
  CHECK(firing(*j) == std::map<std::string, std::string>{{keyOf(1), eventJson(1)},
                                                         {keyOf(2), eventJson(2)},
                                                         {"unreadable-3", "not json"}});
  CHECK_FALSE(j->state("alerts.firing").has_value());
  CHECK(j->state("windows") == "1 2");
  Db check(db);
  CHECK(check.queryInt("PRAGMA user_version") == 8);
  CHECK(check.queryInt("SELECT count(*) FROM state WHERE k = 'alerts.firing'") == 0);
  // The upgraded schema is the new one.
  CHECK(check.queryInt("SELECT count(*) FROM sqlite_master WHERE name = 'alert_firing' AND sql = "
                       "'CREATE TABLE alert_firing(k TEXT PRIMARY KEY, x BLOB NOT NULL) WITHOUT "
                       "ROWID'") == 1);
}
