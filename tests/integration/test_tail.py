"""Issue 14: `gatewayctl tail DEVICE [-n N] [--follow] [--json]` on a live gatewayd: a device's
latest readings from the journal, with value, event time, device time and reference."""
import json
import subprocess
import time

from gwtest import BUILD, PLUGIN, Gatewayd, Mosquitto, wait_until

from gwtest import GATEWAYCTL  # noqa: E402 (one definition, in gwtest)


def ctl(wd, *args):
    return subprocess.run([str(GATEWAYCTL), "--socket", str(wd.path / "control.sock"), *args],
                          capture_output=True, text=True, timeout=30)


def publish(mq, device, metric, value, ts_ms):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mq.port), "-q", "1", "-V", "mqttv5",
                    "-t", f"plant1/line1/{device}/{metric}", "-m", json.dumps({"value": value, "ts": ts_ms})],
                   check=True, timeout=20)


def test_tail_shows_the_latest_readings_of_one_device(wd):
    mq = Mosquitto(wd, plugin=PLUGIN)
    gw = Gatewayd(wd, mq.uri)  # no sink: the journal keeps everything
    now = int(time.time() * 1000)
    for i, v in enumerate([20.5, 21.5, 22.5]):
        publish(mq, "pump-1", "temp", v, now - 3000 + i * 1000)
    publish(mq, "pump-2", "temp", 99.0, now)
    # The device clock of pump-1 is behind by ~0; a 1970 clock for pump-3 shows as such.
    publish(mq, "pump-3", "temp", 5.0, 5000)

    def tail_json(*args):
        p = ctl(wd, "tail", *args, "--json")
        return json.loads(p.stdout) if p.returncode == 0 else None

    doc = wait_until("3 readings of pump-1", lambda: (lambda d: d if d and len(d["readings"]) == 3 else None)(
        tail_json("pump-1", "-n", "5")))
    assert doc["device"] == "pump-1"
    assert [r["value"] for r in doc["readings"]] == [20.5, 21.5, 22.5]  # oldest first, pump-2 not in
    for r in doc["readings"]:
        assert r["device"] == "pump-1" and r["metric"] == "temp" and r["tags"] == {"line": "line1"}
        assert r["reference"] == "broker", r  # the broker plugin's stamp
        assert r["time"].endswith("Z") and r["device_time"].endswith("Z")
        assert r["seq"] > 0
    two = tail_json("pump-1", "-n", "2")
    assert [r["value"] for r in two["readings"]] == [21.5, 22.5]

    p = ctl(wd, "tail", "pump-1", "-n", "2")
    print(p.stdout)
    assert p.returncode == 0
    assert "pump-1: 2 latest readings" in p.stdout and "21.5" in p.stdout and "22.5" in p.stdout
    # The VALUE column (third) of the two data rows; a substring test would also match a time.
    rows = [line.split() for line in p.stdout.splitlines()[2:] if line.strip()]
    assert [row[2] for row in rows] == ["21.5", "22.5"], p.stdout
    assert all(row[4] == "broker" for row in rows), p.stdout
    for line in p.stdout.splitlines():
        assert len(line) <= 80, line

    d3 = wait_until("pump-3", lambda: tail_json("pump-3"))
    assert d3["readings"][0]["device_time"].startswith("1970-01-01T00:00:05")
    assert "1970-01-01T00:00:05" in ctl(wd, "tail", "pump-3").stdout

    p = ctl(wd, "tail", "no-such-device")
    assert p.returncode == 1 and "no readings of no-such-device" in p.stdout
    assert ctl(wd, "tail").returncode == 64  # DEVICE is required

    # --follow prints what arrives later, until stopped.
    f = subprocess.Popen([str(GATEWAYCTL), "--socket", str(wd.path / "control.sock"), "tail", "pump-1", "-n", "1",
                          "--follow"], stdout=subprocess.PIPE, text=True)
    try:
        out = []

        def seen(value):
            line = f.stdout.readline()
            out.append(line)
            return value in line

        # The latest reading first: then --follow is running and a new one must show.
        wait_until("the latest reading in --follow", lambda: seen("22.5"), timeout=15)
        publish(mq, "pump-1", "temp", 23.75, int(time.time() * 1000))
        wait_until("the new reading in --follow", lambda: seen("23.75"), timeout=15)
        assert gw.proc.alive()
    finally:
        f.terminate()
        f.wait(timeout=10)
