#!/usr/bin/env python3
"""CoAP benchmark (issue 7, "Performance"). Not a timed test: it reports figures.

gw-coap-load (tests/tools/coap: plain UDP sockets, each a "device" with --window requests in
flight) PUTs value readings:
  1. baseline: a bare libcoap server (gw-coap-server --sink) that answers every PUT 2.04 at
     once and does nothing else, NON and CON;
  2. gatewayd with one [[coap.resource]], journal only (no sink), group commit 20 ms:
     NON: answered once the reading is appended (commit follows within 20 ms);
     CON: answered (separate response) only after the journal commit;
  3. CON again with --nstart-sockets devices and one request in flight each (NSTART = 1, what
     RFC 7252 4.7 asks of a client, so what real devices do).
The rate is answered requests per second as the generator sees them; for gatewayd every run
also checks that the journal holds exactly the readings that were answered 2.04.
Each figure is the median of --runs repetitions; baseline and gatewayd alternate in each run.
Usage: tests/bench/coap_bench.py [--runs 5] [--count 50000] [--sockets 16] [--window 8]
                                 [--nstart-sockets 64]
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from gwtest import BUILD, Gatewayd, Mosquitto, Proc, Workdir, wait_until  # noqa: E402

LOAD = BUILD / "tests" / "tools" / "coap" / "gw-coap-load"
SERVER = BUILD / "tests" / "tools" / "coap" / "gw-coap-server"


def load(port, count, sockets, window, confirmable):
    argv = [LOAD, "--port", port, "--count", count, "--sockets", sockets, "--window", window]
    if confirmable:
        argv.append("--confirmable")
    p = subprocess.run([str(a) for a in argv], capture_output=True, timeout=600)
    line = p.stdout.decode().strip().splitlines()[-1]
    r = dict(kv.split("=", 1) for kv in line.split())
    return {k: float(v) for k, v in r.items()}


def baseline(wd, args, shape):
    srv = wd.track(Proc("sink", [SERVER, "--sink", "--port", "0"], wd.path))
    port = wait_until("gw-coap-server", lambda: next(
        (int(l[5:]) for l in srv.text().splitlines() if l.startswith("PORT=")), None))
    r = load(port, args.count, *shape)
    srv.stop()
    return r


def gatewayd(wd, mq, args, shape):
    gw = Gatewayd(wd, mq.uri, extra="""
[coap]
listen = "127.0.0.1:0"
[[coap.resource]]
path = "sensors/{device}/{metric}"
format = "value"
""")
    import re
    port = wait_until("gatewayd CoAP port", lambda: (lambda m: int(m.group(1)) if m else None)(
        re.search(r"coap: listening on 127\.0\.0\.1:(\d+) UDP", gw.text())))
    r = load(port, args.count, *shape)
    # Every reading answered 2.04 went into the journal and was committed (NON: within the
    # commit interval). Rows are pruned as there is no sink, so the counters tell: readings
    # appended, and the last committed sequence number (which also counts window aggregates).
    st = gw.wait_stats("every answered reading committed",
                       lambda s: s["readings"] >= r["ok"] and s["journal"]["last_seq"] >= s["readings"])
    assert st["journal"]["commit_failures"] == 0
    r["journal"] = st["readings"]
    rss = 0
    for line in open(f"/proc/{gw.proc.p.pid}/status"):
        if line.startswith("VmHWM:"):
            rss = int(line.split()[1]) / 1024
    r["rss_mib"] = rss
    gw.proc.stop()
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--count", type=int, default=50000)
    ap.add_argument("--sockets", type=int, default=16)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--nstart-sockets", type=int, default=64)
    ap.add_argument("--json")
    args = ap.parse_args()
    shapes = {"non": (args.sockets, args.window, False), "con": (args.sockets, args.window, True),
              "con_nstart1": (args.nstart_sockets, 1, True)}
    results = {f"{who}_{mode}": [] for mode in shapes for who in ("base", "gw")}
    for run in range(args.runs):
        for mode, shape in shapes.items():
            wd = Workdir(f"coap-bench-{mode}")
            try:
                results["base_" + mode].append(baseline(wd, args, shape))
                mq = Mosquitto(wd, persistence=False)
                results["gw_" + mode].append(gatewayd(wd, mq, args, shape))
            finally:
                wd.close(False)
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]['rate']:.0f}/s" for k, v in results.items()),
              flush=True)

    def med(k, f="rate"):
        return statistics.median(r[f] for r in results[k])

    summary = {"runs": args.runs, "count": args.count, "shapes (sockets, window, CON)": shapes}
    for mode in shapes:
        summary[f"bare_libcoap_{mode}"] = med("base_" + mode)
        summary[f"gatewayd_{mode}"] = med("gw_" + mode)
        summary[f"ratio_{mode}"] = summary[f"gatewayd_{mode}"] / summary[f"bare_libcoap_{mode}"]
        summary[f"gatewayd_{mode}_p50_ms"] = med("gw_" + mode, "p50_ms")
        summary[f"gatewayd_{mode}_p99_ms"] = med("gw_" + mode, "p99_ms")
    summary["failed"] = sum(r["failed"] for v in results.values() for r in v)
    summary["retransmitted"] = sum(r["retransmitted"] for v in results.values() for r in v)
    summary["gatewayd_peak_rss_mib"] = max(r["rss_mib"] for k in results if k.startswith("gw_")
                                           for r in results[k])
    summary["journal_matches_answers"] = all(r["journal"] == r["ok"] for k in results
                                             if k.startswith("gw_") for r in results[k])
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
