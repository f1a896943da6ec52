#!/usr/bin/env python3
"""Instructions per reading (issue 16): repeatable where CPU time on a shared machine is not.

gatewayd runs under `valgrind --tool=callgrind` without instrumentation while it starts; gw-sim
publishes --warm readings from --devices devices (every device and series is seen once, the
windows open), then instrumentation is switched on (`callgrind_control -i on`), --count readings
are published at --rate readings/s and gatewayd journals them and forwards them to the Kafka
test broker; when every reading is journaled and confirmed, the counters are dumped. The
figure is the instructions (Ir) of every thread of gatewayd over that time divided by the
readings: decoding, clock, journal, windows, the Kafka sink and librdkafka together — what
the device's CPU has to execute, without the kernel's share (system calls and wakeups, which
pi_bench.py counts). `--gatewayd PATH` measures another build with the same load (e.g. the
code before a change); `--top N` also prints the N functions with the most instructions
(inclusive, from callgrind_annotate).

Usage: tests/bench/callgrind_bench.py [--devices 1000] [--count 10000] [--rate 1000] [--qos 1]
                                      [--gatewayd PATH] [--top 0] [--json F]
"""
import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import request, sim  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import gwtest  # noqa: E402
from gwtest import Gatewayd, KafkaBroker, Mosquitto, Workdir, wait_until  # noqa: E402


def status(gw):
    s = json.loads(request(gw.wd.path / "control.sock", "status")[1])
    kafka = [k for k in s["sinks"] if k["name"] == "kafka"][0]
    return s["readings"], kafka["backlog"]


def callgrind_control(*args):
    subprocess.run(["callgrind_control", *map(str, args)], check=True, capture_output=True, timeout=120)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--warm", type=int, help="readings published before counting (default: --devices)")
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--qos", type=int, default=1)
    ap.add_argument("--gatewayd", help="another gatewayd binary (same load, e.g. before a change)")
    ap.add_argument("--top", type=int, default=0)
    ap.add_argument("--json")
    a = ap.parse_args()
    binary = Path(a.gatewayd).resolve() if a.gatewayd else gwtest.GATEWAYD
    if not binary.exists():
        raise SystemExit(f"{binary} is missing: build the tree first (scripts/build)")

    wd = Workdir("callgrind-bench")
    ok = False
    try:
        out = wd.path / "callgrind.out"
        wrapper = wd.path / "gatewayd-under-callgrind"
        wrapper.write_text(f"#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no "
                           f"--callgrind-out-file={out} {binary} \"$@\"\n")
        wrapper.chmod(0o755)
        gwtest.GATEWAYD = wrapper
        mq = Mosquitto(wd, persistence=False)
        kafka = KafkaBroker(wd)
        sub = gwtest.DEFAULT_SUBSCRIBE.replace("qos = 1", f"qos = {a.qos}")
        gw = Gatewayd(wd, mq.uri, kafka=kafka, client_id="callgrind-bench-gw", subscribe=sub,
                      commit_interval=None)
        pid = gw.proc.p.pid

        def settled(target):
            n, backlog = status(gw)
            return n >= target and backlog == 0

        warm = a.warm if a.warm is not None else a.devices
        sim(mq.uri, "--devices", a.devices, "--metrics", "temp", "--count", warm, "--rate", a.rate,
            "--qos", a.qos, "--seed", 1, "--client-id", "callgrind-warm")
        wait_until("the warm-up journaled and sent", lambda: settled(warm), timeout=300, interval=0.5)
        before, _ = status(gw)
        callgrind_control("-i", "on", pid)
        t0 = time.monotonic()
        sim(mq.uri, "--devices", a.devices, "--metrics", "temp", "--count", a.count, "--rate", a.rate,
            "--qos", a.qos, "--seed", 2, "--client-id", "callgrind-run")
        wait_until("every reading journaled and sent", lambda: settled(before + a.count), timeout=600,
                   interval=0.5)
        seconds = time.monotonic() - t0
        callgrind_control("-d", pid)
        callgrind_control("-i", "off", pid)
        dumps = sorted(wd.path.glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
        text = dumps[-1].read_text(errors="replace")
        m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if not m:
            raise RuntimeError(f"{dumps[-1]}: no totals line")
        ir = int(m.group(1))
        n = status(gw)[0] - before
        res = {"gatewayd": str(binary), "devices": a.devices, "readings": n, "qos": a.qos,
               "rate": a.rate, "seconds": seconds, "instructions": ir, "instructions_per_reading": ir / n}
        print(f"{n:,} readings from {a.devices:,} devices at {a.rate:,}/s, QoS {a.qos}: "
              f"{ir / n:,.0f} instructions per reading (every thread; {ir:,} in all)")
        if a.top:
            ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(dumps[-1])],
                                 capture_output=True, text=True, timeout=300).stdout
            rows = [l for l in ann.splitlines() if re.match(r"^\s*[\d,]+ \(", l)]
            print("\n".join(rows[:a.top]))
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=2))
        gw.proc.stop()
        ok = True
    finally:
        wd.close(failed=not ok)


if __name__ == "__main__":
    main()
