"""Issue 15, Sparkplug B: gatewayd as a Sparkplug 3.0 host application against an independent edge
node (the npm package sparkplug-client, tests/tools/sparkplug_node/edge_node.js), real Mosquitto
and the Kafka test broker read back with kcat."""
import datetime
import json
import shutil
import subprocess
import time
from pathlib import Path

from gwtest import BUILD, Gatewayd, KafkaBroker, Mosquitto, Proc, wait_until

from gwtest import GATEWAYCTL  # noqa: E402 (one definition, in gwtest)
NODE_DIR = Path(__file__).resolve().parents[1] / "tools" / "sparkplug_node"
GROUP = "plant1"
T0 = 1_780_000_000_000  # device times of the first DDATA round (ms), 2026-05-28

SUBSCRIBE = f"""
[[mqtt.subscribe]]
topic = "spBv1.0/{GROUP}/#"
qos = 1
format = "sparkplug_b"
"""


class EdgeNode:
    """edge_node.js driven over stdin; its JSON-line events read back from its log."""

    def __init__(self, wd, mqtt_port, node="e1", devices=("d1", "d2")):
        assert (NODE_DIR / "node_modules" / "sparkplug-client").is_dir(), \
            f"{NODE_DIR}/node_modules is missing: run scripts/setup"
        self.proc = wd.track(Proc(f"edge-{node}", ["node", NODE_DIR / "edge_node.js", f"mqtt://127.0.0.1:{mqtt_port}",
                                                   GROUP, node, *devices], wd.path, stdin=subprocess.PIPE))
        self.wait("the edge node to connect", lambda e: e["event"] == "birth")

    def events(self):
        out = []
        for line in self.proc.text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def wait(self, what, pred, timeout=20.0):
        return wait_until(what, lambda: next((e for e in self.events() if pred(e)), None), timeout=timeout)

    def send(self, cmd):
        n = sum(1 for e in self.events() if e.get("event") == "ok")
        self.proc.p.stdin.write(f"{cmd}\n".encode())
        self.proc.p.stdin.flush()
        wait_until(f"edge node to do '{cmd}'",
                   lambda: sum(1 for e in self.events() if e.get("event") == "ok") > n)

    def ncmds(self):
        return [e for e in self.events() if e["event"] == "ncmd"]


def gateway(wd, mqtt, kafka=None, extra="", **kw):
    return Gatewayd(wd, mqtt.uri, kafka=kafka, subscribe=SUBSCRIBE, extra=extra, **kw)


def rfc3339(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def expected_ddata(t0, rounds, devices=("d1", "d2")):
    """(device, metric, device_time) -> value of what `data rounds … t0` sends."""
    want = {}
    for i in range(rounds):
        for k, d in enumerate(devices, start=1):
            t = rfc3339(t0 + i * 1000)
            want[(f"e1/{d}", "Motor/RPM", t)] = 1000 * k + i
            want[(f"e1/{d}", "Motor/On", t)] = 1 if i % 2 else 0
    return want


def readings(kafka, expected):
    return [json.loads(r["payload"]) for r in kafka.consume("iot.readings", expected)]


def ctl_json(sock, command):
    p = subprocess.run([str(GATEWAYCTL), "--socket", str(sock), command, "--json"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode in (0, 1), f"gatewayctl {command}: {p.returncode}\n{p.stdout}\n{p.stderr}"
    return json.loads(p.stdout)


def test_births_and_ddata_by_alias_arrive_in_kafka_with_names(wd):
    mqtt = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    gateway(wd, mqtt, kafka)
    node = EdgeNode(wd, mqtt.port)
    node.send("birth")
    node.send(f"data 50 0 {T0}")
    # NBIRTH: Node/Uptime (bdSeq is not a reading); DBIRTH: 2 metrics × 2 devices; DDATA: 50 × 2 × 2.
    recs = readings(kafka, 1 + 4 + 200)
    got = {(r["device"], r["metric"], r.get("device_time")): r for r in recs}
    want = expected_ddata(T0, 50)
    for key, value in want.items():
        assert key in got, f"missing {key}"
        r = got[key]
        assert r["value"] == value, r
        assert r["tags"] == {"group": GROUP}, r
        assert r["time"], r
    assert not [r for r in recs if r["metric"].startswith("alias:")]
    assert {r["metric"] for r in recs if r["device"] == "e1"} == {"Node/Uptime"}
    assert node.ncmds() == [], "no rebirth was needed"


def test_gateway_restart_mid_stream_loses_nothing(wd):
    mqtt = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    gw = gateway(wd, mqtt, kafka)
    node = EdgeNode(wd, mqtt.port)
    node.send("birth")
    node.send(f"data 50 1 {T0}")
    kafka.consume("iot.readings", 205)  # the first 50 rounds are in Kafka
    gw.kill()  # SIGKILL: the broker keeps QoS 1 messages for the persistent session
    node.send(f"data 50 1 {T0 + 50_000}")
    gw.start()  # births come back from the journal's state: aliases still resolve
    node.send(f"data 50 1 {T0 + 100_000}")
    want = {**expected_ddata(T0, 50), **expected_ddata(T0 + 50_000, 50), **expected_ddata(T0 + 100_000, 50)}
    recs = readings(kafka, 5 + len(want))
    got = {(r["device"], r["metric"], r.get("device_time")): r["value"] for r in recs}
    missing = [k for k in want if k not in got]
    assert not missing, f"{len(missing)} readings lost, e.g. {missing[:3]}"
    wrong = [(k, got[k], v) for k, v in want.items() if got[k] != v]
    assert not wrong, wrong[:3]
    assert not [r for r in recs if r["metric"].startswith("alias:")], "aliases resolved after the restart"


def test_without_the_journal_state_a_restart_needs_a_rebirth(wd):
    """The weaker setting for the test above: a gateway that lost its journal (and so the births)
    cannot resolve the aliases; it journals what it knows (alias:N), asks for a rebirth, and
    resolves again once the node has sent its births."""
    mqtt = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    gw = gateway(wd, mqtt, kafka)
    node = EdgeNode(wd, mqtt.port)
    node.send("birth")
    node.send(f"data 5 1 {T0}")
    kafka.consume("iot.readings", 1 + 4 + 20)
    gw.kill()
    shutil.rmtree(wd.path / "state")
    gw.start()
    node.send(f"data 5 1 {T0 + 10_000}")
    node.wait("NCMD Node Control/Rebirth", lambda e: e["event"] == "ncmd")
    recs = readings(kafka, 25 + 20)
    unresolved = {r["metric"] for r in recs if r["metric"].startswith("alias:")}
    assert unresolved == {"alias:10", "alias:11", "alias:20", "alias:21"}, unresolved
    node.send("birth")  # what an edge node does on the rebirth request
    node.send(f"data 5 1 {T0 + 20_000}")
    recs = readings(kafka, 25 + 20 + 5 + 20)
    got = {(r["device"], r["metric"], r.get("device_time")) for r in recs}
    assert set(expected_ddata(T0 + 20_000, 5)) <= got


def test_seq_gap_triggers_rebirth_within_reorder_timeout(wd):
    mqtt = Mosquitto(wd)
    gateway(wd, mqtt, extra='\n[sparkplug]\nreorder_timeout = "1s"\n')
    node = EdgeNode(wd, mqtt.port)
    node.send("birth")
    node.send(f"data 3 0 {T0}")
    assert node.ncmds() == []
    node.send("skip")
    sent = time.monotonic()
    node.send(f"data 3 0 {T0 + 3000}")
    e = node.wait("NCMD Node Control/Rebirth", lambda e: e["event"] == "ncmd", timeout=10)
    took = time.monotonic() - sent
    assert e["metrics"] == [{"name": "Node Control/Rebirth", "value": True}]
    assert 0.9 <= took < 5, f"rebirth after {took:.2f}s with reorder_timeout 1s"
    assert len(node.ncmds()) == 1


def test_no_gap_no_rebirth(wd):
    mqtt = Mosquitto(wd)
    gw = gateway(wd, mqtt, extra='\n[sparkplug]\nreorder_timeout = "1s"\n')
    node = EdgeNode(wd, mqtt.port)
    node.send("birth")
    node.send(f"data 3 0 {T0}")
    node.send(f"data 3 0 {T0 + 3000}")
    wait_until("gatewayd to log stats", lambda: gw.stats() and gw.stats().get("readings", 0) >= 0)
    time.sleep(2.5)  # longer than reorder_timeout: a wrongly detected gap would have fired
    assert node.ncmds() == []


def test_ndeath_shows_devices_offline_in_gatewayctl(wd):
    mqtt = Mosquitto(wd)
    gw = gateway(wd, mqtt)
    sock = wd.path / "control.sock"
    node = EdgeNode(wd, mqtt.port)
    node.send("birth")
    node.send("data 2 0")

    def devices():
        return {d["device"]: d for d in ctl_json(sock, "sensors")["devices"]}

    wait_until("both devices online in gatewayctl sensors",
               lambda: all(devices().get(d, {}).get("online") is True for d in ("e1", "e1/d1", "e1/d2")))
    node.send("ndeath")
    wait_until("the devices offline in gatewayctl sensors",
               lambda: all(devices().get(d, {}).get("online") is False for d in ("e1", "e1/d1", "e1/d2")))
    table = subprocess.run([str(GATEWAYCTL), "--socket", str(sock), "sensors"], capture_output=True, text=True,
                           timeout=30).stdout
    rows = [l for l in table.splitlines() if l.startswith("e1")]
    assert len(rows) == 3 and all("OFFLINE" in r for r in rows), table


def state_message(mqtt, host_id, wait=3):
    p = subprocess.run(["mosquitto_sub", "-p", str(mqtt.port), "-h", "127.0.0.1", "-t", f"spBv1.0/STATE/{host_id}",
                        "-C", "1", "-W", str(wait), "-V", "mqttv5"], capture_output=True, text=True, timeout=30)
    return json.loads(p.stdout) if p.stdout.strip() else None


def test_state_birth_retained_and_will_on_sigkill(wd):
    mqtt = Mosquitto(wd)
    gw = gateway(wd, mqtt, extra='\n[sparkplug]\nhost_id = "gw-host"\n')
    birth = wait_until("the retained STATE birth", lambda: state_message(mqtt, "gw-host"))
    assert birth["online"] is True
    assert abs(birth["timestamp"] - time.time() * 1000) < 60_000
    gw.kill()
    death = wait_until("the STATE Will", lambda: (lambda m: m if m and m["online"] is False else None)(
        state_message(mqtt, "gw-host")))
    assert death == {"online": False, "timestamp": birth["timestamp"]}


def test_no_host_id_no_state(wd):
    """The weaker setting: without host_id the gateway is no Primary Host and publishes no STATE."""
    mqtt = Mosquitto(wd)
    gw = gateway(wd, mqtt)
    assert state_message(mqtt, "+", wait=2) is None
    gw.kill()
    assert state_message(mqtt, "+", wait=2) is None


def test_bad_sparkplug_config_is_refused_with_file_line_key(wd):
    base = """[gateway]
state_dir = "state"
[mqtt]
uri = "tcp://127.0.0.1:1"
[[mqtt.subscribe]]
topic = "spBv1.0/plant1/#"
format = "sparkplug_b"
[sparkplug]
host_id = "gw"
"""
    cases = {
        base.replace('host_id = "gw"', 'host_id = "a/b"'):
            ":9: sparkplug.host_id: must be a non-empty MQTT topic level",
        base.replace('format = "sparkplug_b"', 'format = "sparkplug_b"\ntemplate = "x/{device}"'):
            ":8: mqtt.subscribe[0].template: format sparkplug_b takes device and metric",
        base.replace('host_id = "gw"', 'reorder_timout = "1s"'): ":9: sparkplug.reorder_timout: unknown key",
        base.replace('topic = "spBv1.0/plant1/#"', 'topic = "plant1/#"'):
            ":6: mqtt.subscribe[0].topic: format sparkplug_b needs a Sparkplug B filter",
    }
    good = wd.path / "good.toml"
    good.write_text(base)
    assert subprocess.run([str(BUILD / "gateway" / "gatewayd"), "--check-config", good]).returncode == 0
    for i, (text, message) in enumerate(cases.items()):
        f = wd.path / f"bad{i}.toml"
        f.write_text(text)
        p = subprocess.run([str(BUILD / "gateway" / "gatewayd"), "--check-config", f], capture_output=True, text=True)
        assert p.returncode == 78, p
        assert f"{f}{message}" in p.stderr, p.stderr
