#!/usr/bin/env python3
"""Cost per reading on a Pi-class device (issue 16). A benchmark, not a timed test: it reports.

gatewayd (default buffer settings: commit_interval 50 ms, synchronous full; default 10-second
windows) takes JSON readings from gw-sim through Mosquitto and forwards them to the Kafka test
broker. Per run, alternating so that both see the same machine:

  drain (the baseline): gatewayd is stopped (SIGSTOP) while gw-sim publishes --drain readings
      to Mosquitto, which queues them; gatewayd continues (SIGCONT) and takes the queue in large
      bursts. CPU µs per reading from its start until every reading is journaled and confirmed
      by Kafka: what a reading costs when the event loop wakes up for many at once. gatewayd
      runs in a process group of its own, and a drain during which it did not stay stopped
      (/proc/PID/stat state 'T' and no CPU from the stop until the publish ended) is flagged
      "NOT A DRAIN" and left out of the drain medians and the ratio.
  steady: --devices devices, --rate readings/s in all (default: each device 1/s) for --seconds; over the
      middle of it (after --warmup s, until 2 s before the end):
        CPU µs per reading (/proc/PID/stat utime + stime, every thread) and its ratio to drain;
        syscalls per reading and fsync + fdatasync per second (perf stat on the raw_syscalls
          tracepoint: a kernel counter, not strace's stop per call), with pwrite64, epoll_wait
          and recvfrom/read per reading to show where they go;
        voluntary context switches (wakeups) per reading;
        bytes written per reading (/proc/PID/io write_bytes) and journal commits per second;
        bytes per reading with checkpoints accrued: the bytes written plus the change over the
          window in what the next checkpoint will write into journal.db (the distinct 4 KiB blocks
          of the frames the WAL holds past the last checkpoint, from the -shm and the -wal), so that
          a window with a checkpoint and one without count the same rows once each (a 64 MiB WAL
          is checkpointed every ~80 s at 10,000 readings/s, so a 60 s window has none or one;
          ~35 s with 100,000 devices). The debt grows fast after a checkpoint and stops growing once the
          journal's working set is in the WAL, so a window is still not a whole cycle; two more:
          per checkpoint cycle, the window's WAL writes (every thread but gw-checkpoint) times
          1 + debt / 64 MiB (one copy of the working set per 64 MiB of WAL; an upper bound, the
          larger debt read may be higher than the one copied), and over the whole run (every run's
          steady load, ~4 minutes, the drains' readings and bytes left out) with checkpoints
          accrued: the figure to compare;
        publish → Kafka acknowledgement p50/p99 (gatewayd's own delivery ages, sampled each second);
        VmRSS at the end of the window.
Then, once (--big-runs): a --backlog readings journaled with Kafka down (published as fast as
gatewayd takes them), then Kafka back up while --rate readings/s keep arriving: drain rate
(Kafka confirmations per second until the backlog is under one second of live traffic) and CPU
µs per confirmed reading over that time.

`--by-thread S`: after the runs, S more seconds of the steady load with `perf record` on the
raw_syscalls tracepoint, printed as system calls per reading by thread (our threads are named
gw-wal-sync, gw-checkpoint, gw-fwd-<sink>; the event loop is gatewayd's main thread; librdkafka's
are rdk:*) and by call: where the calls of the totals above go (issue 16).

`--perf S`: after the runs, S more seconds of the steady load under `perf record` (999 Hz, every
thread, kernel included), printed as the share of samples per thread and the top symbols (self
time) with the thread that ran them: where the CPU of the totals above goes.

Each figure is the median of --runs runs. `--gatewayd PATH` runs another build with the same
load (e.g. the code before a change). `--qos 0|1` (default 1: the subscription of the shipped
example config). `--count-allocs` preloads tests/tools/alloc_count's shim and adds heap
allocations per reading over the steady window: on every thread, and on the event loop's
(gatewayd's main thread, where a reading is decoded, clock-corrected and journaled).
Medians and every run's figures are printed and written to --json.

Usage: tests/bench/pi_bench.py [--devices 10000] [--seconds 60] [--runs 3] [--drain 200000]
                               [--backlog 3000000] [--big-runs 1] [--qos 1] [--count-allocs] [--json F]
"""
import argparse
import collections
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import AllocCounter, LoopDisk, Sample, SyscallCounter, request, sim, unit_env  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import gwtest  # noqa: E402
from gwtest import Gatewayd, KafkaBroker, Mosquitto, Workdir, wait_until  # noqa: E402


DISK = None  # --loop-disk: gatewayd's state directory on an ext4 loop device of its own


def device_written():
    """Bytes sent to the state directory's device (--loop-disk), else 0."""
    return DISK.written() if DISK else 0


def status(gw):
    """gatewayd's status from its control socket (fresher than the once-a-second stats line)."""
    s = json.loads(request(gw.wd.path / "control.sock", "status")[1])
    kafka = [k for k in s["sinks"] if k["name"] == "kafka"][0]
    return {"readings": s["readings"], "messages": s["messages"], "sent": kafka["sent"],
            "backlog": kafka["backlog"], "commits": s["journal"]["commits"], "p50": kafka["age_p50_ms"],
            "p99": kafka["age_p99_ms"]}


def checkpoint_debt(db):
    """Bytes the next checkpoint will write into journal.db for what the WAL holds now: the
    distinct 4 KiB blocks of the file (what /proc/PID/io write_bytes counts: page-cache pages
    dirtied) that the frames after the last checkpointed one (-shm: nBackfill) up to the last
    committed one (mxFrame) cover. Frames up to mxFrame stay as they are until the WAL starts
    over (new salts in the -shm's header), so the read is retried only then."""
    shm, wal = Path(str(db) + "-shm"), Path(str(db) + "-wal")
    for _ in range(20):
        try:
            hdr = shm.read_bytes()[:100]
            if len(hdr) < 100:
                return 0
            page = int.from_bytes(hdr[14:16], sys.byteorder) or 65536
            mx = int.from_bytes(hdr[16:20], sys.byteorder)
            backfill = int.from_bytes(hdr[96:100], sys.byteorder)
            blocks = set()
            with wal.open("rb") as f:
                for i in range(backfill + 1, mx + 1):
                    f.seek(32 + (i - 1) * (24 + page))
                    pgno = int.from_bytes(f.read(4), "big")
                    blocks.add((pgno - 1) * page // 4096)
            if shm.read_bytes()[32:40] == hdr[32:40]:  # the same WAL generation (salts)
                return len(blocks) * 4096
        except FileNotFoundError:
            return 0
        time.sleep(0.01)
    raise RuntimeError(f"{shm}: the WAL started over during each of 20 reads")


def checkpoint_thread_written(pid):
    """write_bytes of gatewayd's checkpoint thread (gw-checkpoint: the copies into journal.db
    and their fsyncs), 0 when there is none."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == "gw-checkpoint":
                for line in (task / "io").read_text().splitlines():
                    if line.startswith("write_bytes:"):
                        return int(line.split()[1])
        except OSError:
            continue
    return 0


WAL_CHECKPOINT_BYTES = 64 << 20  # gatewayd's default (JournalOptions::wal_checkpoint_bytes)


def drain(gw, mq, devices, count, qos, seed):
    """Broker backlog taken in bursts: CPU µs per reading (the baseline of the steady figures)."""
    pid = gw.proc.p.pid
    s0 = status(gw)
    gw.proc.p.send_signal(signal.SIGSTOP)
    wait_until("gatewayd to stop", lambda: benchlib.proc_state(pid) == "T", timeout=10, interval=0.001)
    cpu_stopped = benchlib.cpu_seconds(pid)
    try:
        sim(mq.uri, "--devices", devices, "--metrics", "temp", "--count", count, "--rate", 0,
            "--qos", qos, "--seed", seed, "--client-id", f"pi-drain-{seed}")
    finally:
        # Still stopped, and no CPU spent meanwhile (a SIGCONT and another stop would leave 'T'):
        # else gatewayd took part of the queue during the publish and this was not a drain.
        state_after, cpu_during = benchlib.proc_state(pid), benchlib.cpu_seconds(pid) - cpu_stopped
        a, dev0 = Sample(pid), device_written()
        sc = SyscallCounter(pid)
        gw.proc.p.send_signal(signal.SIGCONT)
    t0 = time.monotonic()
    end, last = None, (t0, -1)
    while True:  # until every reading is journaled and sent, or 10 s without progress
        s = status(gw)
        if s["readings"] >= s0["readings"] + count and s["backlog"] == 0:
            break
        if s["readings"] + s["sent"] != last[1]:
            last = (time.monotonic(), s["readings"] + s["sent"])
        elif time.monotonic() - last[0] > 10:
            break
        time.sleep(0.1)
    end = s
    t = time.monotonic() - t0
    b, dev1 = Sample(pid), device_written()
    calls = sc.stop()
    d = b - a
    n = end["readings"] - s0["readings"]
    return {"stopped_during_publish": state_after == "T" and cpu_during < 0.02,
            "state_after_publish": state_after, "cpu_s_during_publish": cpu_during, "readings": n, "lost": count - n, "seconds": t, "rate": n / t,
            "cpu_us_per_reading": d["cpu_s"] * 1e6 / n, "syscalls_per_reading": calls["all"] / n,
            "bytes_written_per_reading": d["written"] / n, "device_bytes": dev1 - dev0}


def steady(gw, mq, devices, rate, seconds, warmup, qos, seed, allocs=None):
    pid = gw.proc.p.pid
    t = threading.Thread(target=sim, args=(mq.uri, "--devices", devices, "--metrics", "temp",
                                           "--count", rate * seconds, "--rate", rate, "--qos", qos,
                                           "--seed", seed, "--client-id", f"pi-steady-{seed}"))
    t.start()
    time.sleep(warmup)  # the publisher ramps up and gatewayd's windows open (sampling cadence)
    db = gw.wd.path / "state" / "journal.db"
    s0, a, debt0, ck0 = status(gw), Sample(pid), checkpoint_debt(db), checkpoint_thread_written(pid)
    dev0 = device_written()
    al0 = allocs.read() if allocs else None
    sc = SyscallCounter(pid)
    p50s, p99s = [], []
    end = time.monotonic() + seconds - warmup - 2
    while time.monotonic() < end:
        time.sleep(1)
        s = status(gw)
        p50s.append(s["p50"])
        p99s.append(s["p99"])
    calls = sc.stop()
    s1, b, debt1, ck1 = status(gw), Sample(pid), checkpoint_debt(db), checkpoint_thread_written(pid)
    dev1 = device_written()
    al1 = allocs.read() if allocs else None
    hwm, rss = benchlib.memory_kib(pid)
    t.join()
    d = b - a
    n = s1["readings"] - s0["readings"]
    extra = {}
    if DISK:  # --loop-disk: what reached the device, and with the checkpoint debt accrued
        extra = {"device_bytes_per_reading": (dev1 - dev0) / n,
                 "device_bytes_per_reading_with_checkpoints": (dev1 - dev0 + debt1 - debt0) / n}
    if allocs:  # --count-allocs: heap allocations per reading (issue 16: none on the hot path)
        extra |= {"allocs_per_reading": (al1["all"] - al0["all"]) / n,
                 "loop_allocs_per_reading": (al1["main"] - al0["main"]) / n}
    return {
        **extra,
        "readings": n, "readings_per_s": n / d["seconds"],
        "cpu_us_per_reading": d["cpu_s"] * 1e6 / n,
        "syscalls_per_reading": calls["all"] / n,
        "epoll_wait_per_reading": calls.get("epoll_wait", 0) / n,
        "recv_read_per_reading": (calls.get("recvfrom", 0) + calls.get("read", 0)) / n,
        "send_write_per_reading": sum(calls.get(k, 0) for k in ("write", "sendto", "sendmsg")) / n,
        "futex_per_reading": calls.get("futex", 0) / n,
        "pwrite64_per_s": calls.get("pwrite64", 0) / calls["seconds"],
        "fsyncs_per_s": (calls.get("fsync", 0) + calls.get("fdatasync", 0)) / calls["seconds"],
        "voluntary_switches_per_reading": d["voluntary_switches"] / n,
        "bytes_written_per_reading": d["written"] / n,
        "bytes_per_reading_with_checkpoints": (d["written"] + debt1 - debt0) / n,
        "checkpoint_debt_mib": (debt0 / 2**20, debt1 / 2**20),
        "checkpoint_thread_bytes_per_reading": (ck1 - ck0) / n,
        # A checkpoint cycle: the WAL writes (everything but the checkpoint thread's) until
        # WAL_CHECKPOINT_BYTES, then one copy of the pages the WAL holds (the debt, which stops
        # growing once the journal's working set is in the WAL: the larger of the two reads).
        "bytes_per_reading_per_cycle": (d["written"] - (ck1 - ck0)) / n
        * (1 + max(debt0, debt1) / WAL_CHECKPOINT_BYTES),
        "commits_per_s": (s1["commits"] - s0["commits"]) / d["seconds"],
        "latency_p50_ms": statistics.median(p50s), "latency_p99_ms": statistics.median(p99s),
        "vmrss_mib": rss / 1024, "vmhwm_mib": hwm / 1024,
    }


def big_backlog(gw, mq, kafka, devices, rate, backlog, qos, seed):
    """A journaled backlog drained to Kafka while `rate` readings/s keep arriving."""
    pid = gw.proc.p.pid
    kafka.down()
    s0 = status(gw)
    sim(mq.uri, "--devices", devices, "--metrics", "temp", "--count", backlog, "--rate", 0, "--qos", qos,
        "--seed", seed, "--client-id", f"pi-backlog-{seed}")
    wait_until("the backlog journaled", lambda: status(gw)["readings"] >= s0["readings"] + backlog,
               timeout=600, interval=0.2)
    live = subprocess.Popen([str(gwtest.GW_SIM), "--uri", mq.uri, "--out", "/dev/null", "--devices",
                             str(devices), "--metrics", "temp", "--duration", "3600", "--rate", str(rate),
                             "--qos", str(qos), "--seed", str(seed + 1), "--client-id", f"pi-live-{seed}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)  # the live stream is flowing before the uplink returns (sampling cadence)
    b0, a = status(gw), Sample(pid)
    kafka.up()
    end = wait_until("the backlog drained", lambda: (lambda s: s if s["backlog"] < rate else None)(status(gw)),
                     timeout=3600, interval=0.2)
    b = Sample(pid)
    live.terminate()
    live.wait(timeout=30)
    d = b - a
    sent = end["sent"] - b0["sent"]
    return {"backlog": b0["backlog"], "seconds": d["seconds"], "confirmed": sent,
            "drain_rate_per_s": sent / d["seconds"], "cpu_us_per_confirmed_reading": d["cpu_s"] * 1e6 / sent,
            "bytes_written_per_confirmed_reading": d["written"] / sent}


def syscall_names():
    """{number: name} from the kernel headers (x86-64); numbers stay numbers elsewhere."""
    names = {}
    try:
        for line in Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h").read_text().splitlines():
            m = re.match(r"#define __NR_(\w+) (\d+)", line)
            if m:
                names[int(m.group(2))] = m.group(1)
    except OSError:
        pass
    return names


def perf_during_load(gw, mq, devices, rate, seconds, qos, seed, client, event, *reports):
    """`perf record -e EVENT` (`event` as perf's arguments) of gatewayd over `seconds` of the steady
    load; returns the readings taken meanwhile and the text of each `perf` command in `reports`
    (their arguments; the data file's `-i` is added)."""
    pid = gw.proc.p.pid
    t = threading.Thread(target=sim, args=(mq.uri, "--devices", devices, "--metrics", "temp", "--count",
                                           rate * (seconds + 10), "--rate", rate, "--qos", qos, "--seed", seed,
                                           "--client-id", f"{client}-{seed}"))
    t.start()
    time.sleep(6)  # the publisher ramps up (sampling cadence)
    s0 = status(gw)
    with tempfile.TemporaryDirectory(prefix="pi-perf-") as tmp:
        data = str(Path(tmp) / "perf.data")
        subprocess.run(["perf", "record", "-q", "-o", data, *event, "-p", str(pid), "--", "sleep", str(seconds)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        n = status(gw)["readings"] - s0["readings"]
        texts = [subprocess.run(["perf", r[0], "-i", data, *r[1:]], check=True, capture_output=True,
                                text=True).stdout for r in reports]
    t.join()
    return n, texts


def by_thread(gw, mq, devices, rate, seconds, qos, seed):
    """System calls per reading by thread and call over `seconds` of the steady load."""
    n, (out,) = perf_during_load(gw, mq, devices, rate, seconds, qos, seed, "pi-threads",
                                 ["-e", "raw_syscalls:sys_enter"], ["script", "-F", "comm,tid,trace"])
    names, calls, threads = syscall_names(), collections.Counter(), collections.Counter()
    main_tid = str(gw.proc.p.pid)
    for line in out.splitlines():
        m = re.match(r"\s*(.+?)\s+(\d+)\s+NR (\d+)", line)
        if not m:
            continue
        who = "event loop" if m.group(2) == main_tid else m.group(1)
        calls[(who, names.get(int(m.group(3)), m.group(3)))] += 1
        threads[who] += 1
    print(f"\nsystem calls per reading by thread and call ({n:,} readings in {seconds} s): "
          f"{sum(threads.values()) / n:.3f} in all")
    for who, k in threads.most_common():
        print(f"  {who:16s} {k / n:.4f}")
        for (w, call), v in calls.most_common():
            if w == who and v / n >= 0.0005:
                print(f"      {call:20s} {v / n:.4f}  ({v / seconds:.0f}/s)")
    return {f"{who}/{call}": v / n for (who, call), v in calls.items()}


def cpu_profile(gw, mq, devices, rate, seconds, qos, seed, top=40):
    """Where the CPU goes over `seconds` of the steady load: `perf record` (cycles at 999 Hz, every
    thread of gatewayd, kernel included), printed as the share of samples per thread and the top
    symbols (self time) with the thread that ran them."""
    n, (out, by_comm) = perf_during_load(
        gw, mq, devices, rate, seconds, qos, seed, "pi-perf", ["-F", "999"],
        ["report", "--stdio", "--no-children", "--sort", "comm,dso,sym", "--percent-limit", "0.3"],
        ["report", "--stdio", "--no-children", "--sort", "comm"])
    print(f"\nCPU profile ({n:,} readings in {seconds} s), samples by thread:")
    print("\n".join(line for line in by_comm.splitlines() if line.strip() and not line.startswith("#")))
    print("top symbols (self):")
    rows = [line for line in out.splitlines() if line.strip() and not line.startswith("#")]
    print("\n".join(rows[:top]))


def median_of(runs):
    """Median of each numeric figure over the runs; NaN (a ratio to a drain that was not one)
    left out, NaN when every run's is."""
    def med(k):
        v = [r[k] for r in runs if r[k] == r[k]]
        return statistics.median(v) if v else float("nan")
    return {k: med(k) for k in runs[0] if isinstance(runs[0][k], (int, float)) and not isinstance(runs[0][k], bool)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--rate", type=int, help="readings/s of the steady and live load (default: --devices)")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--drain", type=int, default=200000, help="broker backlog of the baseline")
    ap.add_argument("--backlog", type=int, default=3000000, help="journaled backlog (0 = skip)")
    ap.add_argument("--big-runs", type=int, default=1)
    ap.add_argument("--qos", type=int, default=1)
    ap.add_argument("--gatewayd", help="another gatewayd binary (same load, e.g. before a change)")
    ap.add_argument("--count-allocs", action="store_true",
                    help="preload tests/tools/alloc_count and report heap allocations per reading")
    ap.add_argument("--by-thread", type=int, default=0, metavar="S",
                    help="then S s of steady load with system calls per reading by thread and call")
    ap.add_argument("--perf", type=int, default=0, metavar="S",
                    help="then S s of steady load under perf record: CPU by thread and symbol")
    ap.add_argument("--loop-disk", type=int, default=0, metavar="MIB",
                    help="gatewayd's state directory on an ext4 file system of MIB MiB on a loop device "
                         "of its own (root): adds the bytes that reached the device per reading")
    ap.add_argument("--json")
    a = ap.parse_args()
    rate = a.rate or a.devices
    if a.gatewayd:
        gwtest.GATEWAYD = Path(a.gatewayd).resolve()

    wd = Workdir("pi-bench")
    ok = False
    try:
        global DISK
        if a.loop_disk:
            DISK = LoopDisk(wd.path / "state", a.loop_disk)
        mq = Mosquitto(wd, persistence=False)
        kafka = KafkaBroker(wd)
        sub = gwtest.DEFAULT_SUBSCRIBE.replace("qos = 1", f"qos = {a.qos}")
        counts = wd.path / "alloc-counts"
        gw = Gatewayd(wd, mq.uri, kafka=kafka, client_id="pi-bench-gw", subscribe=sub, commit_interval=None,
                      own_group=True,  # see Gatewayd: no kernel SIGCONT while a drain stops it
                      env=unit_env(AllocCounter.env(counts) if a.count_allocs else None))
        allocs = AllocCounter(counts, gw.proc.p.pid) if a.count_allocs else None
        drains, steadies, bigs = [], [], []
        db = gw.wd.path / "state" / "journal.db"
        span0 = (status(gw), Sample(gw.proc.p.pid), checkpoint_debt(db), device_written())
        for i in range(a.runs):
            drains.append(drain(gw, mq, a.devices, a.drain, a.qos, 100 + i))
            print(f"run {i + 1}: drain {json.dumps(drains[-1])}", flush=True)
            if not drains[-1]["stopped_during_publish"]:
                print(f"run {i + 1}: NOT A DRAIN: gatewayd ran while the queue was published (state "
                      f"{drains[-1]['state_after_publish']}, {drains[-1]['cpu_s_during_publish']:.2f} s CPU): "
                      "left out of the drain medians and of the ratio", flush=True)
            steadies.append(steady(gw, mq, a.devices, rate, a.seconds, a.warmup, a.qos, 200 + i, allocs))
            # No ratio to a drain that was not one (or that spent no CPU).
            ok_drain = drains[-1]["stopped_during_publish"] and drains[-1]["cpu_us_per_reading"] > 0
            steadies[-1]["ratio_to_drain"] = (steadies[-1]["cpu_us_per_reading"]
                                              / drains[-1]["cpu_us_per_reading"] if ok_drain else float("nan"))
            print(f"run {i + 1}: steady {json.dumps(steadies[-1])}", flush=True)
        span1 = (status(gw), Sample(gw.proc.p.pid), checkpoint_debt(db), device_written())
        # The steady load only: the drains' readings (taken in large commits, cheaper) and bytes
        # left out; every change of the checkpoint debt counted.
        drained_n = sum(d["readings"] for d in drains)
        drained_b = sum(d["bytes_written_per_reading"] * d["readings"] for d in drains)
        span_n = span1[0]["readings"] - span0[0]["readings"] - drained_n
        span_b = span1[1].written - span0[1].written - drained_b
        span = {"readings": span_n, "seconds": span1[1].t - span0[1].t,
                "bytes_written_per_reading": span_b / span_n,
                "bytes_per_reading_with_checkpoints": (span_b + span1[2] - span0[2]) / span_n}
        if DISK:
            span_dev = span1[3] - span0[3] - sum(d["device_bytes"] for d in drains)
            span |= {"device_bytes_per_reading": span_dev / span_n,
                     "device_bytes_per_reading_with_checkpoints": (span_dev + span1[2] - span0[2]) / span_n}
        print(f"whole run, steady load (the drains left out): {json.dumps(span)}", flush=True)
        for i in range(a.big_runs if a.backlog else 0):
            bigs.append(big_backlog(gw, mq, kafka, a.devices, rate, a.backlog, a.qos, 300 + 10 * i))
            print(f"run {i + 1}: backlog {json.dumps(bigs[-1])}", flush=True)
        threads = by_thread(gw, mq, a.devices, rate, a.by_thread, a.qos, 400) if a.by_thread else None
        if a.perf:
            cpu_profile(gw, mq, a.devices, rate, a.perf, a.qos, 500)
        gw.proc.stop()
        res = {"whole_run": span, "syscalls_by_thread": threads,"devices": a.devices, "rate": rate, "seconds": a.seconds, "qos": a.qos, "runs": a.runs,
               "gatewayd": str(gwtest.GATEWAYD),
               "drain": median_of([d for d in drains if d["stopped_during_publish"]] or drains),
               "drains_not_stopped": sum(not d["stopped_during_publish"] for d in drains), "steady": median_of(steadies),
               "backlog": median_of(bigs) if bigs else None,
               "all": {"drain": drains, "steady": steadies, "backlog": bigs}}
        st, dr = res["steady"], res["drain"]
        print(f"\nmedians of {a.runs} runs, {a.devices:,} devices, {rate:,} readings/s, QoS {a.qos}:")
        print(f"  steady CPU {st['cpu_us_per_reading']:.2f} us/reading; drain {dr['cpu_us_per_reading']:.2f} "
              f"us/reading; ratio {st['ratio_to_drain']:.2f} (aim <= 2.0)"
              + (f"; {res['drains_not_stopped']} drain(s) left out (gatewayd was not stopped)"
                 if res["drains_not_stopped"] else ""))
        print(f"  syscalls {st['syscalls_per_reading']:.3f}/reading (aim <= 0.2): epoll_wait "
              f"{st['epoll_wait_per_reading']:.3f}, recvfrom+read {st['recv_read_per_reading']:.3f}, "
              f"write+sendto+sendmsg {st['send_write_per_reading']:.3f}, futex {st['futex_per_reading']:.3f}; "
              f"wakeups (voluntary switches) {st['voluntary_switches_per_reading']:.3f}/reading")
        print(f"  bytes written {st['bytes_written_per_reading']:.0f}/reading in the window, "
              f"{st['bytes_per_reading_with_checkpoints']:.0f}/reading with checkpoints accrued, "
              f"{st['bytes_per_reading_per_cycle']:.0f}/reading per checkpoint cycle, "
              f"{span['bytes_per_reading_with_checkpoints']:.0f}/reading over the whole run with checkpoints "
              f"accrued (aim <= 80); fsyncs "
              f"{st['fsyncs_per_s']:.1f}/s (<= 20); pwrite64 {st['pwrite64_per_s']:.0f}/s; commits "
              f"{st['commits_per_s']:.1f}/s")
        if DISK:
            print(f"  bytes sent to the state directory's device {st['device_bytes_per_reading']:.0f}/reading in "
                  f"the window, {st['device_bytes_per_reading_with_checkpoints']:.0f}/reading with checkpoints "
                  f"accrued, {span['device_bytes_per_reading_with_checkpoints']:.0f}/reading over the whole run "
                  f"with checkpoints accrued (ext4 on a loop device: data, metadata and ext4's journal)")
        print(f"  VmRSS {st['vmrss_mib']:.1f} MiB (<= 32); publish->Kafka ack p50 {st['latency_p50_ms']:.1f} "
              f"ms, p99 {st['latency_p99_ms']:.1f} ms (<= 30)")
        if allocs:
            print(f"  heap allocations {st['allocs_per_reading']:.2f}/reading, on the event loop's thread "
                  f"{st['loop_allocs_per_reading']:.2f}/reading")
        if bigs:
            bg = res["backlog"]
            print(f"  backlog {bg['backlog']:,} with {rate:,}/s live: drained at "
                  f"{bg['drain_rate_per_s']:,.0f}/s (aim >= 50,000), {bg['cpu_us_per_confirmed_reading']:.2f} "
                  f"us CPU per confirmed reading")
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=2))
        ok = True
    finally:
        if DISK:  # gatewayd (and the rest) off the file system before it is unmounted
            for proc in reversed(wd.procs):
                try:
                    proc.stop()
                except Exception:
                    pass
            DISK.close()
        wd.close(failed=not ok)


if __name__ == "__main__":
    main()
