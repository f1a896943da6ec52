#!/usr/bin/env python3
"""End-to-end benchmark (issue 2, "Performance"). Not a timed test: it reports figures.

  1. ceiling: gw-sim publishes QoS 0 JSON readings as fast as Mosquitto takes them; a bare
     Paho subscriber that only counts reports its rate.
  2. gatewayd: the same load; readings/s confirmed by Kafka delivery reports (gatewayd's
     per-second stats), and the ratio to the ceiling.
  3. latency: gw-sim at a fixed 10k/s; gatewayd's per-sink delivery age (Kafka acknowledgement
     time − the reading's publish timestamp), p50/p99.
  4. peak RSS of gatewayd (VmHWM) over the whole run.
  5. gatewayd's QoS 1 rate (PUBACK only after the journal commit) against a bare QoS 1 subscriber,
     with what bounds it: gatewayd's CPU per reading and its most unacknowledged messages (when
     that stays below mqtt.receive_maximum, the acknowledgement cycle is not the limit: the
     publisher's window through the broker is).

Each figure is the median of --runs repetitions. A rate's baseline run comes right before it
(bare, gatewayd, bare, gatewayd, …: the bare runs publish on another topic, so gatewayd idles
through them), and the ratio is the median of those pairs' ratios: on this shared 2-core machine
single runs vary by ±15 %, and pairs see the same load.
Usage: tests/bench/e2e_bench.py [--runs 3] [--seconds 10] [--gatewayd OLD] [--json out.json]
"""
import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import gwtest  # noqa: E402
from gwtest import BARE_SUB, Gatewayd, KafkaBroker, Mosquitto, Proc, Workdir, wait_until  # noqa: E402


def sim(wd, uri, *args, name="sim"):
    return benchlib.sim(uri, *args, timeout=600)


def bare_rate(wd, mq, count, qos=0):
    """The bare subscriber's rate, on a topic gatewayd does not subscribe to."""
    ready = wd.path / "bare.ready"
    if ready.exists():
        ready.unlink()
    sub = subprocess.Popen([str(BARE_SUB), "--uri", mq.uri, "--topic", "bare/#", "--qos", str(qos),
                            "--count", str(count), "--idle-timeout", "3", "--ready-file", str(ready)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_until("bare subscriber ready", ready.exists)
    sim(wd, mq.uri, "--devices", 50, "--count", count, "--rate", 0, "--qos", qos, "--seed", 1,
        "--topic-template", "bare/{line}/{device}/{metric}")
    out = sub.communicate(timeout=120)[0].decode()
    m = dict(kv.split("=", 1) for kv in out.strip().splitlines()[-1].split())
    return float(m["rate"]), int(m["received"])


def gatewayd_rate(wd, gw, mq, count, qos=0, seen=None):
    """Readings/s delivered to Kafka: slope of kafka.sent between 10% and 90% of the load.
    seen: filled with gatewayd's CPU µs per reading and its most unacknowledged QoS 1 messages
    in a stats line (one a second)."""
    base = gw.wait_stats("gatewayd stats", lambda s: True)["sinks"]["kafka"]["sent"]
    cpu0 = benchlib.cpu_seconds(gw.proc.p.pid)
    in_flight = 0
    t = threading.Thread(target=sim, args=(wd, mq.uri, "--devices", 50, "--count", count, "--rate", 0,
                                           "--qos", qos, "--seed", 2))
    t.start()
    points = []  # (monotonic, sent)
    deadline = time.monotonic() + 300
    last_seen = None
    while time.monotonic() < deadline:
        s = gw.stats()
        sent = s["sinks"]["kafka"]["sent"] - base
        in_flight = max(in_flight, s["mqtt"]["in_flight"])
        if last_seen != sent:
            points.append((time.monotonic(), sent))
            last_seen = sent
        if not t.is_alive() and len(points) > 2 and points[-1][0] < time.monotonic() - 3:
            break  # no progress for 3 s after the publisher finished
        time.sleep(0.05)
    t.join()
    total = points[-1][1]
    rate = benchlib.slope(points)
    if seen is not None:
        seen["cpu_us"] = (benchlib.cpu_seconds(gw.proc.p.pid) - cpu0) / max(total, 1) * 1e6
        seen["in_flight_max"] = in_flight
    return rate, total


def latency(wd, gw, mq, seconds, rate=10000):
    """p50/p99 ms from publish to Kafka's acknowledgement (acks=all) at a fixed rate.

    gatewayd measures each delivered record's age when Kafka confirms it (confirmation time −
    event time; the event time is the simulator's publish timestamp, same host clock) over its
    last 8192 deliveries; sampled every second, the medians of those windows are reported.
    """
    p50s, p99s = [], []
    t = threading.Thread(target=sim, args=(wd, mq.uri, "--devices", 50, "--count", rate * seconds,
                                           "--rate", rate, "--qos", 0, "--seed", 3))
    t.start()
    time.sleep(1.5)  # skip the start-up second (the sampling cadence, not a synchronisation)
    while t.is_alive():
        k = gw.stats()["sinks"]["kafka"]
        p50s.append(k["age_p50_ms"])
        p99s.append(k["age_p99_ms"])
        time.sleep(1)
    t.join()
    return statistics.median(p50s), statistics.median(p99s), len(p50s)


def rss_kb(pid):
    return benchlib.memory_kib(pid)[0]  # VmHWM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--count", type=int, default=200000, help="readings per throughput run")
    ap.add_argument("--seconds", type=int, default=10, help="length of the 10k/s latency run")
    ap.add_argument("--gatewayd", help="another gatewayd binary (same load, e.g. before a change)")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.gatewayd:
        gwtest.GATEWAYD = Path(a.gatewayd).resolve()

    with Workdir("bench") as wd:
        mq = Mosquitto(wd, persistence=False)
        kafka = KafkaBroker(wd)
        bare, daemon, q1, q1_bare, q1_cpu, q1_flight = [], [], [], [], [], []
        gw = Gatewayd(wd, mq.uri, kafka=kafka, client_id="bench-gw",
                      subscribe=gwtest.DEFAULT_SUBSCRIBE.replace("qos = 1", "qos = 0"))
        for i in range(a.runs):
            r, n = bare_rate(wd, mq, a.count)
            bare.append(r)
            print(f"run {i + 1}: bare subscriber {r:,.0f}/s ({n} received)", flush=True)
            r, n = gatewayd_rate(wd, gw, mq, a.count)
            daemon.append(r)
            print(f"run {i + 1}: gatewayd -> Kafka {r:,.0f}/s ({n} delivered)", flush=True)
        p50, p99, nlat = latency(wd, gw, mq, a.seconds)
        print(f"publish->Kafka ack at 10k/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({nlat} one-second windows)",
              flush=True)
        rss = rss_kb(gw.proc.p.pid)
        gw.proc.stop()
        # QoS 1 end to end (PUBACK to the broker only after the journal commit), against a bare
        # QoS 1 Paho subscriber (which acknowledges on receipt) with the same QoS 1 publisher.
        gw1 = Gatewayd(wd, mq.uri, kafka=kafka, client_id="bench-gw-q1")
        for i in range(a.runs):
            r, n = bare_rate(wd, mq, a.count // 2, qos=1)
            q1_bare.append(r)
            print(f"run {i + 1}: bare QoS 1 subscriber {r:,.0f}/s ({n} received)", flush=True)
            seen = {}
            r, n = gatewayd_rate(wd, gw1, mq, a.count // 2, qos=1, seen=seen)
            q1.append(r)
            q1_cpu.append(seen["cpu_us"])
            q1_flight.append(seen["in_flight_max"])
            print(f"run {i + 1}: gatewayd QoS 1 -> Kafka {r:,.0f}/s ({n} delivered, "
                  f"{seen['cpu_us']:.2f} µs CPU each, at most {seen['in_flight_max']} unacknowledged)",
                  flush=True)
        gw1.proc.stop()
        res = {
            "bare_subscriber_per_s": statistics.median(bare),
            "gatewayd_to_kafka_per_s": statistics.median(daemon),
            "ratio": statistics.median(d / b for d, b in zip(daemon, bare)),
            "latency_10k_p50_ms": p50,
            "latency_10k_p99_ms": p99,
            "gatewayd_peak_rss_mib": rss / 1024,
            "gatewayd_qos1_to_kafka_per_s": statistics.median(q1),
            "bare_qos1_subscriber_per_s": statistics.median(q1_bare),
            "qos1_ratio": statistics.median(d / b for d, b in zip(q1, q1_bare)),
            "qos1_gatewayd_cpu_us_per_reading": statistics.median(q1_cpu),
            "qos1_most_unacknowledged": max(q1_flight),
            "runs": a.runs, "count": a.count,
        }
        benchlib.report(res, a.json)


if __name__ == "__main__":
    main()
