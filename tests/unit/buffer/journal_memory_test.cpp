// The journal's memory (issue 16: RSS on a Pi): SQLite's page cache is bounded by the
// connections' cache_size, whatever the journal's size.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <vector>

#include "buffer/journal.h"
#include "tests/support/temp_dir.h"

using namespace gw;
using namespace gw::buffer;

namespace {
constexpr Nanos kT0 = 1'795'256'130 * kNanosPerSecond;
}

TEST_CASE(
    "journal: SQLite's memory stays bounded by the page cache while rows pile up and are read") {
  gw::test::TempDir dir("gw-journal-mem");
  sqlite3_int64 before = sqlite3_memory_used();
  {
    JournalOptions o;
    o.path = dir.path / "journal.db";
    o.sinks = {"a"};
    auto j = Journal::open(o);
    const SeriesId id = j->internSeries(Series{"press-7", "temperature", {{"line", "3"}}});
    // 400,000 rows (~14 MB of journal) that no sink confirms, read back as a sink would.
    std::vector<ReadingRecord> out;
    std::uint64_t cursor = 0;
    for (int i = 0; i < 400000; ++i) {
      const Nanos t = kT0 + static_cast<Nanos>(i) * kNanosPerMilli;
      j->append(id, i * 0.5, t, t - 20 * kNanosPerMilli, TimeReference::kBroker);
      if (j->pending() >= 500) {
        REQUIRE(j->commit());
        out.clear();
        j->read(cursor, 1000, out);
        if (!out.empty()) cursor = out.back().seq;
      }
    }
    REQUIRE(j->commit());
    const sqlite3_int64 used = sqlite3_memory_used() - before;
    sqlite3_int64 high = sqlite3_memory_highwater(0) - before;
    MESSAGE("SQLite heap with a 14 MB journal: ", used / 1024, " KiB (high-water ", high / 1024,
            " KiB)");
    // The page cache (PRAGMA cache_size = -1024 on each connection: 1 MiB of pages plus their
    // headers) and the schema and statements; with SQLite's default cache (2 MiB) this is ~2.6 MiB.
    CHECK(used <= 1800 * 1024);
  }
}
