"""Issue 6, items 2 and 4: gatewayctl against a live gatewayd with real servers (Mosquitto with
the broker plugin, the Kafka test broker, VictoriaMetrics), in table and --json form; a sink
taken down; the daemon not running; the 80-column check; Prometheus metrics scraped over HTTP;
SIGHUP reload."""
import collections
import fnmatch
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from gwtest import (BUILD, GATEWAYD, PLUGIN, Gatewayd, KafkaBroker, Mosquitto, Proc, VictoriaMetrics, free_port,
                    run_sim, start_sim, wait_until)

from gwtest import GATEWAYCTL  # noqa: E402 (one definition, in gwtest)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class CtlGatewayd(Gatewayd):
    """gatewayd with a control socket of its own in the test folder (and, with metrics=True, a
    metrics listener on a free port)."""

    def __init__(self, wd, mqtt_uri, metrics=False, **kw):
        self.metrics_port = free_port() if metrics else None
        extra = kw.pop("extra", "")
        if metrics:
            extra += f'\n[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n'
        super().__init__(wd, mqtt_uri, extra=extra, **kw)

    def start(self):
        text = self.config.read_text()
        if "control_socket" not in text:
            self.config.write_text(text.replace("[gateway]\n", '[gateway]\ncontrol_socket = "control.sock"\n', 1))
        super().start()

    @property
    def socket(self):
        return self.wd.path / "control.sock"


def ctl(sock, *args, env=None, **kw):
    p = subprocess.run([str(GATEWAYCTL), "--socket", str(sock), *args], capture_output=True, text=True,
                       timeout=30, env=env, **kw)
    return p


def ctl_json(sock, command):
    p = ctl(sock, command, "--json")
    assert p.returncode in (0, 1), f"gatewayctl {command} --json: {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.returncode, json.loads(p.stdout)


def status(sock):
    return ctl_json(sock, "status")[1]


def wait_status(sock, what, pred, timeout=30.0):
    return wait_until(what, lambda: (lambda s: s if pred(s) else None)(status(sock)), timeout=timeout, interval=0.2)


def sinks_by_name(st):
    return {s["name"]: s for s in st["sinks"]}


def assert_fits(text, width=80):
    for line in text.splitlines():
        visible = ANSI.sub("", line)
        assert len(visible) <= width, f"{len(visible)} columns: {visible!r}"


def publish(uri, topic, payload, qos=1):
    port = uri.rsplit(":", 1)[1]
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-q", str(qos), "-V", "mqttv5", "-t", topic,
                    "-m", payload], check=True, timeout=20)


def reading(value):
    return json.dumps({"value": value, "ts": int(time.time() * 1000)})


def test_every_command_in_table_and_json_form(wd):
    mq = Mosquitto(wd, plugin=PLUGIN)
    kafka = KafkaBroker(wd)
    vm = VictoriaMetrics(wd)
    gw = CtlGatewayd(wd, mq.uri, kafka=kafka, vm=vm)

    # A steady 200 readings/s for 10 s from 20 devices: the rates must show it.
    sim, _ = start_sim(wd, mq.uri, "--devices", "20", "--count", "2000", "--rate", "200", "--qos", "1",
                       "--seed", "3")
    st = wait_status(gw.socket, "a readings rate while the simulator runs",
                     lambda s: s["rate_in"] is not None and s["readings"] > 400, timeout=30)
    print(f"rate_in {st['rate_in']}")
    assert 100 <= st["rate_in"] <= 400, st["rate_in"]
    assert sim.p.wait(timeout=60) == 0
    st = wait_status(gw.socket, "2000 readings forwarded to both sinks",
                     lambda s: s["readings"] == 2000 and all(x["backlog"] == 0 and x["sent"] >= 2000
                                                             for x in s["sinks"]))

    # status --json: the daemon, the source, both sinks, the journal.
    assert st["daemon"]["version"] and st["daemon"]["pid"] == gw.proc.p.pid
    assert st["daemon"]["uptime_s"] > 0 and st["daemon"]["last_reload"] is None
    assert st["gateway"] == "test-gw" and st["bad_total"] == 0 and st["bad"] == {}
    (src,) = st["sources"]
    assert src["name"] == "mqtt" and src["up"] is True and src["target"] == mq.uri
    sinks = sinks_by_name(st)
    assert set(sinks) == {"kafka", "timeseries"}
    assert sinks["kafka"]["target"] == kafka.bootstrap and sinks["timeseries"]["target"] == vm.write_url
    for s in sinks.values():
        assert s["up"] is True and s["last_error"] == "" and s["oldest_unsent_age_s"] is None
    assert st["journal"]["backlog"] == 0 and st["journal"]["dropped"] == 0
    assert st["journal"]["last_seq"] >= 2000
    # Rows every sink (and the windows) confirmed are deleted with a later commit or by the
    # idle retention pass: polled, not read at the instant the backlog reached 0.
    wait_status(gw.socket, "forwarded rows deleted from the journal",
                lambda s: s["journal"]["rows"] <= 2000)
    assert ctl(gw.socket, "status", "--json").returncode == 0

    # status as a table: exit 0, readable, 80 columns.
    p = ctl(gw.socket, "status")
    print(p.stdout)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "gateway test-gw" in p.stdout and "all sources and sinks up" in p.stdout
    assert re.search(r"^mqtt\s+up\s+" + re.escape(mq.uri), p.stdout, re.M)
    assert re.search(r"^kafka\s+up\s+", p.stdout, re.M) and re.search(r"^timeseries\s+up\s+", p.stdout, re.M)
    assert "2000 since" in p.stdout
    assert "\x1b[" not in p.stdout  # not a TTY: no colour
    assert_fits(p.stdout)

    # sensors: each of the 20 devices, with its clock.
    code, sensors = ctl_json(gw.socket, "sensors")
    assert code == 0
    devices = {d["device"]: d for d in sensors["devices"]}
    assert set(devices) == {f"dev-{i:03d}" for i in range(20)} or len(devices) == 20, sorted(devices)
    for d in devices.values():
        assert d["reference"] == "broker" and d["out_of_bounds"] is False and d["samples"] >= 1
        assert d["last_seen"].endswith("Z")
    p = ctl(gw.socket, "sensors")
    print(p.stdout)
    assert p.returncode == 0
    for name in devices:
        assert re.search(rf"^{re.escape(name)}\s", p.stdout, re.M), name
    # Filtered, sorted and limited by gatewayd (issue 13: a plant has 100,000 devices).
    names = sorted(devices)
    pattern = names[0][:-1] + "*"  # e.g. "dev-00*": a part of the devices
    expected = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    assert 3 < len(expected) < 20, expected
    p = ctl(gw.socket, "sensors", pattern, "--limit", "3", "--sort", "name", "--json")
    some = json.loads(p.stdout)
    assert p.returncode == 0 and some["total"] == 20 and some["matched"] == len(expected), p.stdout
    assert [d["device"] for d in some["devices"]] == expected[:3]
    p = ctl(gw.socket, "sensors", pattern, "--limit", "2")
    assert p.returncode == 0 and f"showing 2 of {len(expected)} matching devices" in p.stdout, p.stdout
    p = ctl(gw.socket, "sensors", "--sort", "bogus")
    assert p.returncode != 0
    assert_fits(p.stdout)

    # buffer: the journal and each sink's cursor.
    code, buf = ctl_json(gw.socket, "buffer")
    assert code == 0
    assert buf["journal"]["path"].endswith("state/journal.db") and buf["journal"]["max_size"] == 512 << 20
    bsinks = {s["name"]: s for s in buf["sinks"]}
    assert bsinks["kafka"]["backlog"] == 0 and bsinks["kafka"]["cursor"] >= 2000
    assert bsinks["timeseries"]["dropped"] == 0
    p = ctl(gw.socket, "buffer")
    print(p.stdout)
    assert p.returncode == 0 and p.stdout.startswith("journal   /") and re.search(r"^kafka\s+\d+\s+0\s", p.stdout, re.M)
    assert_fits(p.stdout)

    # sinks: sent, up, no error.
    code, sk = ctl_json(gw.socket, "sinks")
    assert code == 0
    for s in sk["sinks"]:
        assert s["up"] and s["sent"] >= 2000 and s["last_error"] == ""
    p = ctl(gw.socket, "sinks")
    print(p.stdout)
    assert p.returncode == 0 and "kafka  up" in p.stdout and "timeseries  up" in p.stdout
    assert_fits(p.stdout)

    # alerts: no rules here (test_alerts.py covers firing and undelivered ones).
    code, al = ctl_json(gw.socket, "alerts")
    assert code == 0 and al == {"rules": 0, "rule_list": [], "firing": [], "pending": [], "pending_count": 0,
                                "undelivered": [], "notifiers": [], "firing_total": 0}
    p = ctl(gw.socket, "alerts")
    assert p.returncode == 0 and "0 firing" in p.stdout

    # Options after or before the command; an unknown command is a usage error.
    assert json.loads(ctl(gw.socket, "--json", "buffer").stdout)["journal"]
    p = ctl(gw.socket, "frobnicate")
    assert p.returncode == 64 and "unknown command 'frobnicate'" in p.stderr, p.stderr


def test_a_sink_taken_down_shows_down_with_its_error_and_a_growing_backlog(wd):
    mq = Mosquitto(wd, plugin=PLUGIN)
    kafka = KafkaBroker(wd)
    vm = VictoriaMetrics(wd)
    gw = CtlGatewayd(wd, mq.uri, kafka=kafka, vm=vm)
    wait_status(gw.socket, "both sinks up", lambda s: all(x["up"] for x in s["sinks"]) and s["sources"][0]["up"])
    assert ctl(gw.socket, "status").returncode == 0

    vm.stop()
    sim, _ = start_sim(wd, mq.uri, "--devices", "5", "--count", "100000", "--rate", "100", "--qos", "1")
    st = wait_status(gw.socket, "timeseries down with an error",
                     lambda s: not sinks_by_name(s)["timeseries"]["up"] and sinks_by_name(s)["timeseries"]["last_error"])
    err = sinks_by_name(st)["timeseries"]["last_error"]
    print(f"timeseries last_error: {err}")
    assert vm.write_url in err or "onnect" in err
    b1 = sinks_by_name(st)["timeseries"]["backlog"]
    st = wait_status(gw.socket, "the timeseries backlog to grow",
                     lambda s: sinks_by_name(s)["timeseries"]["backlog"] >= b1 + 100)
    ts = sinks_by_name(st)["timeseries"]
    assert ts["oldest_unsent_age_s"] is not None and sinks_by_name(st)["kafka"]["backlog"] < ts["backlog"]
    assert st["journal"]["backlog"] == ts["backlog"]

    p = ctl(gw.socket, "status")
    print(p.stdout)
    assert p.returncode == 1, p.stdout
    assert re.search(r"^timeseries\s+DOWN\s", p.stdout, re.M) and re.search(r"^kafka\s+up\s", p.stdout, re.M)
    assert "DOWN: timeseries" in p.stdout
    assert re.search(r"^  timeseries: " + re.escape(err[:30]), p.stdout, re.M)
    assert_fits(p.stdout)
    p = ctl(gw.socket, "sinks")
    assert p.returncode == 1 and "timeseries  DOWN" in p.stdout and "last error: " + err[:30] in p.stdout
    assert ctl(gw.socket, "status", "--json").returncode == 1

    # Kafka too: both down.
    kafka.down()
    st = wait_status(gw.socket, "kafka down", lambda s: not sinks_by_name(s)["kafka"]["up"], timeout=60)
    assert sinks_by_name(st)["kafka"]["last_error"]
    p = ctl(gw.socket, "status")
    print(p.stdout)
    assert p.returncode == 1 and "DOWN: kafka, timeseries" in p.stdout
    assert_fits(p.stdout)

    # Both back: the backlogs drain, exit 0 again.
    kafka.up()
    vm.start()
    sim.kill(signal.SIGTERM)
    wait_status(gw.socket, "both sinks up and drained",
                lambda s: all(x["up"] and x["backlog"] == 0 for x in s["sinks"]), timeout=90)
    p = ctl(gw.socket, "status")
    assert p.returncode == 0 and "all sources and sinks up" in p.stdout


def test_daemon_not_running_stale_and_live_sockets_and_permissions(wd):
    # No socket at all.
    p = ctl(wd.path / "control.sock", "status")
    assert p.returncode == 3 and "gatewayd is not running" in p.stderr, p.stderr
    assert p.stdout == ""
    # The default path, when nothing runs there.
    if not os.path.exists("/run/iot-gateway/control.sock"):
        p = subprocess.run([str(GATEWAYCTL), "status"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 3 and "/run/iot-gateway/control.sock" in p.stderr

    mq = Mosquitto(wd)
    gw = CtlGatewayd(wd, mq.uri)
    assert status(gw.socket)["gateway"] == "test-gw"

    # A second gatewayd configured with the same control socket: refused, the first keeps it.
    other = wd.path / "other"
    other.mkdir()
    (other / "gateway.toml").write_text(gw.config.read_text()
                                        .replace('id = "test-gw"', 'id = "other-gw"')
                                        .replace('control_socket = "control.sock"',
                                                 f'control_socket = "{gw.socket}"')
                                        .replace(f'client_id = "gw-{wd.path.name}"', 'client_id = "other"'))
    second = wd.track(Proc("gatewayd-2", [GATEWAYD, "--config", other / "gateway.toml"], other))
    wait_until("the second gatewayd to refuse the socket", lambda: "is in use" in second.text())
    assert "another gatewayd is running" in second.text()
    assert status(gw.socket)["gateway"] == "test-gw"
    second.stop()
    assert gw.socket.exists() and status(gw.socket)["gateway"] == "test-gw"

    # Permission: a user outside the group gets a clear message (needs root to switch users).
    if os.geteuid() == 0:
        os.chmod(wd.path, 0o755)  # let nobody reach the socket itself; it is 0660 root:root
        p = ctl(gw.socket, "status", user="nobody", group="nogroup", extra_groups=[])
        assert p.returncode == 4, p.stderr
        assert "permission denied" in p.stderr and "iot-gateway group" in p.stderr
    assert oct(os.stat(gw.socket).st_mode & 0o777) == "0o660"

    # Crash: the socket file stays behind; the next start replaces it.
    gw.kill()
    assert gw.socket.exists()
    p = ctl(gw.socket, "status")
    assert p.returncode == 3 and "nobody accepts" in p.stderr, p.stderr
    gw.start()
    assert "replacing stale socket" in gw.text()
    assert status(gw.socket)["daemon"]["pid"] == gw.proc.p.pid

    # A clean stop removes the socket.
    gw.proc.p.send_signal(signal.SIGTERM)
    assert gw.proc.p.wait(timeout=20) == 0
    assert not gw.socket.exists()
    p = ctl(gw.socket, "status")
    assert p.returncode == 3 and "gatewayd is not running" in p.stderr


def run_on_tty(argv, env):
    """Runs argv with a pseudo-terminal as stdout; returns (exit code, output)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdout=slave, stderr=subprocess.STDOUT, env=env)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    os.close(master)
    return p.wait(timeout=10), out.decode(errors="replace")


def test_80_columns_and_colour(wd):
    """`status` (and the other views) fit 80 columns with long names and errors; colour only on
    a TTY and not with NO_COLOR."""
    mq = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    # A sink whose error is long: a time-series URL with a long path on a closed port.
    dead = free_port()
    long_url = f"http://127.0.0.1:{dead}/write?db=" + "x" * 150
    gw = CtlGatewayd(wd, mq.uri, kafka=kafka, extra=f'\n[timeseries]\nurl = "{long_url}"\nretry_max = "1s"\n')
    long_device = "pump-" + "ü" * 10 + "-" + "7" * 120
    publish(mq.uri, f"plant1/line1/{long_device}/temp", reading(1.5))
    publish(mq.uri, "plant1/line1/short/temp", reading(2.5))
    wait_status(gw.socket, "the long-url sink down with an error and 2 readings",
                lambda s: s["readings"] == 2 and not sinks_by_name(s)["timeseries"]["up"]
                and sinks_by_name(s)["timeseries"]["last_error"])
    for cmd in ("status", "sensors", "buffer", "sinks", "alerts"):
        p = ctl(gw.socket, cmd)
        print(p.stdout)
        assert p.returncode in (0, 1), p.stderr
        assert_fits(p.stdout)
        p = ctl(gw.socket, cmd, "--color", "always")
        assert "\x1b[" in p.stdout
        assert_fits(p.stdout)
    p = ctl(gw.socket, "status")
    assert p.returncode == 1 and "..." in p.stdout  # the long error line was cut, not wrapped
    p = ctl(gw.socket, "sensors")
    assert "short" in p.stdout and "pump-üüü" in p.stdout
    # --wide: nothing cut.
    p = ctl(gw.socket, "sinks", "--wide")
    assert long_url in p.stdout

    # On a terminal: colour, unless NO_COLOR is set.
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    env["TERM"] = "xterm"
    code, out = run_on_tty([str(GATEWAYCTL), "--socket", str(gw.socket), "status"], env)
    assert code == 1 and "\x1b[" in out, out
    assert_fits(out.replace("\r", ""))
    code, out = run_on_tty([str(GATEWAYCTL), "--socket", str(gw.socket), "status"], dict(env, NO_COLOR="1"))
    assert code == 1 and "\x1b[" not in out and "DOWN: timeseries" in out


def scrape(port, path="/metrics"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.headers.get("Content-Type"), r.read().decode()


def parse_metrics(text):
    """{(name, frozenset(labels)): value}, and the HELP/TYPE names."""
    samples, helps, types = {}, set(), set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
        elif line.startswith("# TYPE "):
            types.add(line.split()[2])
        elif line and not line.startswith("#"):
            m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)', line)
            assert m, line
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            samples[(m.group(1), labels)] = float(m.group(3))
    return samples, helps, types


def metric(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def test_metrics_scraped_over_http_match_gatewayctl(wd):
    mq = Mosquitto(wd, plugin=PLUGIN)
    kafka = KafkaBroker(wd)
    vm = VictoriaMetrics(wd)
    gw = CtlGatewayd(wd, mq.uri, kafka=kafka, vm=vm, metrics=True)
    summary, sent = run_sim(wd, mq.uri, "--devices", "10", "--count", "1000", "--rate", "1000", "--qos", "1")
    publish(mq.uri, "plant1/line1/dev-x/temp", "not json at all")
    st = wait_status(gw.socket, "1000 readings forwarded, 1 bad",
                     lambda s: s["readings"] == 1000 and s["bad_total"] == 1
                     and all(x["backlog"] == 0 for x in s["sinks"]))
    sensors = ctl_json(gw.socket, "sensors")[1]
    assert st["daemon"]["metrics"] == f"127.0.0.1:{gw.metrics_port}"

    ctype, text = scrape(gw.metrics_port)
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    samples, helps, types = parse_metrics(text)
    names = {n for n, _ in samples}
    assert names <= helps and names <= types, names - helps
    assert metric(samples, "iot_gateway_readings_total") == 1000
    assert metric(samples, "iot_gateway_messages_total") == st["messages"]
    (reason,) = st["bad"]
    assert metric(samples, "iot_gateway_bad_messages_total", reason=reason) == 1
    assert metric(samples, "iot_gateway_mqtt_connected") == 1
    assert metric(samples, "iot_gateway_source_up", source="mqtt") == 1
    for s in st["sinks"]:
        assert metric(samples, "iot_gateway_sink_up", sink=s["name"]) == 1
        assert metric(samples, "iot_gateway_sink_sent_total", sink=s["name"]) == s["sent"]
        assert metric(samples, "iot_gateway_sink_backlog_rows", sink=s["name"]) == 0
        assert metric(samples, "iot_gateway_sink_dropped_total", sink=s["name"]) == 0
        assert metric(samples, "iot_gateway_sink_oldest_unsent_age_seconds", sink=s["name"]) == 0
    assert metric(samples, "iot_gateway_journal_rows") == st["journal"]["rows"]
    assert metric(samples, "iot_gateway_journal_last_seq") == st["journal"]["last_seq"]
    assert metric(samples, "iot_gateway_clock_devices") == len(sensors["devices"]) == 10
    for d in sensors["devices"]:
        got = metric(samples, "iot_gateway_device_clock_offset_seconds", device=d["device"])
        assert abs(got - d["offset_ms"] / 1000) < 1e-6, (d, got)
        assert metric(samples, "iot_gateway_device_clock_out_of_bounds", device=d["device"]) == 0
    assert metric(samples, "iot_gateway_alerts", state="firing") == 0
    assert metric(samples, "iot_gateway_build_info", version=st["daemon"]["version"], gateway="test-gw") == 1
    assert 0 < metric(samples, "iot_gateway_uptime_seconds") < 600

    # A sink down shows in the metrics as in gatewayctl.
    vm.stop()
    publish(mq.uri, "plant1/line1/dev-x/temp", reading(1.0))
    wait_status(gw.socket, "timeseries down", lambda s: not sinks_by_name(s)["timeseries"]["up"])
    samples, _, _ = parse_metrics(scrape(gw.metrics_port)[1])
    assert metric(samples, "iot_gateway_sink_up", sink="timeseries") == 0
    assert metric(samples, "iot_gateway_sink_backlog_rows", sink="timeseries") >= 1
    assert metric(samples, "iot_gateway_sink_up", sink="kafka") == 1

    # Only /metrics; only GET/HEAD.
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(gw.metrics_port, "/nope")
    assert e.value.code == 404
    req = urllib.request.Request(f"http://127.0.0.1:{gw.metrics_port}/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405


def kafka_key(r):
    v = json.loads(r["payload"])
    return (v["device"], v["metric"], v["value"], v["device_time"])


def sent_key(s):
    from datetime import datetime, timezone
    t = datetime.fromtimestamp(s["ts"] / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return (s["device"], s["metric"], s["value"], t)


def wait_kafka(kafka, want):
    """Polls the readings topic until every (device, value) in `want` is there (a reload may
    resend a batch, so a record count alone proves nothing); returns what is there."""
    def read():
        got = {(json.loads(r["payload"])["device"], json.loads(r["payload"])["value"])
               for r in kafka.consume("iot.readings", 1)}
        return got if want <= got else None
    return wait_until(f"{sorted(want)} in Kafka", read, timeout=60, interval=0.5)


def hup_and_wait(gw, n_reloads=None, failures=None):
    gw.proc.p.send_signal(signal.SIGHUP)
    return wait_status(gw.socket, f"reload #{n_reloads or failures}",
                       lambda s: (n_reloads is None or s["daemon"]["reloads"] == n_reloads)
                       and (failures is None or s["daemon"]["reload_failures"] == failures))


def test_sighup_applies_new_subscriptions_socket_and_metrics_port(wd):
    mq = Mosquitto(wd, plugin=PLUGIN)
    kafka = KafkaBroker(wd)
    gw = CtlGatewayd(wd, mq.uri, kafka=kafka, metrics=True)
    publish(mq.uri, "plant1/line1/pump-1/temp", reading(1.0))
    wait_status(gw.socket, "1 reading", lambda s: s["readings"] == 1)

    # Not subscribed yet: plant2 readings go nowhere.
    publish(mq.uri, "plant2/line9/pump-2/temp", reading(2.0))
    # New config: a second subscription, another control socket, another metrics port.
    new_port = free_port()
    text = gw.config.read_text()
    text = text.replace('control_socket = "control.sock"', 'control_socket = "control2.sock"')
    text = text.replace(f"127.0.0.1:{gw.metrics_port}", f"127.0.0.1:{new_port}")
    # The new [[mqtt.subscribe]] goes with the first one, inside [mqtt] (before [buffer]).
    text = text.replace("[buffer]", '[[mqtt.subscribe]]\ntopic = "plant2/+/+/+"\n'
                        'template = "plant2/{line}/{device}/{metric}"\ntimestamp = "ts"\n\n[buffer]', 1)
    gw.config.write_text(text)
    old_socket, old_port = gw.socket, gw.metrics_port
    gw.proc.p.send_signal(signal.SIGHUP)
    new_socket = wd.path / "control2.sock"
    wait_until("the new control socket", lambda: new_socket.exists())
    st = wait_status(new_socket, "reload #1", lambda s: s["daemon"]["reloads"] == 1)
    assert st["daemon"]["last_reload"]["ok"] is True and st["daemon"]["reload_failures"] == 0
    assert not old_socket.exists()
    assert "reload: running with the new config" in gw.text()
    # The metrics follow: the new port answers, the old one is closed.
    samples, _, _ = parse_metrics(scrape(new_port)[1])
    assert metric(samples, "iot_gateway_config_reloads_total") == 1
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", old_port), timeout=1).close()

    publish(mq.uri, "plant2/line9/pump-2/temp", reading(3.0))
    wait_status(new_socket, "the plant2 reading", lambda s: s["readings"] >= 1)
    got = wait_kafka(kafka, {("pump-1", 1.0), ("pump-2", 3.0)})
    assert ("pump-2", 2.0) not in got  # published before the subscription existed
    p = ctl(new_socket, "status")
    assert p.returncode == 0 and "reloaded" in p.stdout
    gw.proc.p.send_signal(signal.SIGTERM)
    assert gw.proc.p.wait(timeout=20) == 0, gw.text()[-3000:]  # a clean exit after the reload
    assert not new_socket.exists()


def test_sighup_with_a_bad_config_keeps_the_old_one_and_says_why(wd):
    mq = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    gw = CtlGatewayd(wd, mq.uri, kafka=kafka)
    good = gw.config.read_text()
    publish(mq.uri, "plant1/line1/pump-1/temp", reading(1.0))
    wait_status(gw.socket, "1 reading", lambda s: s["readings"] == 1)

    lines = good.splitlines()
    at = lines.index("[buffer]") + 1
    lines.insert(at, 'comit_interval = "20ms"')
    gw.config.write_text("\n".join(lines) + "\n")
    st = hup_and_wait(gw, failures=1)
    lr = st["daemon"]["last_reload"]
    assert lr["ok"] is False
    assert lr["error"] == f"{gw.config}:{at + 1}: buffer.comit_interval: unknown key", lr
    assert st["daemon"]["reloads"] == 0
    wait_until("the reason in the log", lambda: "buffer.comit_interval: unknown key" in gw.text())
    # Still running the old config: readings flow, the session is the same.
    publish(mq.uri, "plant1/line1/pump-1/temp", reading(2.0))
    st = wait_status(gw.socket, "2 readings", lambda s: s["readings"] == 2)
    assert st["sources"][0]["up"]
    p = ctl(gw.socket, "status")
    print(p.stdout)
    assert "reload    FAILED" in p.stdout and "buffer.comit_interval: unknown key" in p.stdout.replace("\n  ", "")
    assert_fits(p.stdout)

    # A config that parses but cannot start (an unknown librdkafka property): back to the old.
    gw.config.write_text(good.replace('"broker.address.family" = "v4"',
                                      '"broker.address.family" = "v4"\n"no.such.property" = "1"'))
    st = hup_and_wait(gw, failures=2)
    assert "no.such.property" in st["daemon"]["last_reload"]["error"]
    publish(mq.uri, "plant1/line1/pump-1/temp", reading(3.0))
    wait_status(gw.socket, "a reading after the failed start", lambda s: s["readings"] >= 1 and s["sources"][0]["up"])

    # Fixed: the next SIGHUP applies it.
    gw.config.write_text(good)
    st = hup_and_wait(gw, n_reloads=1)
    assert st["daemon"]["last_reload"]["ok"] is True
    wait_kafka(kafka, {("pump-1", 1.0), ("pump-1", 2.0), ("pump-1", 3.0)})
    gw.proc.p.send_signal(signal.SIGTERM)
    assert gw.proc.p.wait(timeout=20) == 0, gw.text()[-3000:]


def test_no_qos1_reading_is_lost_across_reloads(wd):
    mq = Mosquitto(wd, plugin=PLUGIN)
    kafka = KafkaBroker(wd)
    gw = CtlGatewayd(wd, mq.uri, kafka=kafka)
    sim, out = start_sim(wd, mq.uri, "--devices", "10", "--count", "6000", "--rate", "600", "--qos", "1",
                         "--seed", "11")
    text = gw.config.read_text()
    for n in range(1, 4):
        # Each reload changes a setting (stats interval) so the new pipeline is really new.
        gw.config.write_text(text.replace('stats_interval = "1s"', f'stats_interval = "{n + 1}s"'))
        wait_status(gw.socket, "readings flowing", lambda s: s["readings"] > 300)
        hup_and_wait(gw, n_reloads=n)
    assert sim.p.wait(timeout=120) == 0, sim.text()
    sent = [json.loads(l) for l in out.read_text().splitlines() if l.strip()]
    assert len(sent) == 6000
    records = kafka.consume("iot.readings", 6000, timeout=120)
    got = collections.Counter(kafka_key(r) for r in records)
    want = collections.Counter(sent_key(s) for s in sent)
    missing = set(want) - set(got)
    print(f"kafka: {len(records)} records for 6000 sent, {len(missing)} missing, "
          f"{sum(got.values()) - len(got)} duplicates, 3 reloads")
    assert not missing, list(missing)[:5]
    assert gw.text().count("reload: running with the new config") == 3
