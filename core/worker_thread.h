// Threads beside the event loop: the journal's WAL sync and checkpoint threads, the sinks'
// workers, librdkafka's threads (issue 13: the loop's stall).
#pragma once

namespace gw {

/// Makes the calling thread a background thread of the event loop's: named `name` (at most 15
/// characters are kept; for top -H, perf and strace; nullptr keeps its name) and scheduled
/// SCHED_BATCH. A SCHED_BATCH thread that wakes up never preempts a running thread: it runs on
/// an idle core, when the loop blocks in epoll_wait, or at the next scheduler tick. The loop
/// wakes these threads on every commit and batch; as ordinary threads they preempted it there
/// (measured with perf sched_switch at 100,000 series: two thirds of the loop's preemptions
/// during a flood were by gw-wal-sync, gw-fwd-kafka and rdk:broker, each up to ~6 ms).
/// Their priority (nice) is unchanged on purpose: they share locks with the loop (asio's
/// scheduler mutex when they post to it, glibc's one malloc arena, M_ARENA_MAX=1), and a niced
/// worker preempted while holding one blocks the loop until it gets a CPU back. Measured
/// (issue 13, perf sched_switch + sched_wakeup on a 100,000-series flood, loaded VM): with
/// nice +10 the loop's blocked time in those futexes went from 2.4 to 306 ms (asio's mutex,
/// longest 192 ms) and from 17.5 to 89 ms (malloc). Returns false when the policy could not
/// be set (the thread keeps running as before).
bool becomeWorkerThread(const char* name);

}  // namespace gw
