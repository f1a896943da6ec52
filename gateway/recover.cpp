// Offline, with gatewayd stopped: the live journal is locked by a running gatewayd (one writer),
// and going through the control socket would let any member of the iot-gateway group make the
// daemon read files. Stopping costs nothing: the broker keeps QoS 1 messages for the session.
#include "gateway/recover.h"

#include <fmt/core.h>

#include <cstdio>
#include <system_error>

#include "buffer/salvage.h"
#include "core/log.h"

namespace gw {

int recoverJournal(const config::Config& cfg, const std::filesystem::path& damaged) {
  namespace fs = std::filesystem;
  const fs::path live = cfg.gateway.state_dir / "journal.db";
  std::error_code ec;
  if (fs::equivalent(live, damaged, ec)) {
    log::error(
        "--recover {}: that is the live journal; give a file moved aside as corrupt "
        "(journal.db.corrupt-…)",
        damaged.string());
    return 1;
  }
  try {
    buffer::JournalOptions jo;
    jo.path = live;
    jo.max_size_bytes = cfg.buffer.max_size;
    jo.max_age = cfg.buffer.max_age;
    jo.synchronous = cfg.buffer.synchronous;
    // The same cursor names as the pipeline's (the new rows are above every cursor).
    for (const auto& sink : cfg.sinks) jo.sinks.push_back(sink.config->name());
    if (cfg.aggregate.enabled) jo.sinks.push_back("windows");
    for (const auto& n : cfg.notify.notifiers) jo.sinks.push_back(n->name());
    auto journal = buffer::Journal::open(jo);
    const std::uint64_t before = journal->lastSeq();
    const buffer::SalvageReport r = buffer::salvageInto(damaged, *journal);
    const std::uint64_t found = r.records + r.no_series + r.undecodable;
    std::printf(
        "recovered %s into %s: %llu records appended (%llu readings), seq %llu..%llu there; "
        "in the damaged file: %llu records found in seq %llu..%llu, %llu seqs missing (rows on "
        "unreadable pages or already deleted), %llu without their series, %llu undecodable; "
        "%llu pages, %llu damaged b-tree leaves; %llu deleted rows at or below seq %llu (the "
        "floor) found in free pages and left out\n",
        damaged.c_str(), live.c_str(), static_cast<unsigned long long>(r.appended),
        static_cast<unsigned long long>(r.readings), static_cast<unsigned long long>(before + 1),
        static_cast<unsigned long long>(journal->lastSeq()), static_cast<unsigned long long>(found),
        static_cast<unsigned long long>(r.first_seq), static_cast<unsigned long long>(r.last_seq),
        static_cast<unsigned long long>(r.missing()), static_cast<unsigned long long>(r.no_series),
        static_cast<unsigned long long>(r.undecodable), static_cast<unsigned long long>(r.pages),
        static_cast<unsigned long long>(r.bad_pages),
        static_cast<unsigned long long>(r.below_floor), static_cast<unsigned long long>(r.floor));
    log::notice("--recover: {} records of {} appended to {}; gatewayd forwards them to every sink",
                r.appended, damaged.string(), live.string());
    return 0;
  } catch (const buffer::JournalError& e) {
    log::error("--recover {}: {}", damaged.string(), e.what());
    return 1;
  }
}

}  // namespace gw
