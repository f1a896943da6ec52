#!/usr/bin/env python3
"""Scale benchmark (issue 13, "100,000 series"). Not a timed test: it reports figures.

For each number of distinct series (default 50, 1k, 10k, 100k, 1M; one device = one series: one
metric per device), a fresh gatewayd with the default [limits], 10-second windows and a
`no_data_for` rule on metric = "*" takes QoS 0 JSON readings from gw-sim through Mosquitto
and forwards them to the Kafka test broker. Reported per size:

  - readings/s confirmed by Kafka (slope between 10 % and 90 % of the load), and its ratio to
    the 50-device rate of the same run (the baseline);
  - lost: readings published − readings confirmed by Kafka (must be 0);
  - peak RSS (VmHWM) and bytes per series ((VmHWM − VmHWM at 50 devices) / series);
  - CPU µs per reading (utime + stime of gatewayd over the load / readings);
  - the longest event-loop stall seen from outside: the slowest `status` answer of the control
    socket polled every 100 ms during the flood;
  - after the flood: the control views' answer time and size (status, sensors, alerts; median
    of 5) and /metrics' answer time and size.

Each figure is the median of --runs floods of --count readings (at least one per series) into
the same gatewayd. `--gatewayd PATH` runs another build (e.g. the code before a change) with
the same load; the control requests are raw socket requests, so an older daemon answers too.
`--preload LIB` runs gatewayd with LD_PRELOAD=LIB (to compare allocators: jemalloc, mimalloc).
`--perf DIR` records the event loop's thread during each size's first flood (the one that first
sees its series) with `perf record` (CPU samples with DWARF call graphs, context switches and the
loop's `epoll_wait` calls) into DIR/perf-<series>.data, to find what holds the loop between two
calls of `epoll_wait` (issue 13, docs/performance.md, "Loop turns"); a measurement aid, it slows gatewayd.

Usage: tests/bench/scale_bench.py [--sizes 50,1000,...] [--runs 3] [--count 300000] [--json F]
"""
import argparse
import json
import signal
import subprocess
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import gwtest  # noqa: E402
from gwtest import Gatewayd, KafkaBroker, Mosquitto, Workdir, free_port  # noqa: E402

RULES = """
[[alert]]
name = "sensor-silent"
device = "*"
metric = "*"
no_data_for = "60s"
severity = "warning"
"""


def sim(uri, devices, count, seed):
    return benchlib.sim(uri, "--devices", devices, "--metrics", "temp", "--count", count, "--rate", 0,
                        "--qos", 0, "--seed", seed, "--client-id", f"scale-sim-{seed}")


request = benchlib.request
proc_figures = benchlib.proc_figures  # (CPU seconds, VmHWM KiB, VmRSS KiB)


def kafka_sent(gw):
    s = gw.stats()
    return s["sinks"]["kafka"]["sent"] if s else 0


def loop_stall(gw, seen):
    """The loop's stall over the last 10-20 s from gatewayd's last stats line (an older gatewayd
    without the figure: None), with the named handler that ran longest, the loop's longest CPU
    time in a stall and its longest wait for a CPU in one (run queue; None from a gatewayd
    without it) (issue 13)."""
    s = gw.stats() or {}
    lim = s.get("limits") or {}
    if "loop_stall_recent_ms" not in lim:
        return seen
    work = lim.get("loop_work_recent") or {}
    now = (lim["loop_stall_recent_ms"], f"{work.get('name', '?')} {work.get('ms', 0)} ms" if work else None,
           lim.get("loop_stall_cpu_recent_ms"), lim.get("loop_stall_runq_recent_ms"))
    if seen is None:
        return now
    cpu = max(x for x in (now[2], seen[2], -1) if x is not None)
    runq = max(x for x in (now[3], seen[3], -1) if x is not None)
    best = now if now[0] > seen[0] else seen
    return (best[0], best[1], cpu if cpu >= 0 else None, runq if runq >= 0 else None)


def perf_record(pid, out):
    """perf on gatewayd's loop thread (the main thread: its tid is the pid) until stopped."""
    return subprocess.Popen(
        ["perf", "record", "-q", "-F", "1999", "-e", "cpu-clock", "-e", "syscalls:sys_enter_epoll_wait",
         "-e", "syscalls:sys_exit_epoll_wait",
         "--switch-events", "--call-graph", "dwarf,16384", "-t", str(pid), "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def flood(gw, mq, devices, count, seed, perf=None):
    """Publishes `count` readings over `devices` devices; returns the figures of this flood.
    perf: a perf.data path to record the loop thread into during the flood."""
    base = kafka_sent(gw)
    rec = perf_record(gw.proc.p.pid, perf) if perf else None
    cpu0, _, _ = proc_figures(gw.proc.p.pid)
    result = {}
    t = threading.Thread(target=lambda: result.update(sim(mq.uri, devices, count, seed)))
    t.start()
    points, stall, last_seen, loop = [], 0.0, None, None
    last_poll = 0.0
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        now = time.monotonic()
        if now - last_poll >= 0.1:  # the control socket during the flood
            last_poll = now
            stall = max(stall, request(gw.wd.path / "control.sock", "status")[0])
        sent = kafka_sent(gw) - base
        loop = loop_stall(gw, loop)
        if last_seen != sent:
            points.append((time.monotonic(), sent))
            last_seen = sent
        if not t.is_alive() and len(points) > 2 and points[-1][0] < time.monotonic() - 5:
            break  # no progress for 5 s after the publisher finished
        time.sleep(0.05)
    t.join()
    if rec:
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=120)
    loop = loop_stall(gw, loop)
    cpu1, _, _ = proc_figures(gw.proc.p.pid)
    published = int(result.get("sent", 0))
    total = points[-1][1] if points else 0
    lo = [p for p in points if p[1] >= 0.1 * total][0]
    hi = [p for p in points if p[1] >= 0.9 * total][0]
    rate = (hi[1] - lo[1]) / (hi[0] - lo[0]) if hi[0] > lo[0] else float("nan")
    return {"rate": rate, "published": published, "kafka": total,
            "cpu_us_per_reading": (cpu1 - cpu0) * 1e6 / max(1, published),
            "status_max_ms": stall * 1000,
            "loop_stall_ms": loop[0] if loop else None, "loop_work": loop[1] if loop else None,
            "loop_stall_cpu_ms": loop[2] if loop else None, "loop_stall_runq_ms": loop[3] if loop else None}


def views(gw, metrics_port):
    out = {}
    for name in ("status", "sensors", "alerts"):
        times, size = [], 0
        for _ in range(5):
            dt, body = request(gw.wd.path / "control.sock", name)
            times.append(dt)
            size = len(body)
        out[f"{name}_ms"] = statistics.median(times) * 1000
        out[f"{name}_bytes"] = size
    times, size = [], 0
    for _ in range(5):
        t0 = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=60) as r:
            body = r.read()
            size = len(body)
        times.append(time.monotonic() - t0)
    out["metrics_ms"] = statistics.median(times) * 1000
    out["metrics_bytes"] = size
    # The longest run of each named kind of loop work since start (ms; an older gatewayd: none).
    out["loop_work_max_ms"] = {
        line.split('work="')[1].split('"')[0]: round(float(line.rsplit(" ", 1)[1]) * 1000, 1)
        for line in body.decode().splitlines() if line.startswith("iot_gateway_loop_work_max_seconds{")}
    return out


def wait_alerts(gw, devices, res):
    """--wait-alerts: past no_data_for, until every series' alert fired and left the journal."""
    _, hwm0, _ = proc_figures(gw.proc.p.pid)
    res["vmhwm_before_alerts_kib"] = hwm0
    try:
        st = gw.wait_stats("every series' no_data_for alert fired and sent",
                           lambda s: s.get("alerts", {}).get("firing", 0) >= devices
                           and s["sinks"]["kafka"]["backlog"] == 0, timeout=240)
    except Exception:
        st = gw.stats()
    _, hwm, rss = proc_figures(gw.proc.p.pid)
    res.update({"alerts_firing": st.get("alerts", {}).get("firing"), "alerts_stuck": st["sinks"]["kafka"]["backlog"],
                "vmhwm_after_alerts_kib": hwm, "vmrss_after_alerts_kib": rss})
    print(f"  {devices:>9,} series: {res['alerts_firing']:,} alerts firing; VmHWM "
          f"{hwm0 / 1024:.1f} -> {hwm / 1024:.1f} MiB, VmRSS {rss / 1024:.1f} MiB", flush=True)


def one_size(wd, mq, kafka, devices, runs, count, env=None, alerts=False, perf_dir=None, max_series=None):
    metrics_port = free_port()
    limits = f"\n[limits]\nmax_series = {max_series}\n" if max_series else ""
    gw = Gatewayd(wd, mq.uri, kafka=kafka, client_id=f"scale-gw-{devices}", env=env,
                  subscribe=gwtest.DEFAULT_SUBSCRIBE.replace("qos = 1", "qos = 0"),
                  extra=RULES + f'\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n' + limits)
    try:
        n = max(count, devices)
        floods = []
        for i in range(runs):
            perf = Path(perf_dir) / f"perf-{devices}.data" if perf_dir and i == 0 else None
            f = flood(gw, mq, devices, n, seed=devices + i, perf=perf)
            floods.append(f)
            print(f"  {devices:>9,} series, run {i + 1}: {f['rate']:,.0f} readings/s "
                  f"({f['published']:,} published, {f['kafka']:,} Kafka confirmations); loop stall "
                  f"{f['loop_stall_ms']} ms, {f['loop_stall_cpu_ms']} ms on the CPU, "
                  f"{f['loop_stall_runq_ms']} ms waiting for one (longest named work: "
                  f"{f['loop_work']})", flush=True)
        published = sum(f["published"] for f in floods)
        # Settled: every reading journaled and the Kafka backlog drained (or 30 s without change).
        try:
            st = gw.wait_stats("every reading journaled and sent", lambda s: s["readings"] >= published
                               and s["sinks"]["kafka"]["backlog"] == 0, timeout=60)
        except Exception:
            st = gw.stats()
        cpu, hwm, rss = proc_figures(gw.proc.p.pid)
        res = {
            "series": devices,
            "readings_per_s": statistics.median(f["rate"] for f in floods),
            "published": published,
            "readings_journaled": st["readings"],
            "lost": published - st["readings"],
            "stuck_in_journal": st["sinks"]["kafka"]["backlog"],
            "cpu_us_per_reading": statistics.median(f["cpu_us_per_reading"] for f in floods),
            "status_max_ms_during_flood": max(f["status_max_ms"] for f in floods),
            "vmhwm_kib": hwm,
            "vmrss_kib": rss,
            "limits": st.get("limits"),
            "loop_stall_ms_per_flood": [f["loop_stall_ms"] for f in floods],
            "loop_work_per_flood": [f["loop_work"] for f in floods],
            "loop_stall_cpu_ms_per_flood": [f["loop_stall_cpu_ms"] for f in floods],
            "loop_stall_runq_ms_per_flood": [f["loop_stall_runq_ms"] for f in floods],
            # The stalls gatewayd logged (over 100 ms, rate-limited), with what held the loop.
            "stall_log": [l for l in gw.text().splitlines() if "event loop held" in l][:20],
        }
        res.update(views(gw, metrics_port))
        if alerts:
            wait_alerts(gw, devices, res)
        if res["lost"] > 0:  # the logs say where (a disconnect, the broker, gatewayd), before they go
            for name, text in (("gatewayd", gw.text()), ("mosquitto", mq.proc.text())):
                tail = [l for l in text.splitlines() if "stats " not in l][-25:]
                print(f"  {res['lost']:,} lost: the last lines of {name}'s log:\n    " + "\n    ".join(tail),
                      flush=True)
        return res
    finally:
        gw.proc.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="50,1000,10000,100000,1000000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big-runs", type=int, default=1, help="runs for sizes of 1M series and more")
    ap.add_argument("--count", type=int, default=300000, help="readings per flood (≥ series)")
    ap.add_argument("--gatewayd", help="another gatewayd binary (same load, e.g. before a change)")
    ap.add_argument("--preload", help="LD_PRELOAD for gatewayd (e.g. an allocator: libjemalloc.so.2)")
    ap.add_argument("--wait-alerts", action="store_true",
                    help="wait until every series' no_data_for alert fired (60 s after its flood); VmHWM then")
    ap.add_argument("--perf", metavar="DIR", help="perf record of the loop thread in each size's first flood")
    ap.add_argument("--max-series", type=int, help="[limits] max_series (default: gatewayd's, 200,000)")
    ap.add_argument("--json")
    a = ap.parse_args()
    env = benchlib.unit_env({"LD_PRELOAD": a.preload} if a.preload else None)
    if a.gatewayd:
        gwtest.GATEWAYD = Path(a.gatewayd).resolve()
    sizes = [int(x) for x in a.sizes.split(",")]

    wd = Workdir("scale-bench")
    ok = False
    try:
        mq = Mosquitto(wd, persistence=False)
        results = []
        for n in sizes:
            # A fresh folder (journal) and Kafka broker per size: the mock cluster keeps every record.
            wn = Workdir(f"scale-bench-{n}")
            try:
                kafka = KafkaBroker(wn)
                runs = a.big_runs if n >= 1_000_000 else a.runs
                results.append(one_size(wn, mq, kafka, n, runs, a.count, env, a.wait_alerts, a.perf,
                                        a.max_series))
            finally:
                wn.close(failed=False)
            print(json.dumps(results[-1]), flush=True)
        base = results[0]
        print(f"\n{'series':>10} {'readings/s':>11} {'ratio':>6} {'lost':>5} {'stuck':>5} {'VmHWM MiB':>10} "
              f"{'B/series':>9} {'CPU us/rd':>9} {'status max':>10} {'sensors':>16} {'metrics':>18}")
        for r in results:
            r["ratio_to_first"] = r["readings_per_s"] / base["readings_per_s"]
            r["bytes_per_series"] = ((r["vmhwm_kib"] - base["vmhwm_kib"]) * 1024 / r["series"]
                                     if r is not base else None)
            bps = f"{r['bytes_per_series']:,.0f}" if r["bytes_per_series"] is not None else "-"
            print(f"{r['series']:>10,} {r['readings_per_s']:>11,.0f} {r['ratio_to_first']:>6.2f} "
                  f"{r['lost']:>5} {r['stuck_in_journal']:>5} {r['vmhwm_kib'] / 1024:>10.1f} {bps:>9} "
                  f"{r['cpu_us_per_reading']:>9.1f} {r['status_max_ms_during_flood']:>8.0f}ms "
                  f"{r['sensors_ms']:>6.0f}ms {r['sensors_bytes']:>7,}B "
                  f"{r['metrics_ms']:>6.0f}ms {r['metrics_bytes']:>9,}B")
        if a.json:
            Path(a.json).write_text(json.dumps(results, indent=2))
        ok = True
    finally:
        wd.close(failed=not ok)


if __name__ == "__main__":
    main()
