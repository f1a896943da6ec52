#!/usr/bin/env python3
"""What `buffer.synchronous` costs (issue 17, "Power cuts"). Not a timed test: it reports figures.

For each setting (normal, full), in the same run: gatewayd with Kafka up, gw-sim publishing QoS 1
readings as fast as acknowledgements come back (PUBACK only after the journal commit).
  pass 1: QoS 1 readings/s (gw-sim's rate), bytes written by gatewayd per reading
          (/proc/PID/io write_bytes), journal commits/s;
  pass 2: the same load with `strace -c -f -e trace=fsync,fdatasync -p PID` attached for the
          whole run: fsync + fdatasync calls per second (strace slows gatewayd down: the rate of
          pass 1 is the one to quote).
Usage: tests/bench/sync_bench.py [--count 40000] [--runs 3]
"""
import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from gwtest import Gatewayd, KafkaBroker, Mosquitto, Workdir  # noqa: E402


def sim(uri, count, seed):
    return benchlib.sim(uri, "--devices", 50, "--count", count, "--rate", 0, "--qos", 1, "--seed", seed,
                        timeout=600)


write_bytes = benchlib.write_bytes


def one(sync, count, seed):
    wd = Workdir(f"sync-bench-{sync}")
    try:
        mq = Mosquitto(wd)
        kafka = KafkaBroker(wd)
        gw = Gatewayd(wd, mq.uri, kafka=kafka, buffer=f'synchronous = "{sync}"')
        pid = gw.proc.p.pid
        commits0 = gw.wait_stats("stats", lambda s: True)["journal"]["commits"]
        w0 = write_bytes(pid)
        s = sim(mq.uri, count, seed)
        rate = float(s["rate"])
        elapsed = float(s["elapsed_s"])
        written = write_bytes(pid) - w0
        commits = gw.wait_stats("stats after the load", lambda st: st["readings"] >= count)["journal"]["commits"]
        # Pass 2: fsyncs under strace.
        out = wd.path / "strace.txt"
        st = subprocess.Popen(["strace", "-c", "-f", "-e", "trace=fsync,fdatasync", "-o", str(out),
                               "-p", str(pid)], stderr=subprocess.DEVNULL)
        time.sleep(1)  # strace attaches to every thread (not a synchronisation of the test kind)
        t0 = time.monotonic()
        sim(mq.uri, count, seed + 1)
        t = time.monotonic() - t0
        st.terminate()
        st.wait(timeout=30)
        calls = 0
        for line in out.read_text().splitlines():
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)\s*$", line)
            if m:
                calls += int(m.group(1))
        return {"rate": rate, "bytes_per_reading": written / count,
                "commits_per_s": (commits - commits0) / elapsed, "fsyncs_per_s": calls / t}
    finally:
        wd.close(False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=40000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    results = {"normal": [], "full": []}
    for r in range(a.runs):
        for sync in results:  # alternate, so both see the same machine
            results[sync].append(one(sync, a.count, 100 + r))
            print(sync, results[sync][-1], flush=True)
    print("\nmedians of", a.runs, "runs,", a.count, "QoS 1 readings each:")
    for sync, rs in results.items():
        med = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
        print(f"  synchronous={sync}: {med['rate']:,.0f} readings/s, {med['fsyncs_per_s']:,.1f} "
              f"fsync+fdatasync/s (under strace), {med['commits_per_s']:,.1f} commits/s, "
              f"{med['bytes_per_reading']:,.0f} bytes written per reading")


if __name__ == "__main__":
    main()
