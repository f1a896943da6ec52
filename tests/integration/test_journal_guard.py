"""Issue 17, "A journal pulled away": journal.db and its -wal/-shm deleted under a running gatewayd.

Kafka is down, so every reading lives only in the journal. A QoS 1 publisher has 2,000 readings
acknowledged, the journal files are deleted, 1,000 more are acknowledged, gatewayd is restarted
before Kafka returns, then Kafka comes back: all 3,000 must arrive. gatewayd notices the missing
files within a second and writes the open journal back to its path (SQLite's backup API).

The same run with the check turned off (GW_TEST_NO_JOURNAL_GUARD=1, an environment variable for
tests only) loses them: commits "succeed" into deleted files and the restart starts an empty
journal. That shows the test can fail.
"""
import json

import pytest

from gwtest import PLUGIN, Gatewayd, KafkaBroker, Mosquitto, run_sim, wait_until
from test_no_loss import distinct_kafka, distinct_sent


def committed(n):
    # Aggregates only add to last_seq: last_seq >= readings means every reading is committed.
    return lambda s: s["readings"] >= n and s["journal"]["last_seq"] >= s["readings"]


@pytest.mark.parametrize("guard", ["on", "off"])
def test_journal_deleted_with_kafka_down(wd, guard):
    mq = Mosquitto(wd, plugin=PLUGIN)
    kafka = KafkaBroker(wd)
    kafka.down()
    env = {"GW_TEST_NO_JOURNAL_GUARD": "1"} if guard == "off" else None
    gw = Gatewayd(wd, mq.uri, kafka=kafka, client_id="gw-journal-guard", env=env)
    state = wd.path / "state"

    _, sent1 = run_sim(wd, mq.uri, "--devices", "20", "--count", "2000", "--rate", "2000", "--qos", "1",
                       "--seed", "1", name="before")
    gw.wait_stats("2,000 readings committed", committed(2000))
    for name in ("journal.db", "journal.db-wal", "journal.db-shm"):
        (state / name).unlink()
    if guard == "on":
        wait_until("gatewayd to write the journal back",
                   lambda: "written back to its path" in gw.text(), timeout=5)
        assert "journal.db was deleted or moved" in gw.text()
        assert (state / "journal.db").exists()

    _, sent2 = run_sim(wd, mq.uri, "--devices", "20", "--count", "1000", "--rate", "2000", "--qos", "1",
                       "--seed", "2", name="after")
    gw.wait_stats("3,000 readings committed", committed(3000))
    gw.proc.stop()  # restarted before Kafka returns
    gw.start()

    kafka.up()
    want = distinct_sent(sent1 + sent2)
    assert len(want) == 3000
    got = set()

    def drained():
        nonlocal got
        s = gw.stats()
        if not (s and s["sinks"]["kafka"]["up"] and s["sinks"]["kafka"]["backlog"] == 0):
            return False
        got = distinct_kafka(kafka.consume("iot.readings", 0))
        return want <= got or guard == "off"

    wait_until("the journal drained into Kafka", drained, timeout=90, interval=0.5)
    missing = want - got
    print(f"guard {guard}: {len(want)} readings acknowledged, {len(want) - len(missing)} in Kafka, "
          f"{len(missing)} missing")
    if guard == "on":
        assert not missing, f"{len(missing)} of {len(want)} acknowledged readings lost"
    else:
        assert len(missing) >= 2000, "without the check the deleted journal's readings should be lost"
