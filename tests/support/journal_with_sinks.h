// A journal file in a test's directory with the named sinks' cursors: what forwarder and loop
// tests drive a Forwarder (or read back after a Pipeline) with.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "buffer/journal.h"

namespace gw::test {

/// Opens (creating) `dir`/journal.db with a cursor per sink.
inline std::unique_ptr<buffer::Journal> openJournal(const std::filesystem::path& dir,
                                                    std::vector<std::string> sinks = {"fake"}) {
  buffer::JournalOptions o;
  o.path = dir / "journal.db";
  o.sinks = std::move(sinks);
  auto journal = buffer::Journal::open(o);
  REQUIRE(journal != nullptr);
  return journal;
}

}  // namespace gw::test
