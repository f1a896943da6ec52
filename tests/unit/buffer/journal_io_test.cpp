// What the journal writes to the disk (issue 16): WAL frames per group commit, the checkpoint
// policy, and the WAL sync's rate (fsyncs per second).
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "buffer/journal.h"
#include "buffer/wal_syncer.h"
#include "buffer/wal_write_vfs.h"
#include "tests/support/temp_dir.h"

using namespace gw;
using namespace gw::buffer;
namespace fs = std::filesystem;

namespace {

constexpr Nanos kT0 = 1'795'256'130 * kNanosPerSecond;
// A new journal's page size and WAL frame (a 24-byte header and the page).
const std::uint64_t kPage = static_cast<std::uint64_t>(JournalOptions{}.new_page_size);
const std::uint64_t kFrame = kPage + 24;

struct TempDir : gw::test::TempDir {
  TempDir() : gw::test::TempDir("gw-journal-io") {}
  fs::path db() const { return path / "state" / "journal.db"; }
  fs::path wal() const { return path / "state" / "journal.db-wal"; }
};

struct FakeClock {
  Nanos now = kT0;
};

JournalOptions options(const TempDir& dir, FakeClock& clock) {
  JournalOptions o;
  o.path = dir.db();
  o.sinks = {"kafka", "windows"};
  o.clock = [&clock] { return clock.now; };
  return o;
}

/// Frames in a WAL that has only grown since it was created (no checkpoint reset it).
std::uint64_t walFrames(const TempDir& dir) {
  std::error_code ec;
  const auto size = fs::file_size(dir.wal(), ec);
  return ec || size < 32 ? 0 : (size - 32) / kFrame;
}

/// One group commit as the pipeline makes it at 10,000 readings/s: `n` readings of as many
/// devices, the windows' state (changed once per window), the sinks' cursors moved to what was
/// committed before.
void commitLikeThePipeline(Journal& j, FakeClock& clock, size_t n, std::uint64_t& i) {
  const std::uint64_t before = j.lastSeq();
  for (size_t k = 0; k < n; ++k, ++i) {
    const Nanos t = clock.now + static_cast<Nanos>(k) * 100'000 + 123'457;
    j.append(static_cast<SeriesId>(i % 1000), 20.0 + static_cast<double>(i % 997) * 0.173, t,
             t - 1'250'000 - static_cast<Nanos>(i % 89) * 1'000, TimeReference::kBroker);
  }
  // The pipeline persists the watermark lowered to the last window end (10 s windows): the row
  // changes once in 200 commits (putState() skips an unchanged value).
  const Nanos window_end = clock.now / (10 * kNanosPerSecond) * (10 * kNanosPerSecond);
  j.putState("windows", std::to_string(window_end) + " " + std::to_string(before / 5000 * 5000));
  j.setCursor("kafka", before);
  j.setCursor("windows", before);
  REQUIRE(j.commit());
  clock.now += 50 * kNanosPerMilli;
}

}  // namespace

TEST_CASE("a group commit writes its rows' pages and a few more, not a page per table it touches") {
  TempDir dir;
  FakeClock clock;
  auto j = Journal::open(options(dir, clock));
  for (int s = 0; s < 1000; ++s) j->internSeries(Series{"dev-" + std::to_string(s), "temp", {}});
  std::uint64_t i = 0;
  for (int c = 0; c < 20; ++c) commitLikeThePipeline(*j, clock, 500, i);  // warm: series, state
  const std::uint64_t frames0 = walFrames(dir), rows0 = j->lastSeq();
  const int commits = 200;  // 10 s at 20 commits a second
  for (int c = 0; c < commits; ++c) {
    commitLikeThePipeline(*j, clock, 500, i);
    if (c % 20 == 19) j->enforceRetention(clock.now);
  }
  const std::uint64_t frames = walFrames(dir) - frames0;
  const double row_pages =
      static_cast<double>(j->stats().used_bytes) / static_cast<double>(j->lastSeq() - rows0);
  INFO("frames per commit: " << static_cast<double>(frames) / commits);
  // Rows: ~36 bytes each, ~18 KB for 500 (4.4 pages of 4 KiB). Per commit besides them: the newest
  // leaf again (it was partly filled by the commit before), the interior page above it, page 1
  // (file size or free-list count), the free-list trunk. The state row (the windows' watermark)
  // changes only when a window end is passed, cursors are written once a second: a page per table
  // each commit would show here. In bytes, so that the bound is the same for any page size: the
  // rows and 16 KiB.
  const double wal_bytes_per_commit = static_cast<double>(frames * kPage) / commits;
  CHECK(wal_bytes_per_commit <= 500.0 * 36 + 4 * 4096);
  CHECK(row_pages > 0);
  // A WAL of this size (a few MiB) is not checkpointed: it only grew (see walFrames).
  CHECK(fs::file_size(dir.wal()) == 32 + walFrames(dir) * kFrame);
}

TEST_CASE("a group commit writes its WAL frames with one pwrite, not two per frame") {
  TempDir dir;
  FakeClock clock;
  auto j = Journal::open(options(dir, clock));
  for (int s = 0; s < 1000; ++s) j->internSeries(Series{"dev-" + std::to_string(s), "temp", {}});
  std::uint64_t i = 0;
  for (int c = 0; c < 20; ++c) commitLikeThePipeline(*j, clock, 500, i);
  const std::uint64_t frames0 = walFrames(dir);
  const WalWriteCounts w0 = walWriteCounts();
  const int commits = 100;
  for (int c = 0; c < commits; ++c) commitLikeThePipeline(*j, clock, 500, i);
  const WalWriteCounts w1 = walWriteCounts();
  const std::uint64_t frames = walFrames(dir) - frames0;
  INFO("frames " << frames << ", writes asked " << w1.requested - w0.requested << ", made "
                 << w1.written - w0.written);
  CHECK(frames >= 5 * commits);
  CHECK(w1.requested - w0.requested == 2 * frames);  // SQLite's header + page per frame
  CHECK(w1.written - w0.written == commits);         // ~10 frames, one write
}

TEST_CASE("the WAL is checkpointed at wal_checkpoint_bytes, not before") {
  TempDir dir;
  FakeClock clock;
  JournalOptions o = options(dir, clock);
  o.wal_checkpoint_bytes = 300 * kFrame;
  auto j = Journal::open(o);
  for (int s = 0; s < 1000; ++s) j->internSeries(Series{"dev-" + std::to_string(s), "t", {}});
  std::uint64_t i = 0;
  const auto db0 = fs::file_size(dir.db());
  while (walFrames(dir) < 250) commitLikeThePipeline(*j, clock, 500, i);
  j->enforceRetention(clock.now);         // also asks for a checkpoint once it is due
  CHECK(fs::file_size(dir.db()) == db0);  // below the threshold: nothing copied yet
  while (walFrames(dir) < 320) commitLikeThePipeline(*j, clock, 500, i);
  // Past it: the checkpoint thread copies the pages into journal.db (poll with a deadline).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (fs::file_size(dir.db()) < db0 + 100 * kPage && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(fs::file_size(dir.db()) >= db0 + 100 * kPage);
}

TEST_CASE("WAL syncs start at most once per interval, the checkpoints' fsyncs counted") {
  TempDir dir;
  fs::create_directories(dir.wal().parent_path());
  std::ofstream(dir.wal()) << "x";
  detail::WalSyncer syncer;
  std::string error;
  REQUIRE(syncer.attach(dir.wal().string(), 0, error));
  constexpr Nanos kInterval = 50 * kNanosPerMilli;
  syncer.setInterval(kInterval);
  const std::uint64_t syncs0 = syncer.syncs();

  // Commits far more often than the interval: each one asks, the syncs merge them.
  const auto start = std::chrono::steady_clock::now();
  std::uint64_t seq = 0;
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(300)) {
    syncer.request(++seq);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (syncer.durable() < seq && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(syncer.durable() == seq);  // every commit is covered: spacing delays, never drops
  const auto allowed = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count() / kInterval + 3);
  CHECK(syncer.syncs() - syncs0 <= allowed);
  CHECK(syncer.syncs() - syncs0 >= 2);

  // A checkpoint's two fsyncs: the next sync waits an interval (the tolerance covers one).
  std::this_thread::sleep_for(std::chrono::milliseconds(60));  // past the last sync's interval
  syncer.charge(2);
  const auto asked = std::chrono::steady_clock::now();
  syncer.request(++seq);
  while (syncer.durable() < seq && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(syncer.durable() == seq);
  CHECK(std::chrono::steady_clock::now() - asked >= std::chrono::milliseconds(40));

  // syncNow (stop) does not wait for the interval.
  syncer.charge(4);
  syncer.request(++seq);
  const auto now_start = std::chrono::steady_clock::now();
  CHECK(syncer.syncNow() == seq);
  CHECK(std::chrono::steady_clock::now() - now_start < std::chrono::milliseconds(150));
}
