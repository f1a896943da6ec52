"""Issue 16: a record may reach Kafka before its row is durable, and its seq is never used again.

Sinks read the journal's pending tail (records appended but not yet committed), so a reading
reaches Kafka without waiting for the group commit and its sync. A crash then loses the record
from the journal although Kafka has it: the next start must not give its seq to another reading,
since consumers deduplicate by seq (README). The journal reserves seqs durably ahead of the ones
it hands out (meta row 'seq_reserved') and a start goes on after the reservation.

Here: commit_interval 10 s (the longest allowed), so the readings of a QoS 0 publisher stay
pending in the journal; they reach Kafka from there; gatewayd is killed (SIGKILL) before its first
commit, so they are lost from the journal (QoS 0: the broker does not send them again); gatewayd
starts again and other readings arrive. No seq in Kafka may stand for two different readings.

The same run with the reservation turned off (GW_TEST_NO_SEQ_RESERVATION=1, tests only) reuses
the seqs: that shows the test can fail.
"""
import collections
import json
import time

import pytest

from gwtest import PLUGIN, Gatewayd, KafkaBroker, Mosquitto, run_sim


def readings_by_seq(records):
    by_seq = collections.defaultdict(set)
    for r in records:
        v = json.loads(r["payload"])
        by_seq[v["seq"]].add((v["device"], v["metric"], v.get("device_time"), v["value"]))
    return by_seq


@pytest.mark.parametrize("reservation", ["on", "off"])
def test_no_seq_used_twice_after_sigkill(wd, reservation):
    mq = Mosquitto(wd, plugin=PLUGIN)
    kafka = KafkaBroker(wd)
    env = {"GW_TEST_NO_SEQ_RESERVATION": "1"} if reservation == "off" else None
    started = time.monotonic()
    gw = Gatewayd(wd, mq.uri, kafka=kafka, client_id="gw-seq-reservation", env=env,
                  commit_interval="10s", extra="[aggregate]\nenabled = false\n")

    run_sim(wd, mq.uri, "--devices", "10", "--count", "200", "--rate", "2000", "--qos", "0",
            "--seed", "1", name="first")
    first = kafka.consume("iot.readings", 200, timeout=8)
    gw.kill()
    # Killed before the first commit timer (10 s after start): nothing of it reached the journal,
    # so the run shows what it means to show.
    assert time.monotonic() - started < 9.5, "too slow to kill gatewayd before its first commit"
    assert len(readings_by_seq(first)) == 200
    assert max(readings_by_seq(first)) <= (16384 if reservation == "on" else 200)

    gw.start()
    run_sim(wd, mq.uri, "--devices", "10", "--count", "200", "--rate", "2000", "--qos", "0",
            "--seed", "2", name="second")
    records = kafka.consume("iot.readings", 400, timeout=30)
    by_seq = readings_by_seq(records)
    reused = {seq: r for seq, r in by_seq.items() if len(r) > 1}
    if reservation == "on":
        assert not reused, f"{len(reused)} seqs stand for two readings, e.g. {sorted(reused)[:3]}"
        assert len(by_seq) == 400
        assert min(s for s in by_seq if s not in readings_by_seq(first)) > 16384
        assert "were reserved before the last stop" in gw.text()
    else:
        assert len(reused) == 200, "without the reservation the second run reuses every seq"
    gw.proc.stop()
