#include "gateway/forwarder.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "buffer/journal.h"
#include "core/log.h"
#include "core/steady.h"
#include "core/wake_flag.h"
#include "core/worker_thread.h"
#include "gateway/loop_work.h"

namespace gw {

namespace {

// Config refuses retry_max < retry_min; a zero retry_min still gets a (tiny) growing backoff
// rather than the policy's assertion.
RetryOptions retryOptions(const ForwarderOptions& o) {
  const Nanos initial = std::max<Nanos>(1, o.retry_min);
  return {.initial = initial, .max = std::max(initial, o.retry_max)};
}

}  // namespace

struct Forwarder::Impl : std::enable_shared_from_this<Impl> {
  Impl(boost::asio::io_context& io_, buffer::Journal& journal_, std::unique_ptr<Sink> sink_,
       ForwarderOptions options_, ForwarderEnv env)
      : io(io_),
        journal(journal_),
        sink(std::move(sink_)),
        options(options_),
        wall_clock(std::move(env.clock.wall)),
        mono_clock(std::move(env.clock.mono)),
        retry(retryOptions(options_), std::move(env.uniform)),
        loop_work(env.loop_work),
        timer(io_),
        pace_timer(io_) {
    status.name = sink->name();
    status.cursor = journal.cursor(sink->name());
    sent_upto = status.cursor;
    reader = journal.readerOf(sink->name());
  }

  boost::asio::io_context& io;
  buffer::Journal& journal;
  std::unique_ptr<Sink> sink;
  ForwarderOptions options;
  const std::function<Nanos()> wall_clock;
  const std::function<Nanos()> mono_clock;
  RetryPolicy retry;               // event loop thread only
  LoopWorkMeter* const loop_work;  // may be null
  boost::asio::steady_timer timer;
  // ForwarderOptions::min_interval: the real monotonic clock (a wait on the loop, not a figure
  // the tests check), armed at most once at a time.
  boost::asio::steady_timer pace_timer;
  Nanos last_send = 0;  // steady clock (core/steady.h)
  bool pace_armed = false;
  ForwarderStatus status;
  // Highest seq confirmed by the sink (or passed over). It may be beyond durableSeq(): records
  // are read up to Journal::sendableSeq(); status.cursor, what the journal persists, follows it
  // only as far as durableSeq() (after a power cut the rest is sent again, or is lost with its
  // source unacknowledged, and its seq is never given out again).
  std::uint64_t sent_upto = 0;
  std::uint64_t batch_through = 0;  // readTail()'s answer for the batch with the worker
  // Tells the journal which sink holds the records read (Journal::readerOf()): a cached series
  // stays until this sink confirms the records of it it read, whatever the other sinks confirm.
  buffer::Journal::Reader reader = buffer::Journal::kNoReader;
  bool busy = false;  // a batch is with the worker, or a retry is scheduled
  bool stopped = false;
  bool retry_scheduled = false;  // busy because of a retry wait, not a batch with the worker
  std::uint64_t retry_gen = 0;
  log::RateLimiter retry_log;
  static constexpr std::chrono::seconds kIdleTick{1};
  // A paced answer waits for the pace timer only when that is soon: the cursor follows it.
  static constexpr Nanos kMaxAnswerWait = 50 * kNanosPerMilli;
  LinkState last_link = LinkState::kConnecting;  // worker thread only

  // Worker mailbox: one batch at a time. `wake` rather than a condition variable: one futex
  // call per batch on each side instead of three (core/wake_flag.h).
  std::thread worker;
  std::mutex mu;
  WakeFlag wake;
  std::optional<std::vector<ReadingRecord>> job;  // guarded by mu
  // The last batch's vector, back from the worker: the next batch is read into it, so a
  // steady stream of small batches grows and frees no vector per batch and the journal
  // overwrites records in place (issue 16). At most `batch` records of capacity.
  std::vector<ReadingRecord> spare;  // guarded by mu
  bool quit = false;                 // guarded by mu
  // A paced batch's answer waits here for the pace timer, which the loop has armed anyway,
  // instead of being posted: a post from the worker costs it an epoll_ctl and the loop a
  // wakeup of its own, per batch (issue 16). A full batch (a backlog) is posted at once.
  struct Answer {
    SendResult result;
    std::uint64_t first = 0, last = 0;
    size_t n = 0;
  };
  bool job_deferrable = false;   // guarded by mu: the job's answer may wait in `answer`
  bool loop_waiting = false;     // guarded by mu: the pace timer came first; post the answer
  std::optional<Answer> answer;  // guarded by mu
  bool deferred_out = false;     // loop thread: a deferrable batch is with the worker
  static constexpr size_t kAgeSamples = 8192;                 // 64 KiB per sink
  std::vector<Nanos> ages = std::vector<Nanos>(kAgeSamples);  // ring, guarded by mu
  size_t age_next = 0, age_count = 0;                         // guarded by mu

  void startWorker() {
    worker = std::thread([self = shared_from_this()] {
      // "gw-fwd-<sink>"; never preempts the loop (core/worker_thread.h).
      becomeWorkerThread(("gw-fwd-" + self->status.name).c_str());
      self->workerLoop();
    });
  }

  void workerLoop() {
    for (;;) {
      std::vector<ReadingRecord> batch;
      bool deferrable = false;
      {
        std::unique_lock lock(mu);
        if (quit) return;
        if (!job) {
          lock.unlock();
          if (!wake.waitFor(std::chrono::nanoseconds(kIdleTick).count())) idleTick();
          continue;
        }
        batch = std::move(*job);
        job.reset();
        deferrable = job_deferrable;
      }
      Answer a{.result = sink->send(batch),
               .first = batch.front().seq,
               .last = batch.back().seq,
               .n = batch.size()};
      if (a.result.status == SendStatus::kDelivered) recordAges(batch, wall_clock());
      {
        std::lock_guard lock(mu);
        spare = std::move(batch);
        if (deferrable && !loop_waiting) {
          answer = std::move(a);
          continue;  // takeAnswer() on the pace timer picks it up
        }
        loop_waiting = false;
      }
      boost::asio::post(io, [self = shared_from_this(), a = std::move(a)] {
        self->onResult(a.result, a.first, a.last, a.n);
      });
    }
  }

  // Lets the sink serve and probe its connection while nothing is being sent; when the link
  // comes back during a retry wait, the wait is cut short so the backlog drains at once.
  void idleTick() {
    sink->idle();
    const auto h = sink->health();
    if (!h) return;  // no connection to watch: waits are the retry policy's alone
    const LinkState now = h->state;
    if (now == LinkState::kUp && last_link != LinkState::kUp)
      boost::asio::post(io, [self = shared_from_this()] { self->onLinkUp(); });
    last_link = now;
  }

  void onLinkUp() {
    if (stopped || !retry_scheduled) return;
    retry_scheduled = false;
    timer.cancel();
    busy = false;
    poke();
  }

  void recordAges(const std::vector<ReadingRecord>& batch, Nanos confirmed) {
    std::lock_guard lock(mu);
    for (const auto& r : batch) {
      ages[age_next] = confirmed - r.event_time;
      age_next = (age_next + 1) % kAgeSamples;
    }
    age_count = std::min(age_count + batch.size(), kAgeSamples);
  }

  ForwarderStatus snapshot() {
    ForwarderStatus st = status;
    const bool send_failed = !status.up;
    st.state = send_failed ? LinkState::kDown : LinkState::kUp;
    if (const auto h = sink->health()) {
      if (h->state == LinkState::kDown) {
        st.state = LinkState::kDown;
        if (!h->cause.empty()) st.last_error = h->cause;
      } else if (!send_failed) {
        st.state = h->state;
      }
    }
    st.up = st.state == LinkState::kUp;
    std::vector<Nanos> v;
    {
      std::lock_guard lock(mu);
      v.assign(ages.begin(), ages.begin() + static_cast<std::ptrdiff_t>(age_count));
    }
    if (!v.empty()) {
      auto at = [&](double q) {
        auto it = v.begin() + static_cast<std::ptrdiff_t>(q * static_cast<double>(v.size() - 1));
        std::nth_element(v.begin(), it, v.end());
        return static_cast<double>(*it) / kNanosPerMilli;
      };
      st.age_p50_ms = at(0.50);
      st.age_p99_ms = at(0.99);
    }
    return st;
  }

  void poke() {
    if (stopped) return;
    persistCursor();
    if (busy) return;
    std::vector<ReadingRecord> batch;
    if (options.alerts_only) {
      // Notifiers keep to durable rows: an alert page is not worth a faster path.
      const std::uint64_t durable = journal.durableSeq();
      if (durable <= sent_upto) return;
      const auto beyond = [durable](const ReadingRecord& r) { return r.seq > durable; };
      takeSpare(batch);
      journal.readAlerts(sent_upto, options.batch, batch, reader);
      batch.erase(std::find_if(batch.begin(), batch.end(), beyond), batch.end());
      if (batch.empty()) {
        giveBack(batch);
        advance(durable);
        return;
      }
      batch_through = batch.back().seq;
    } else {
      // Committed and pending records alike, as far as the journal's durable seq reservation
      // goes (Journal::sendableSeq()): a record need not wait for its group commit and sync.
      const std::uint64_t sendable = journal.sendableSeq();
      if (sendable <= sent_upto) return;
      if (options.min_interval > 0 && sendable - sent_upto < options.batch) {
        if (pace_armed) return;
        const Nanos next = nextSend();
        if (steadyNow() < next) {
          armPace(next);
          return;
        }
      }
      last_send = steadyNow();
      takeSpare(batch);
      batch_through = journal.readTail(sent_upto, options.batch, batch, reader);
      if (batch.empty()) {
        giveBack(batch);
        if (batch_through > sent_upto) advance(batch_through);  // a gap left by a crash
        return;
      }
    }
    busy = true;
    // Less than a full batch: the next send waits for the pace anyway, so the answer can wait
    // for the pace timer too (Answer).
    const bool deferrable = !options.alerts_only && options.min_interval > 0 &&
                            options.min_interval <= kMaxAnswerWait && batch.size() < options.batch;
    {
      std::lock_guard lock(mu);
      job = std::move(batch);
      job_deferrable = deferrable;
      loop_waiting = false;
    }
    wake.notify();
    if (deferrable) {
      deferred_out = true;
      if (!pace_armed) armPace(nextSend());
    }
  }

  /// The worker is done with `spare` whenever poke() reads (not busy).
  void takeSpare(std::vector<ReadingRecord>& batch) {
    std::lock_guard lock(mu);
    batch.swap(spare);
  }
  void giveBack(std::vector<ReadingRecord>& batch) {
    std::lock_guard lock(mu);
    spare.swap(batch);
  }

  Nanos nextSend() const {
    return pacedSendDue(last_send, options.min_interval, options.pace_grid);
  }

  void armPace(Nanos next) {
    pace_armed = true;
    pace_timer.expires_at(steadyAt(next));
    pace_timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->stopped) return;
      self->pace_armed = false;
      if (self->takeAnswer()) return;
      self->poke();
    });
  }

  /// On the pace timer while a deferrable batch is out: handles its answer if the worker has
  /// left it, or asks the worker to post it. True when the batch was still out.
  bool takeAnswer() {
    if (!deferred_out) return false;
    std::optional<Answer> a;
    {
      std::lock_guard lock(mu);
      if (answer) {
        a = std::move(answer);
        answer.reset();
      } else {
        loop_waiting = true;
      }
    }
    if (a) onResult(a->result, a->first, a->last, a->n);
    return true;
  }

  bool wantsPoke() const {
    if (stopped || busy) return false;
    if (!pace_armed || options.alerts_only) return true;
    return journal.sendableSeq() - sent_upto >= options.batch;  // a full batch goes at once
  }

  /// A batch's report from the worker, on the loop: timed as the loop's "sinks" work with the
  /// next batch's read from the journal it starts (issue 13: what holds the loop is named).
  void onResult(const SendResult& r, std::uint64_t first, std::uint64_t last, size_t n) {
    if (stopped) return;
    deferred_out = false;
    if (!loop_work) {
      handleResult(r, first, last, n);
      return;
    }
    loop_work->run(
        LoopWorkKind::kSinks, [&] { handleResult(r, first, last, n); },
        [&] { return fmt::format("{}: {} records reported", status.name, n); });
  }

  void handleResult(const SendResult& r, std::uint64_t first, std::uint64_t last, size_t n) {
    switch (r.status) {
      case SendStatus::kDelivered:
        if (!status.up) log::notice("{}: delivering again", status.name);
        status.up = true;
        status.sent += n;
        advance(std::max(last, batch_through));
        retry.reset();
        status.retry_wait = 0;
        busy = false;
        poke();
        return;
      case SendStatus::kRejected:
        status.rejected += n;
        status.last_error = r.error;  // kept for `gatewayctl` (a refused alert, a bad record)
        log::error("{}: rejected records {}..{} ({} records, skipped): {}", status.name, first,
                   last, n, r.error);
        advance(std::max(last, batch_through));
        busy = false;
        poke();
        return;
      case SendStatus::kRetry: {
        ++status.retries;
        status.up = false;
        status.last_error = r.error;
        // Never sooner than the server asked (Retry-After), never later than retry_max.
        const Nanos wait = retry.next(r.retry_after);
        status.retry_wait = wait;
        std::uint64_t suppressed = 0;
        if (retry_log.allow(mono_clock(), suppressed))
          log::warn("{}: send failed, retrying in {}ms ({} more failures not logged): {}",
                    status.name, wait / kNanosPerMilli, suppressed, r.error);
        timer.expires_after(std::chrono::nanoseconds(wait));
        retry_scheduled = true;
        timer.async_wait(
            [self = shared_from_this(), gen = ++retry_gen](const boost::system::error_code& ec) {
              // A wait cut short by onLinkUp may still have its handler queued: gen tells.
              if (ec || self->stopped || !self->retry_scheduled || gen != self->retry_gen) return;
              self->retry_scheduled = false;
              self->busy = false;
              self->poke();
            });
        return;
      }
    }
  }

  void advance(std::uint64_t last) {
    sent_upto = last;
    persistCursor();
  }

  // The journal's cursor never claims more than is durable (called again by poke() on every
  // sync, so it catches up).
  void persistCursor() {
    if (status.cursor >= sent_upto) return;
    const std::uint64_t durable = std::min(sent_upto, journal.durableSeq());
    if (durable <= status.cursor) return;
    status.cursor = durable;
    journal.setCursor(status.name, durable);
  }

  void stop() {
    if (stopped) return;
    stopped = true;
    timer.cancel();
    pace_timer.cancel();
    {
      std::lock_guard lock(mu);
      quit = true;
    }
    sink->interrupt();
    wake.notify();
    if (worker.joinable()) worker.join();
  }
};

Forwarder::Forwarder(boost::asio::io_context& io, buffer::Journal& journal,
                     std::unique_ptr<Sink> sink, ForwarderOptions options, ForwarderEnv env)
    : impl_(std::make_shared<Impl>(io, journal, std::move(sink), options, std::move(env))) {
  impl_->startWorker();
}

Forwarder::~Forwarder() { stop(); }

void Forwarder::poke() { impl_->poke(); }
void Forwarder::stop() { impl_->stop(); }
bool Forwarder::wantsPoke() const { return impl_->wantsPoke(); }
ForwarderStatus Forwarder::status() const { return impl_->snapshot(); }
std::uint64_t Forwarder::cursor() const { return impl_->status.cursor; }
const std::string& Forwarder::name() const { return impl_->status.name; }

}  // namespace gw
