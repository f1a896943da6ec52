"""Issue 17, "Power cuts": an acknowledged reading survives a power cut with the default config.

gatewayd runs under libpowercut.so (tests/tools/powercut): on SIGUSR2 every write to the state
directory not yet covered by an fsync is undone, the -shm is emptied and the process is killed,
as if the power had gone. Kafka is down meanwhile, so the readings pile up in the journal; a
QoS 1 publisher keeps publishing; after each cut the journal must pass `PRAGMA quick_check` and
gatewayd is restarted. At the end Kafka comes back and every reading Mosquitto acknowledged to
the publisher must be in Kafka: Mosquitto forgets a message once gatewayd acknowledged it, and
gatewayd acknowledges only after the journal commit.

The same run with `buffer.synchronous = "off"` must lose acknowledged readings: it shows that
the emulation bites (the test can fail) and what the weaker setting does not survive. So must
`"normal"`: its connection settings are the default's (SQLite `synchronous=NORMAL`), the only
difference is the default's sync thread, which fdatasyncs the -wal through a descriptor of its
own before anything is acknowledged. That the default loses nothing and "normal" does shows the
emulation counts that fdatasync, and that the acknowledgement waits for it.
"""
import json
import shutil
import signal
import subprocess

import pytest

from gwtest import PLUGIN, POWERCUT, Gatewayd, KafkaBroker, Mosquitto, start_sim, wait_until
from test_no_loss import distinct_kafka, distinct_sent

CUTS = 10
READINGS_PER_CUT = 400  # taken in by each incarnation before its power is cut


def quick_check(wd, i):
    """`PRAGMA quick_check` on a copy of what the cut left (so the check cannot repair anything
    gatewayd will find): journal.db and its -wal (the -shm is lost in a power cut)."""
    state = wd.path / "state"
    copy = wd.path / f"after-cut-{i}"
    copy.mkdir()
    for name in ("journal.db", "journal.db-wal"):
        if (state / name).exists():
            shutil.copy2(state / name, copy / name)
    out = subprocess.run(["sqlite3", copy / "journal.db", "PRAGMA quick_check"], capture_output=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.decode().strip() == "ok", \
        f"journal damaged after cut {i}: {out.stdout.decode()} {out.stderr.decode()}"
    shutil.rmtree(copy)


@pytest.mark.parametrize("synchronous", ["default", "normal", "off"])
def test_power_cuts_under_qos1_load(wd, synchronous):
    assert POWERCUT.exists(), f"{POWERCUT} is missing (build tests/tools/powercut)"
    mq = Mosquitto(wd, plugin=PLUGIN)
    kafka = KafkaBroker(wd)
    kafka.down()
    state = wd.path / "state"
    gw = Gatewayd(wd, mq.uri, kafka=kafka, client_id="gw-power-cut",
                  buffer="" if synchronous == "default" else f'synchronous = "{synchronous}"',
                  env={"LD_PRELOAD": str(POWERCUT), "POWERCUT_SIGNAL": str(int(signal.SIGUSR2)),
                       "POWERCUT_DIR": str(state)})

    # More than the cuts need: the publisher is stopped (and drains its acknowledgements) after them.
    sim, out = start_sim(wd, mq.uri, "--devices", "20", "--count", "200000", "--rate", "800", "--qos", "1",
                         "--seed", "17")
    rolled_back = []
    for i in range(CUTS):
        gw.wait_stats(f"incarnation {i} to take in {READINGS_PER_CUT} readings",
                      lambda s: s["readings"] >= READINGS_PER_CUT, timeout=60)
        gw.proc.kill(signal.SIGUSR2)  # the power cut; waits for the process to be gone
        assert gw.proc.p.returncode == -signal.SIGKILL, f"cut {i}: exit status {gw.proc.p.returncode}"
        line = [l for l in gw.text().splitlines() if "powercut: power cut:" in l]
        assert line, f"cut {i}: the shim did not report the cut"
        words = line[-1].split("power cut: ")[1].split()
        rolled_back.append(int(words[0]) + int(words[5]))  # bytes put back + bytes cut off
        quick_check(wd, i)
        gw.start()

    sim.kill(signal.SIGTERM)  # stop publishing, wait for the outstanding acknowledgements
    assert sim.p.returncode == 0, sim.text()
    sent = [json.loads(l) for l in out.read_text().splitlines() if l.strip()]
    want = distinct_sent(sent)
    assert len(want) >= CUTS * READINGS_PER_CUT

    kafka.up()
    got = set()
    records = []

    def drained():
        nonlocal got, records
        s = gw.stats()
        if not (s and s["sinks"]["kafka"]["up"] and s["sinks"]["kafka"]["backlog"] == 0):
            return False
        records = kafka.consume("iot.readings", 0)
        got = distinct_kafka(records)
        # The default must deliver everything; the weak setting everything its journal still has.
        return want <= got or synchronous != "default"

    wait_until("the journal drained into Kafka", drained, timeout=90, interval=0.5)
    missing = want - got
    print(f"synchronous={synchronous}: {CUTS} cuts, unsynced bytes undone per cut {rolled_back}; "
          f"{len(want)} readings acknowledged to the publisher, {len(missing)} missing in Kafka, "
          f"{len(records) - len(got)} duplicates")
    if synchronous == "default":
        assert not missing, f"{len(missing)} of {len(want)} acknowledged readings lost across {CUTS} power cuts"
    else:
        assert missing, f"synchronous={synchronous} lost nothing across {CUTS} cuts: the emulation did not bite"
