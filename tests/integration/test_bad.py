"""Issue 14: dead letters. Bad input on a live gatewayd is counted by reason and by device, kept in
the journal's bounded dead-letter table with an escaped excerpt, shown by `gatewayctl bad` and
`gatewayctl sensors`, and still there after a restart."""
import calendar
import json
import subprocess
import time

from gwtest import BUILD, PLUGIN, Gatewayd, Mosquitto, wait_until

from gwtest import GATEWAYCTL  # noqa: E402 (one definition, in gwtest)

SUBSCRIBE = """
[[mqtt.subscribe]]
topic = "plant1/#"
qos = 1
template = "plant1/{line}/{device}/{metric}"
format = "json"
timestamp = "ts"
timestamp_unit = "ms"
"""


def ctl(wd, *args):
    return subprocess.run([str(GATEWAYCTL), "--socket", str(wd.path / "control.sock"), *args],
                          capture_output=True, text=True, timeout=30)


def publish(mq, topic, payload: bytes):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mq.port), "-q", "1", "-V", "mqttv5",
                    "-t", topic, "-s"], input=payload, check=True, timeout=20)


def bad_json(wd, *args):
    p = ctl(wd, "bad", "--json", *args)
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout)


def test_bad_input_is_kept_and_shown(wd):
    mq = Mosquitto(wd, plugin=PLUGIN)
    gw = Gatewayd(wd, mq.uri, subscribe=SUBSCRIBE)
    # Before any bad input: exit 0, nothing kept.
    p = ctl(wd, "bad")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "no bad input since gatewayd started" in p.stdout

    now = int(time.time() * 1000)
    publish(mq, "plant1/line1/pump-1/temp", json.dumps({"value": 20.5, "ts": now}).encode())
    # A terminal escape and a newline in a payload: shown escaped, never sent to the terminal.
    publish(mq, "plant1/line1/pump-1/temp", b"oops\n\x1b[31mred \xc2\xb0C \xff")
    publish(mq, "plant1/line1/pump-1/temp", b'{"value": "high"}')
    publish(mq, "plant1/line1/pump-2/temp", b"x" * 1000)
    publish(mq, "plant1/stray", b"1")

    doc = wait_until("4 bad messages", lambda: (lambda d: d if d["total"] == 4 else None)(bad_json(wd)))
    print(json.dumps(doc, indent=1))
    assert doc["reasons"] == {"not_json": 2, "not_number": 1, "no_template": 1}
    assert doc["devices"][0] == {"device": "pump-1", "count": 2}
    assert {"device": "pump-2", "count": 1} in doc["devices"]
    assert doc["caps"] == {"rows": 1000, "bytes": 262144, "excerpt": 160}
    letters = doc["letters"]
    assert len(letters) == 4
    stray, big, high, oops = letters  # newest first
    assert stray["reason"] == "no_template" and stray["where"] == "plant1/stray" and stray["device"] == ""
    assert stray["excerpt"] == "1" and stray["size"] == 1 and stray["source"] == "mqtt"
    assert big["device"] == "pump-2" and big["size"] == 1000
    assert big["excerpt"] == "x" * 160 + "..."
    assert high["excerpt"] == '{"value": "high"}'
    assert oops["reason"] == "not_json" and oops["where"] == "plant1/line1/pump-1/temp"
    assert oops["excerpt"] == "oops\\n\\x1b[31mred \u00b0C \\xff", oops["excerpt"]
    assert oops["size"] == len(b"oops\n\x1b[31mred \xc2\xb0C \xff")
    assert oops["time"].endswith("Z") and abs(time.time() - _epoch(oops["time"])) < 60

    # The table: exit 1 (there was bad input), 80 columns, no escape character reaches the terminal.
    p = ctl(wd, "bad")
    print(p.stdout)
    assert p.returncode == 1
    assert "4 bad messages since gatewayd started" in p.stdout
    assert "by device: pump-1 2, pump-2 1" in p.stdout
    assert "payload: oops\\n\\x1b[31mred" in p.stdout
    assert "\x1b" not in p.stdout
    for line in p.stdout.splitlines():
        assert len(line) <= 80, line
    assert len(bad_json(wd, "-n", "2")["letters"]) == 2
    assert ctl(wd, "bad", "-n", "0").returncode == 64

    # sensors: the per-device count next to the clock.
    sensors = json.loads(ctl(wd, "sensors", "--json").stdout)
    by_name = {d["device"]: d for d in sensors["devices"]}
    assert by_name["pump-1"]["bad"] == 2, by_name
    p = ctl(wd, "sensors")
    assert "BAD" in p.stdout.splitlines()[1] or any("BAD" in l for l in p.stdout.splitlines()), p.stdout

    # The letters are in the journal: a restart keeps them (the counts start again).
    gw.proc.stop()
    gw.start()
    doc = bad_json(wd)
    assert doc["total"] == 0
    assert [l["excerpt"] for l in doc["letters"]] == [l["excerpt"] for l in letters]


def _epoch(rfc3339):
    return calendar.timegm(time.strptime(rfc3339[:19], "%Y-%m-%dT%H:%M:%S"))
