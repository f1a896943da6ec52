"""The Mosquitto broker plugin (protocols/mqtt/timestamp_plugin.c) against a real Debian broker.

Each test starts Mosquitto with the plugin on an ephemeral loopback port, publishes with
mosquitto_pub and reads what a subscriber gets: mosquitto_sub -V mqttv5 printing user
properties (%P), or, where other MQTT v5 properties must be checked too, a minimal raw MQTT v5
subscriber below. Stamps are checked against the test's own wall clock: the broker runs on the
same host, so its receive time must fall between "just before publishing" and "seen by the
subscriber", with 1 s of slack either side.
"""
import re
import socket
import subprocess
import time
from datetime import datetime, timezone

import pytest

from gwtest import PLUGIN, Mosquitto, Proc, free_port, wait_until

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SLACK_MS = 1000


@pytest.fixture(autouse=True)
def _plugin_built():
    assert PLUGIN.exists(), f"{PLUGIN} not built (cmake --build <dir> --target iot_gateway_timestamp)"


def now_ms():
    return time.time_ns() // 1_000_000


def publish(broker, topic, payload, *extra, version="mqttv5", qos=1):
    argv = ["mosquitto_pub", "-V", version, "-h", "127.0.0.1", "-p", str(broker.port), "-q", str(qos),
            "-t", topic, "-m", payload, *extra]
    p = subprocess.run(argv, capture_output=True, timeout=20)
    assert p.returncode == 0, f"mosquitto_pub failed: {p.stdout.decode()} {p.stderr.decode()}"


class Subscriber:
    """mosquitto_sub printing `MSG|topic|user properties|payload`, one line per message.

    mosquitto_sub's output is block-buffered into the log file and flushed per message, so
    readiness is proven by a probe message arriving, not by its SUBACK debug line.
    """

    def __init__(self, wd, broker, version="mqttv5", name="sub"):
        self.wd, self.broker = wd, broker
        self.proc = wd.track(Proc(name, [
            "mosquitto_sub", "-V", version, "-h", "127.0.0.1", "-p", broker.port, "-t", "test/#",
            "-q", "1", "-F", "MSG|%t|%P|%p"], wd.path))

        def probe_seen():
            publish(broker, "test/probe", "probe")
            return any(m[0] == "test/probe" for m in self.messages())

        wait_until("mosquitto_sub to receive a probe", probe_seen, timeout=20, interval=0.2)

    def messages(self):
        """[(topic, [(key, value), ...], payload)] for every message seen so far."""
        out = []
        for line in self.proc.text().splitlines():
            if not line.startswith("MSG|"):
                continue
            _, topic, props, payload = line.split("|", 3)
            # %P prints `key:value` pairs separated by spaces (the tests use no spaces in them).
            pairs = [tuple(kv.split(":", 1)) for kv in props.split(" ") if kv]
            out.append((topic, pairs, payload))
        return out

    def wait_for(self, topic):
        """The first message on `topic` and the test's wall clock when it was seen (ms)."""
        got = wait_until(f"a message on {topic}",
                         lambda: next((m for m in self.messages() if m[0] == topic), None),
                         timeout=20, interval=0.02)
        return got, now_ms()


def stamps(pairs, name="timestamp"):
    return [v for k, v in pairs if k == name]


def assert_epoch_ms_between(value, lo_ms, hi_ms):
    assert re.fullmatch(r"\d+", value), f"not epoch ms: {value!r}"
    ms = int(value)
    assert lo_ms - SLACK_MS <= ms <= hi_ms + SLACK_MS, f"stamp {ms} outside [{lo_ms}, {hi_ms}] ± 1 s"
    return ms


def parse_rfc3339_ms(value):
    assert RFC3339_MS.match(value), f"not RFC 3339 UTC with milliseconds: {value!r}"
    dt = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000 + 0.5)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_epoch_ms_stamp_is_the_broker_receive_time(wd, qos):
    broker = Mosquitto(wd, persistence=False, plugin=PLUGIN)
    sub = Subscriber(wd, broker)
    before = now_ms()
    publish(broker, "test/epoch", "21.5", qos=qos)
    (_, pairs, payload), seen = sub.wait_for("test/epoch")
    assert payload == "21.5"
    assert len(stamps(pairs)) == 1, pairs
    ms = assert_epoch_ms_between(stamps(pairs)[0], before, seen)
    print(f"qos {qos}: stamp {ms}, published at >= {before}, seen at {seen}")


def test_rfc3339_format(wd):
    broker = Mosquitto(wd, persistence=False, plugin=PLUGIN, plugin_opts={"format": "rfc3339"})
    sub = Subscriber(wd, broker)
    before = now_ms()
    publish(broker, "test/rfc", "x")
    (_, pairs, _), seen = sub.wait_for("test/rfc")
    assert len(stamps(pairs)) == 1, pairs
    ms = parse_rfc3339_ms(stamps(pairs)[0])
    assert_epoch_ms_between(str(ms), before, seen)


def test_client_supplied_stamp_is_replaced(wd):
    """A client cannot forge the reference: every `timestamp` it sends is removed, one fresh stamp
    is appended, and its other user properties are kept in order."""
    broker = Mosquitto(wd, persistence=False, plugin=PLUGIN)
    sub = Subscriber(wd, broker)
    before = now_ms()
    publish(broker, "test/spoof", "x",
            "-D", "publish", "user-property", "a", "1",
            "-D", "publish", "user-property", "timestamp", "1000",
            "-D", "publish", "user-property", "b", "2",
            "-D", "publish", "user-property", "timestamp", "2026-01-01T00:00:00.000Z")
    (_, pairs, _), seen = sub.wait_for("test/spoof")
    assert [k for k, _ in pairs] == ["a", "b", "timestamp"], pairs
    assert pairs[:2] == [("a", "1"), ("b", "2")]
    assert_epoch_ms_between(pairs[2][1], before, seen)


def test_v311_publisher_is_stamped_for_v5_subscriber(wd):
    broker = Mosquitto(wd, persistence=False, plugin=PLUGIN)
    sub = Subscriber(wd, broker)
    before = now_ms()
    publish(broker, "test/v311", "old-device", version="mqttv311")
    (_, pairs, payload), seen = sub.wait_for("test/v311")
    assert payload == "old-device"
    assert len(stamps(pairs)) == 1, pairs
    assert_epoch_ms_between(stamps(pairs)[0], before, seen)


def test_v311_subscriber_gets_the_message_without_properties(wd):
    broker = Mosquitto(wd, persistence=False, plugin=PLUGIN)
    sub = Subscriber(wd, broker, version="mqttv311")
    publish(broker, "test/to-v311", "plain")
    (_, pairs, payload), _ = sub.wait_for("test/to-v311")
    assert payload == "plain" and pairs == []


def test_custom_property_name_leaves_other_names_alone(wd):
    broker = Mosquitto(wd, persistence=False, plugin=PLUGIN,
                       plugin_opts={"property": "broker_ts", "format": "epoch_ms"})
    sub = Subscriber(wd, broker)
    before = now_ms()
    publish(broker, "test/custom", "x", "-D", "publish", "user-property", "timestamp", "device-says")
    (_, pairs, _), seen = sub.wait_for("test/custom")
    assert [k for k, _ in pairs] == ["timestamp", "broker_ts"], pairs
    assert stamps(pairs) == ["device-says"]
    assert_epoch_ms_between(stamps(pairs, "broker_ts")[0], before, seen)


def test_retained_message_keeps_its_receive_time(wd):
    broker = Mosquitto(wd, persistence=False, plugin=PLUGIN)
    before = now_ms()
    publish(broker, "test/retained", "r", "-r")
    after = now_ms()
    time.sleep(1.5)
    sub = Subscriber(wd, broker)
    (_, pairs, _), _ = sub.wait_for("test/retained")
    ms = int(stamps(pairs)[0])
    # QoS 1: mosquitto_pub returned only after the PUBACK, which follows the stamping.
    assert before - SLACK_MS <= ms <= after, (before, ms, after)


# --- a minimal MQTT v5 subscriber, to see every property the broker forwards -------------------

def _varint(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s):
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


class RawV5Subscriber:
    def __init__(self, port, topic):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        connect = _utf8("MQTT") + bytes([5, 0x02]) + (30).to_bytes(2, "big") + _varint(0) + _utf8("raw-v5")
        self._send(0x10, connect)
        kind, body = self._recv()
        assert kind == 0x20 and body[1] == 0, f"CONNACK {body!r}"
        self._send(0x82, (1).to_bytes(2, "big") + _varint(0) + _utf8(topic) + bytes([0]))
        kind, body = self._recv()
        assert kind == 0x90 and body[-1] == 0, f"SUBACK {body!r}"

    def close(self):
        self.sock.close()

    def _send(self, header, body):
        self.sock.sendall(bytes([header]) + _varint(len(body)) + body)

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, "broker closed the connection"
            buf += chunk
        return buf

    def _recv(self):
        header = self._read(1)[0]
        length, mult = 0, 1
        while True:
            b = self._read(1)[0]
            length += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        return header & 0xF0, self._read(length)

    def publish(self):
        """(topic, [(property id, value)], payload) of the next PUBLISH (QoS 0 subscription)."""
        kind, body = self._recv()
        assert kind == 0x30, f"expected PUBLISH, got {kind:#x}"
        tlen = int.from_bytes(body[:2], "big")
        topic, i = body[2:2 + tlen].decode(), 2 + tlen
        plen, mult = 0, 1
        while True:
            b = body[i]
            i += 1
            plen += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        end, props = i + plen, []

        def string(j):
            n = int.from_bytes(body[j:j + 2], "big")
            return body[j + 2:j + 2 + n], j + 2 + n

        while i < end:
            pid = body[i]
            i += 1
            if pid == 0x01:  # payload format indicator
                value, i = body[i], i + 1
            elif pid == 0x02:  # message expiry interval
                value, i = int.from_bytes(body[i:i + 4], "big"), i + 4
            elif pid in (0x03, 0x08):  # content type, response topic
                raw, i = string(i)
                value = raw.decode()
            elif pid == 0x09:  # correlation data
                value, i = string(i)
            elif pid == 0x26:  # user property
                k, i = string(i)
                v, i = string(i)
                value = (k.decode(), v.decode())
            else:
                raise AssertionError(f"unexpected property {pid:#x} in PUBLISH")
            props.append((pid, value))
        return topic, props, body[end:]


def test_replacing_a_stamp_keeps_every_other_property(wd):
    """The spoof path rebuilds the property list; nothing but the forged stamp may be lost."""
    broker = Mosquitto(wd, persistence=False, plugin=PLUGIN, plugin_opts={"format": "rfc3339"})
    sub = RawV5Subscriber(broker.port, "test/#")
    try:
        before = now_ms()
        publish(broker, "test/all-props", "payload",
                "-D", "publish", "payload-format-indicator", "1",
                "-D", "publish", "content-type", "application/json",
                "-D", "publish", "response-topic", "reply/here",
                "-D", "publish", "correlation-data", "corr-42",
                "-D", "publish", "message-expiry-interval", "3600",
                "-D", "publish", "user-property", "timestamp", "forged",
                "-D", "publish", "user-property", "site", "plant1")
        topic, props, payload = sub.publish()
        seen = now_ms()
    finally:
        sub.close()
    assert (topic, payload) == ("test/all-props", b"payload")
    by_id = {}
    for pid, value in props:
        by_id.setdefault(pid, []).append(value)
    assert by_id[0x01] == [1]
    assert by_id[0x03] == ["application/json"]
    assert by_id[0x08] == ["reply/here"]
    assert by_id[0x09] == [b"corr-42"]
    assert 3590 <= by_id[0x02][0] <= 3600
    users = by_id[0x26]
    assert [k for k, _ in users] == ["site", "timestamp"], users
    assert users[0] == ("site", "plant1")
    assert_epoch_ms_between(str(parse_rfc3339_ms(users[1][1])), before, seen)


# --- bad options: the broker must refuse to start, saying why -----------------------------------

@pytest.mark.parametrize("opts, message", [
    (["plugin_opt_format iso8601"],
     "iot_gateway_timestamp: invalid plugin_opt_format 'iso8601' (expected epoch_ms or rfc3339)"),
    (["plugin_opt_fromat rfc3339"],
     "iot_gateway_timestamp: unknown option plugin_opt_fromat (known: property, format)"),
    (["plugin_opt_format rfc3339", "plugin_opt_format epoch_ms"],
     "iot_gateway_timestamp: plugin_opt_format is given more than once"),
])
def test_bad_option_refuses_to_start(wd, opts, message):
    conf = wd.path / "bad.conf"
    conf.write_text(f"listener {free_port()} 127.0.0.1\nallow_anonymous true\nlog_dest stdout\n"
                    f"plugin {PLUGIN}\n" + "".join(o + "\n" for o in opts))
    p = subprocess.run(["mosquitto", "-c", str(conf)], capture_output=True, timeout=20)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode != 0, out
    assert message in out, out
    assert "Error: Plugin returned 3 when initialising." in out, out
