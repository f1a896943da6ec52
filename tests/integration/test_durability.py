"""Issue 17, "Nothing acknowledged is ever lost": the journal pulled away, a newer schema.

A journal pulled away: journal.db and its -wal/-shm deleted under a running gatewayd.

Kafka is down, so every reading lives only in the journal. A QoS 1 publisher has 2,000 readings
acknowledged, the journal files are deleted, 1,000 more are acknowledged, gatewayd is restarted
before Kafka returns, then Kafka comes back: all 3,000 must arrive. gatewayd notices the missing
files within a second and writes the open journal back to its path (SQLite's backup API).

The same run with the check turned off (GW_TEST_NO_JOURNAL_GUARD=1, an environment variable for
tests only) loses them: commits "succeed" into deleted files and the restart starts an empty
journal. That shows the test can fail.
"""
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from gwtest import (GATEWAYCTL, GATEWAYD, PLUGIN, Gatewayd, KafkaBroker, Mosquitto, VictoriaMetrics, run_sim,
                    start_sim, wait_until)
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
        buf = ctl_buffer(wd)
        assert buf.returncode == 0, buf.stderr
        assert "deleted or moved away 1 time while running" in buf.stdout, buf.stdout

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


def ctl_buffer(wd, *args):
    return subprocess.run([str(GATEWAYCTL), "--socket", str(wd.path / "control.sock"), "buffer", *args],
                          capture_output=True, text=True, timeout=30)


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_newer_journal_is_refused_and_left_untouched(wd):
    """A journal whose user_version is above ours (after a downgrade): a clear message naming both
    versions, exit 65 (the unit's RestartPreventExitStatus), the state folder byte for byte as it was."""
    mq = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    kafka.down()
    gw = Gatewayd(wd, mq.uri, kafka=kafka)
    run_sim(wd, mq.uri, "--devices", "5", "--count", "200", "--rate", "1000", "--qos", "1")
    gw.wait_stats("200 readings committed", committed(200))
    gw.proc.stop()
    state = wd.path / "state"
    # What a newer gatewayd would leave: its own schema version (and a checkpointed file).
    subprocess.run(["sqlite3", state / "journal.db", "PRAGMA user_version = 9"], check=True, timeout=30)
    before = digests(state)
    assert list(before) == ["journal.db", "journal.db.lock"]  # the lock: one writer per journal

    p = subprocess.run([str(GATEWAYD), "--config", str(gw.config)], capture_output=True, timeout=30,
                       cwd=wd.path)
    err = p.stderr.decode()
    print(err)
    assert p.returncode == 65, err
    assert "its schema version is 9, this gatewayd reads versions 1 to 8" in err
    assert "It is left as it is" in err
    assert digests(state) == before
    unit = Path(__file__).resolve().parents[2] / "systemd" / "iot-gateway.service"
    assert any(l.startswith("RestartPreventExitStatus=") and "65" in l.split("=", 1)[1].split()
               for l in unit.read_text().splitlines())


def test_recover_salvages_a_corrupt_journal_into_kafka(wd):
    """A journal with overwritten pages is moved aside at start; `gatewayd --recover` appends its
    readable readings to the live journal and they reach Kafka, exactly as they were sent."""
    import re
    mq = Mosquitto(wd, plugin=PLUGIN)
    kafka = KafkaBroker(wd)
    kafka.down()
    gw = Gatewayd(wd, mq.uri, kafka=kafka, client_id="gw-recover")
    _, sent = run_sim(wd, mq.uri, "--devices", "20", "--count", "3000", "--rate", "3000", "--qos", "1",
                      "--seed", "3")
    gw.wait_stats("3,000 readings committed", committed(3000))
    gw.proc.stop()  # checkpointed into journal.db
    state = wd.path / "state"
    db = state / "journal.db"
    page_size = int.from_bytes(db.read_bytes()[16:18], "big")  # 2 KiB for new journals
    pages = db.stat().st_size // page_size
    assert pages > 20
    garbage = bytes((i * 131) % 251 for i in range(page_size))
    with open(db, "r+b") as f:  # the fixture: page 1 and three pages of rows overwritten
        for page in (1, pages // 3, pages // 2, pages * 2 // 3):
            f.seek((page - 1) * page_size)
            f.write(garbage)

    gw.start()  # moves the damaged file aside, starts an empty journal
    moved = re.search(r"moved it aside to (\S+) and started a new journal", gw.text())
    assert moved, gw.text()
    damaged = moved.group(1)
    # Not while gatewayd runs: one writer per journal.
    p = subprocess.run([str(GATEWAYD), "--config", str(gw.config), "--recover", damaged],
                       capture_output=True, timeout=60, cwd=wd.path)
    assert p.returncode == 1 and "in use by another process" in p.stderr.decode(), p.stderr.decode()
    gw.proc.stop()

    p = subprocess.run([str(GATEWAYD), "--config", str(gw.config), "--recover", damaged],
                       capture_output=True, timeout=60, cwd=wd.path)
    out = p.stdout.decode()
    print(out, p.stderr.decode())
    assert p.returncode == 0, p.stderr.decode()
    salvaged = int(re.search(r"records appended \((\d+) readings\)", out).group(1))
    assert 0 < salvaged < 3000

    gw.start()
    kafka.up()
    want = distinct_sent(sent)
    got = set()

    def drained():
        nonlocal got
        s = gw.stats()
        if not (s and s["sinks"]["kafka"]["up"] and s["sinks"]["kafka"]["backlog"] == 0):
            return False
        got = distinct_kafka(kafka.consume("iot.readings", 0))
        return len(got) >= salvaged

    wait_until("the salvaged readings in Kafka", drained, timeout=90, interval=0.5)
    print(f"recover: {salvaged} of {len(want)} readings salvaged from a journal with 4 of {pages} "
          f"pages overwritten; {len(got)} distinct readings in Kafka")
    assert len(got) == salvaged
    assert got <= want, f"{len(got - want)} readings in Kafka that were never sent (garbled salvage)"


def small_filesystem(path, size_mib, leave_free_mib):
    """A real size-limited filesystem (tmpfs; tests run as root) at `path`, filled with a filler
    file until `leave_free_mib` are free. Returns a function that unmounts it."""
    import os
    path.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(path)],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, f"cannot mount a tmpfs (tests need root): {p.stderr.decode()}"
    st = os.statvfs(path)
    filler = (st.f_bavail * st.f_frsize) - leave_free_mib * 2**20
    with open(path / "filler", "wb") as f:
        f.write(b"\0" * filler)
    return lambda: subprocess.run(["umount", "-l", str(path)], timeout=30)


def free_mib(path):
    import os
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 2**20


@pytest.mark.parametrize("min_free", ["2MiB", "0"])
def test_min_free_on_a_small_filesystem(wd, min_free):
    """With buffer.min_free, commits never fail for ENOSPC on a filesystem that fills up: the
    oldest unsent rows are dropped and counted. Without it (0) commits fail "database or disk is
    full", and a failed commit acknowledges nothing: gatewayd killed meanwhile, space freed,
    restarted, Kafka back: every reading published arrives."""
    state = wd.path / "state"
    unmount = small_filesystem(state, 32, 3)
    gw = None
    try:
        mq = Mosquitto(wd)
        kafka = KafkaBroker(wd)
        kafka.down()
        gw = Gatewayd(wd, mq.uri, kafka=kafka, client_id="gw-min-free",
                      buffer=f'min_free = "{min_free}"\nmax_size = "512MiB"')
        n = 100000  # the Kafka test broker keeps the newest ~148,000 records of a partition
        sim, out = start_sim(wd, mq.uri, "--devices", "50", "--count", str(n), "--rate", "40000",
                             "--qos", "1", "--seed", "4")
        if min_free != "0":
            wait_until("the publisher to finish", lambda: not sim.alive(), timeout=120, interval=0.5)
            assert sim.p.returncode == 0, sim.text()
            st = gw.wait_stats("every reading committed", committed(n), timeout=60)
            print(f"min_free {min_free}: {st['readings']} readings taken in, commit failures "
                  f"{st['journal']['commit_failures']}, kafka dropped {st['sinks']['kafka']['dropped']}, "
                  f"{free_mib(state):.1f} MiB free at the end")
            assert st["journal"]["commit_failures"] == 0
            assert st["sinks"]["kafka"]["dropped"] > 0
            assert "below buffer.min_free" in gw.text()
            buf = ctl_buffer(wd, "--json")
            j = json.loads(buf.stdout)["journal"]
            assert j["min_free"] == 2 << 20 and j["disk_free"] > 0 and j["restores"] == 0, j
            assert "free on its filesystem, buffer.min_free 2.0 MiB" in ctl_buffer(wd).stdout
            assert free_mib(state) > 0.5
            return

        st = gw.wait_stats("commits to fail for lack of space",
                           lambda s: s["journal"]["commit_failures"] > 0, timeout=120)
        assert "database or disk is full" in gw.text()
        print(f"min_free 0: commits failing after {st['readings']} readings in, "
              f"{st['journal']['last_seq']} committed")
        gw.kill()  # what was received but not committed dies here: it was not acknowledged
        (state / "filler").unlink()
        gw.start()
        wait_until("the publisher to finish", lambda: not sim.alive(), timeout=120, interval=0.5)
        assert sim.p.returncode == 0, sim.text()
        sent = [json.loads(l) for l in out.read_text().splitlines() if l.strip()]
        want = distinct_sent(sent)
        assert len(want) == n
        kafka.up()
        got = set()

        def drained():
            nonlocal got
            s = gw.stats()
            if not (s and s["sinks"]["kafka"]["up"] and s["sinks"]["kafka"]["backlog"] == 0):
                return False
            got = distinct_kafka(kafka.consume("iot.readings", 0))
            return want <= got

        try:
            wait_until("every acknowledged reading in Kafka", drained, timeout=120, interval=1)
        except AssertionError:
            pass  # reported below, with the count
        missing = want - got
        print(f"min_free 0: {len(want)} acknowledged, {len(missing)} missing in Kafka")
        assert not missing
    finally:
        if gw:
            gw.proc.stop()
        unmount()


FIELDS_SUBSCRIBE = """
[[mqtt.subscribe]]
topic = "fields/+/+"
qos = 1
template = "fields/{line}/{device}"
format = "fields"
"""


def test_names_with_control_characters_are_refused_for_every_sink(wd):
    """A field named "a\\nb" used to arrive as "a\\nb" in Kafka and "a b" in the time-series store
    (two names for one series). Now the message is bad input (bad_name) and neither sink gets it;
    a clean message on the same topic reaches both with the same names."""
    import json
    mq = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    vm = VictoriaMetrics(wd)
    gw = Gatewayd(wd, mq.uri, kafka=kafka, vm=vm, subscribe=FIELDS_SUBSCRIBE,
                  extra="\n[aggregate]\nenabled = false\n")
    for payload in ('{"ok":1.5,"a\\nb":2}', '{"temp":3.5,"a b":4.5}'):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mq.port), "-q", "1",
                        "-t", "fields/l1/pump-7", "-m", payload], check=True, timeout=30)
    st = gw.wait_stats("one message refused, two readings in",
                       lambda s: s["bad"].get("bad_name") == 1 and s["readings"] == 2)
    assert st["messages"] == 2
    records = [json.loads(r["payload"]) for r in kafka.consume("iot.readings", 2)]
    samples = vm.wait_samples(2)
    kafka_names = sorted((r["device"], r["metric"], r["value"]) for r in records)
    vm_names = sorted((m["device"], m["__name__"], v) for m, v, _ in samples)
    print("kafka:", kafka_names, "victoria-metrics:", vm_names)
    assert kafka_names == [("pump-7", "a b", 4.5), ("pump-7", "temp", 3.5)]
    assert vm_names == kafka_names
    assert "bad input (bad_name)" in gw.text()
