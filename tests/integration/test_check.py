"""Issue 14: `gatewayctl check` on a live gatewayd: the daemon tests the broker, each sink and each
notifier (TCP, TLS where configured, the broker's CONNECT with the credentials, Kafka metadata, an
empty time-series write) and says ok or why not. The tests run off the event loop: the control
socket keeps answering while one waits for a host that never answers."""
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from gwtest import BUILD, Gatewayd, KafkaBroker, Mosquitto, VictoriaMetrics, free_port, wait_until

from gwtest import GATEWAYCTL  # noqa: E402 (one definition, in gwtest)
sys.path.insert(0, str(Path(__file__).parent))
from test_alerts import Receiver  # noqa: E402


def ctl(wd, *args, timeout=60):
    return subprocess.run([str(GATEWAYCTL), "--socket", str(wd.path / "control.sock"), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_check_all_live_is_ok(wd):
    mq = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    vm = VictoriaMetrics(wd)
    receiver = Receiver(wd)
    Gatewayd(wd, mq.uri, kafka=kafka, vm=vm, extra=f"""
[notify.webhook.ops]
url = "{receiver.url}/hooks/ops"
""")
    p = ctl(wd, "check")
    print(p.stdout, p.stderr)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "all 4 ok" in p.stdout
    for line in p.stdout.splitlines():
        assert len(line) <= 80, line
    doc = json.loads(ctl(wd, "check", "--json").stdout)
    assert doc["done"] is True
    by_name = {r["name"]: r for r in doc["results"]}
    assert set(by_name) == {"mqtt", "kafka", "timeseries", "notify.ops"}
    assert all(r["state"] == "ok" for r in doc["results"]), doc
    assert by_name["mqtt"]["detail"] == "TCP and CONNECT accepted"
    assert by_name["kafka"]["detail"].startswith("metadata from 1 broker")
    assert "HTTP 204" in by_name["timeseries"]["detail"]
    assert by_name["notify.ops"]["detail"] == "TCP ok"
    # The webhook saw no request: the test connects only.
    assert not [e for e in receiver.events() if e["path"] == "/hooks/ops"]


def test_check_names_what_is_dead_and_why(wd):
    mq = Mosquitto(wd)
    dead_kafka, dead_vm, dead_hook = free_port(), free_port(), free_port()
    # A host that takes the connection and never answers (a firewall that drops, a hung server).
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    hole_port = hole.getsockname()[1]
    # Fill its backlog (nobody accepts): the next connection attempts hang in SYN.
    filler = []
    for _ in range(16):
        try:
            filler.append(socket.create_connection(("127.0.0.1", hole_port), timeout=0.5))
        except OSError:
            break
    try:
        Gatewayd(wd, mq.uri, extra=f"""
[kafka]
brokers = "127.0.0.1:{dead_kafka}"
readings_topic = "iot.readings"
[kafka.properties]
"broker.address.family" = "v4"
[timeseries]
url = "http://127.0.0.1:{dead_vm}/write"
[notify.webhook.ops]
url = "http://127.0.0.1:{dead_hook}/hooks/ops"
[notify.webhook.hole]
url = "http://127.0.0.1:{hole_port}/hooks/hole"
""")
        check = subprocess.Popen([str(GATEWAYCTL), "--socket", str(wd.path / "control.sock"), "check"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # While the probes wait, the control socket answers at once.
        time.sleep(0.5)
        t0 = time.monotonic()
        st = ctl(wd, "status", "--json")
        assert st.returncode in (0, 1) and json.loads(st.stdout)
        assert time.monotonic() - t0 < 2.0
        out, err = check.communicate(timeout=60)
        print(out, err)
        assert check.returncode == 1, out + err
        for line in out.splitlines():
            assert len(line) <= 80, line
        assert "4 of 5 failed" in out
        doc = json.loads(ctl(wd, "check", "--json").stdout)
        while not doc["done"]:  # a second run (--json starts one): wait for it
            time.sleep(0.2)
            doc = json.loads(ctl(wd, "check", "--json").stdout)
        by_name = {r["name"]: r for r in doc["results"]}
        print(json.dumps(by_name, indent=1))
        assert by_name["mqtt"]["state"] == "ok"
        for name in ("kafka", "timeseries", "notify.ops", "notify.hole"):
            assert by_name[name]["state"] == "failed", by_name[name]
        assert "Connection refused" in by_name["kafka"]["detail"]
        assert "Couldn't connect to server" in by_name["timeseries"]["detail"] or \
            "Connection refused" in by_name["timeseries"]["detail"]
        assert "Couldn't connect to server" in by_name["notify.ops"]["detail"] or \
            "Connection refused" in by_name["notify.ops"]["detail"]
        assert "timed out" in by_name["notify.hole"]["detail"].lower()
        assert "Connection refused" in out or "Couldn't connect" in out
    finally:
        for f in filler:
            f.close()
        hole.close()
