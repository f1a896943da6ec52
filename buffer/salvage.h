// Salvage of a damaged journal (`gatewayd --recover FILE`, issue 17): the readable records of a
// journal moved aside as corrupt, read page by page from the file (and its -wal) without
// SQLite's b-tree, so a destroyed interior or first page loses only the rows on that page.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "buffer/journal.h"

namespace gw::buffer {

struct SalvageReport {
  std::uint64_t pages = 0;        ///< pages in the file (with the -wal's newest versions)
  std::uint64_t bad_pages = 0;    ///< b-tree pages whose cells could not all be read
  std::uint64_t records = 0;      ///< records found (readings, aggregates, alerts)
  std::uint64_t readings = 0;     ///< of which readings
  std::uint64_t appended = 0;     ///< appended to the live journal
  std::uint64_t no_series = 0;    ///< records whose series row was lost: not appendable
  std::uint64_t undecodable = 0;  ///< records found but not decodable (kind, blob)
  std::uint64_t first_seq = 0, last_seq = 0;  ///< seq range of the records found (0: none)
  /// The journal's floor (table meta) when its page was readable: rows at or below it had
  /// been deleted (their bytes may linger in free pages) and are not salvaged. 0: not found.
  std::uint64_t floor = 0;
  std::uint64_t below_floor = 0;  ///< deleted rows found in free pages and left out
  /// Seqs in [first_seq, last_seq] not found: rows on unreadable pages (or already deleted, or
  /// never used: seqs skipped after a crash, see Journal's seq reservation).
  std::uint64_t missing() const {
    return records == 0 ? 0 : last_seq - first_seq + 1 - (records + no_series + undecodable);
  }
};

/// Reads every record of the damaged journal `file` and appends it to `into` as new rows (new
/// seqs, same series, times, values, references; aggregates and alerts as they were), in seq
/// order, committing as it goes, so every sink of `into` forwards them. Rows that every sink
/// had confirmed are normally deleted already, so little is sent twice; deleted rows whose bytes
/// are still in free pages are left out by the floor (when the meta page is lost, they may come
/// back and be sent twice — never lost). Throws JournalError when
/// `file` cannot be read at all or a commit fails.
SalvageReport salvageInto(const std::filesystem::path& file, Journal& into);

}  // namespace gw::buffer
