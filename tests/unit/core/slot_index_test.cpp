// core/slot_index.h: no step of the index holds the event loop (issue 13: growing, erasing and
// renaming while the old table is drained stay a few slots of work each).
#include "core/slot_index.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <random>
#include <unordered_map>

namespace {

std::uint32_t hashOf(std::uint32_t key) { return key * 2654435761u; }

/// Resident bytes of this process (statm's second field, pages).
std::size_t residentBytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

/// Fills `index` with ids [from, to) whose key is `key[id]`.
void insertRange(gw::SlotIndex& index, std::vector<std::uint32_t>& key, std::uint32_t from,
                 std::uint32_t to) {
  for (std::uint32_t id = from; id < to; ++id) {
    key.push_back(id);
    index.insert(id, hashOf(id));
  }
}

}  // namespace

TEST_CASE("slot index: the doubling of a large table does not write the new table at once") {
  // 2^20 slots hold up to 838,860 entries; the next insert doubles to 2^21 slots (16 MiB). The
  // old code filled the new table in that insert (16 MiB of page faults: 6–10 ms per MiB on
  // this VM); now it is mapped and each page is written when an entry first lands on it.
  gw::SlotIndex index;
  std::vector<std::uint32_t> key;
  constexpr std::uint32_t kFull = (1u << 20) * 4 / 5;
  insertRange(index, key, 0, kFull);
  REQUIRE(index.slotCount() == (1u << 20));
  REQUIRE_FALSE(index.growing());
  const std::size_t before = residentBytes();
  insertRange(index, key, kFull, kFull + 1);  // the doubling
  const std::size_t after = residentBytes();
  CHECK(index.growing());
  CHECK(index.slotCount() == (1u << 21));
  MESSAGE("resident bytes added by the insert that doubled the index: ", after - before);
  CHECK(after - before < 1024 * 1024);  // filled at once: 16 MiB
  for (std::uint32_t k = 0; k <= kFull; k += 101)
    REQUIRE(index.find(hashOf(k), [k](std::uint32_t id) { return id == k; }) == k);
}

TEST_CASE("slot index: erase and rename while growing leave the old table to drain") {
  gw::SlotIndex index;
  std::uint32_t n = 0;
  while (!index.growing()) index.insert(n, hashOf(n)), ++n;
  const auto is = [](std::uint32_t want) {
    return [want](std::uint32_t id) { return id == want; };
  };
  // The old code drained the whole old table inside the first erase (an O(table) step).
  index.erase(3, hashOf(3));
  CHECK(index.growing());
  index.rename(n - 1, 3, hashOf(n - 1));  // the owner moved its last entry into the hole
  CHECK(index.growing());
  CHECK(index.size() == n - 1);
  CHECK(index.find(hashOf(3), is(3)) == gw::SlotIndex::kNone);
  CHECK(index.find(hashOf(n - 1), is(3)) == 3);
  CHECK(index.find(hashOf(n - 1), is(n - 1)) == gw::SlotIndex::kNone);
  for (std::uint32_t k = 0; k < n - 1; ++k)
    if (k != 3) REQUIRE(index.find(hashOf(k), is(k)) == k);
  // Draining by inserts: the erased entry does not come back, the renamed one stays renamed.
  std::uint32_t inserts = 0;
  while (index.growing()) index.insert(n + inserts, hashOf(n + inserts)), ++inserts;
  CHECK(inserts <= (n / gw::SlotIndex::kMovesPerInsert) * 2);
  CHECK(index.find(hashOf(3), is(3)) == gw::SlotIndex::kNone);
  CHECK(index.find(hashOf(n - 1), is(3)) == 3);
  CHECK(index.size() == n - 1 + inserts);
  // shrink() waits while growing (it would rehash everything at once): nothing changes then.
  gw::SlotIndex g;
  std::uint32_t m = 0;
  while (!g.growing()) g.insert(m, hashOf(m)), ++m;
  const std::size_t slots = g.slotCount();
  for (std::uint32_t k = 0; k < m; ++k) g.erase(k, hashOf(k));
  g.shrink();
  CHECK(g.growing());
  CHECK(g.slotCount() == slots);
  CHECK(g.size() == 0);
}

TEST_CASE("slot index: inserts, erases and renames across many doublings match a map") {
  // The owners' pattern (gateway/clock_table.cpp): ids are dense positions; an erase moves the
  // last entry into the hole (rename). Checked against std::unordered_map at every step.
  gw::SlotIndex index;
  std::vector<std::uint32_t> key_of;                       // id -> key
  std::unordered_map<std::uint32_t, std::uint32_t> id_of;  // key -> id
  std::mt19937 rng(13);
  std::uint32_t next_key = 0;
  bool saw_growing_erase = false;
  for (int step = 0; step < 300000; ++step) {
    const bool erase = !key_of.empty() && rng() % 4 == 0;
    if (!erase) {
      const std::uint32_t k = next_key++;
      const auto id = static_cast<std::uint32_t>(key_of.size());
      key_of.push_back(k);
      id_of[k] = id;
      index.insert(id, hashOf(k));
    } else {
      saw_growing_erase |= index.growing();
      const std::uint32_t id = rng() % key_of.size();
      const std::uint32_t k = key_of[id];
      index.erase(id, hashOf(k));
      id_of.erase(k);
      const auto last = static_cast<std::uint32_t>(key_of.size() - 1);
      if (id != last) {
        index.rename(last, id, hashOf(key_of[last]));
        key_of[id] = key_of[last];
        id_of[key_of[id]] = id;
      }
      key_of.pop_back();
      if (rng() % 64 == 0) index.shrink();
    }
    REQUIRE(index.size() == key_of.size());
    const auto found = [&](std::uint32_t k) {
      return index.find(hashOf(k), [&](std::uint32_t i) { return key_of[i] == k; });
    };
    if (step % 50000 == 0) {
      for (const auto& [k, id] : id_of) REQUIRE(found(k) == id);
    } else if (index.growing() && step % 97 == 0) {  // a sample of ids, old and new
      for (int i = 0; i < 64; ++i) {
        const auto id = static_cast<std::uint32_t>(rng() % key_of.size());
        REQUIRE(found(key_of[id]) == id);
      }
    }
    REQUIRE(found(next_key) == gw::SlotIndex::kNone);
  }
  for (const auto& [key, id] : id_of) {
    const std::uint32_t k = key;
    REQUIRE(index.find(hashOf(k), [&](std::uint32_t i) { return key_of[i] == k; }) == id);
  }
  CHECK(saw_growing_erase);
}
