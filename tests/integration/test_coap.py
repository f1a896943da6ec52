"""Issue 7: CoAP ingestion. Devices PUT/POST to gatewayd (libcoap's coap-client from Debian's
libcoap3-bin); gatewayd observes resources on devices (libcoap's coap-server, and
tests/tools/coap's gw-coap-server for discovery); readings arrive in Kafka (read with kcat)."""
import json
import re
import socket
import sqlite3
import subprocess
import time

from gwtest import BUILD, GATEWAYD, Gatewayd, KafkaBroker, Mosquitto, Proc, wait_until

COAP_CLIENT = "coap-client-notls"
COAP_CLIENT_DTLS = "coap-client-openssl"
COAP_SERVER = "coap-server-notls"
GW_COAP_SERVER = BUILD / "tests" / "tools" / "coap" / "gw-coap-server"

RESOURCES = """
[coap]
listen = "127.0.0.1:0"
[[coap.resource]]
path = "sensors/{line}/{device}/{metric}"
format = "value"
max_payload = "64"
[[coap.resource]]
path = "json/{device}/{metric}"
format = "json"
timestamp = "ts"
[[coap.resource]]
path = "fields/{device}"
format = "fields"
[[coap.resource]]
path = "senml/{device}"
format = "senml"
[[coap.resource]]
path = "senml"
format = "senml"
"""


def udp_free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def coap(*args, client=COAP_CLIENT):
    """Runs coap-client; returns its stdout + stderr (a response code other than 2.xx is
    printed there, e.g. "4.00 not_number")."""
    p = subprocess.run([client, "-B", "10", *map(str, args)], capture_output=True, timeout=60)
    return (p.stdout + p.stderr).decode(errors="replace")


def response_code(out):
    m = re.search(r"\b([45]\.\d\d)\b", out)
    return m.group(1) if m else "2.xx"


def coap_port(gw):
    """The UDP port gatewayd bound for `listen = "127.0.0.1:0"` (from its log)."""
    def find():
        m = re.search(r"coap: listening on 127\.0\.0\.1:(\d+) UDP", gw.text())
        return int(m.group(1)) if m else None
    return wait_until("gatewayd to listen for CoAP", find)


# A time-series sink that is always down: its cursor never moves, so the journal keeps every
# row (rows below every sink's cursor are pruned) and a test can read them back.
HOLD_ROWS = """
[timeseries]
url = "http://127.0.0.1:9/write"
retry_max = "1s"
"""


def decimal_value(v, c):
    """A reading's value from columns v, c (schema 7: c < 0 may mark v as m of m / 10^k)."""
    if v is None or c >= 0:
        return v
    k = (-1 - c) // 4 % 9
    return v if k == 0 else (v / 10 ** k if v != 0 else -0.0)


def journal_rows(wd):
    """(device, metric, value) of every committed reading, in sequence order (with HOLD_ROWS)."""
    db = sqlite3.connect(f"file:{wd.path / 'state' / 'journal.db'}?mode=ro", uri=True, timeout=5)
    try:
        # Rows are in segment tables r_0, r_1, ... (schema 5).
        tables = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                           "AND name GLOB 'r_[0-9]*'")]
        if not tables:
            return []
        rows = " UNION ALL ".join(f"SELECT seq, s, v, c FROM {t}" for t in tables)
        return [(device, metric, decimal_value(v, c)) for device, metric, v, c in db.execute(
            f"SELECT series.device, series.metric, r.v, r.c FROM ({rows}) AS r JOIN series "
            "ON r.s = series.id ORDER BY r.seq").fetchall()]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def kafka_values(records):
    return [json.loads(r["payload"]) for r in records]


def kafka_readings(kafka):
    """Every record of the readings topic now (one kcat run), as JSON values."""
    out = subprocess.run(["kcat", "-C", "-b", kafka.bootstrap, "-t", "iot.readings", "-o", "beginning",
                          "-e", "-q", "-J", "-X", "broker.address.family=v4"], capture_output=True, timeout=60)
    return kafka_values([json.loads(l) for l in out.stdout.decode().splitlines() if l.strip()])


def test_put_and_post_values_and_senml_arrive_in_kafka(wd):
    mq = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    gw = Gatewayd(wd, mq.uri, kafka=kafka, extra=RESOURCES)
    base = f"coap://127.0.0.1:{coap_port(gw)}"

    assert response_code(coap("-m", "put", "-e", "21.5", f"{base}/sensors/l1/pump-1/temp")) == "2.xx"
    assert response_code(coap("-N", "-m", "put", "-e", "22.5", f"{base}/sensors/l1/pump-1/temp")) == "2.xx"
    assert response_code(coap("-m", "post", "-e", "23.5", f"{base}/sensors/l2/pump-2/temp")) == "2.xx"
    ts = int(time.time() * 1000) - 3000
    assert response_code(coap("-m", "post", "-e", json.dumps({"value": 7.25, "ts": ts}),
                              f"{base}/json/meter-1/power")) == "2.xx"
    assert response_code(coap("-m", "put", "-e", '{"temp":19.5,"hum":40,"label":"x"}',
                              f"{base}/fields/room-1")) == "2.xx"
    senml = [{"bn": "plant1:", "bt": time.time() - 10, "n": "flow", "v": 3.5},
             {"n": "pressure", "v": 1.25, "t": 5}, {"n": "valve", "vb": True}, {"n": "label", "vs": "x"}]
    assert response_code(coap("-m", "post", "-t", "110", "-e", json.dumps(senml),
                              f"{base}/senml/pump-3")) == "2.xx"
    # Without {device} in the path, the base name is the device and n the metric.
    assert response_code(coap("-m", "post", "-e", json.dumps(
        [{"bn": "urn:dev:mac:0024befffe804ff1:", "n": "temp", "v": 23.1}]), f"{base}/senml")) == "2.xx"
    # Block-wise (RFC 7959): a 1.7 KB SenML pack in 64-byte blocks, reassembled by libcoap.
    big = [{"bn": "bulk/", "n": f"m{i}", "v": i} for i in range(60)]
    assert response_code(coap("-b", "64", "-m", "post", "-e", json.dumps(big), f"{base}/senml/pump-4")) == "2.xx"

    records = kafka.consume("iot.readings", 10 + 60)
    got = {(v["device"], v["metric"], tuple(sorted(v["tags"].items())), v["value"]) for v in kafka_values(records)}
    for want in [("pump-1", "temp", (("line", "l1"),), 21.5), ("pump-1", "temp", (("line", "l1"),), 22.5),
                 ("pump-2", "temp", (("line", "l2"),), 23.5), ("meter-1", "power", (), 7.25),
                 ("room-1", "temp", (), 19.5), ("room-1", "hum", (), 40),
                 ("pump-3", "plant1:flow", (), 3.5), ("pump-3", "plant1:pressure", (), 1.25),
                 ("pump-3", "plant1:valve", (), 1),
                 ("urn:dev:mac:0024befffe804ff1", "temp", (), 23.1),
                 ("pump-4", "bulk/m0", (), 0), ("pump-4", "bulk/m59", (), 59)]:
        assert want in got, f"{want} not in Kafka"
    assert len(records) == 70
    by_metric = {(v["device"], v["metric"]): v for v in kafka_values(records)}
    assert all(v["reference"] == "receive" for v in kafka_values(records))  # CoAP: receive time
    assert by_metric[("meter-1", "power")]["device_time"] is not None
    assert "device_time" not in by_metric[("pump-1", "temp")] or by_metric[("pump-1", "temp")]["device_time"] is None
    st = gw.wait_stats("the CoAP counters", lambda s: s["coap"]["requests"] == 8)
    assert st["bad"] == {} and st["coap"]["deferred"] == 0


def test_confirmable_answer_comes_after_the_journal_commit(wd):
    """With a 700 ms group commit, a CON PUT is answered only once its reading is committed:
    when coap-client returns, the row is already in the journal file."""
    mq = Mosquitto(wd)
    gw = Gatewayd(wd, mq.uri, extra=RESOURCES + HOLD_ROWS)
    # The fixture writes [buffer] itself (a second commit_interval would be a TOML error), so
    # the slow commit is set by rewriting the file and restarting.
    gw.proc.stop()
    gw.config.write_text(gw.config.read_text().replace('commit_interval = "20ms"', 'commit_interval = "700ms"'))
    gw.start()
    base = f"coap://127.0.0.1:{coap_port(gw)}"
    for i in range(3):
        before = len(journal_rows(wd))
        t0 = time.monotonic()
        assert response_code(coap("-m", "put", "-e", f"{30 + i}", f"{base}/sensors/l1/pump-9/temp")) == "2.xx"
        took = time.monotonic() - t0
        rows = journal_rows(wd)
        assert len(rows) == before + 1 and rows[-1] == ("pump-9", "temp", 30 + i), rows[-3:]
        print(f"CON PUT answered after {took * 1000:.0f} ms (commit interval 700 ms)")


def test_bad_payloads_get_4_00_unknown_paths_4_04_and_are_counted(wd):
    mq = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    gw = Gatewayd(wd, mq.uri, kafka=kafka, extra=RESOURCES)
    base = f"coap://127.0.0.1:{coap_port(gw)}"

    out = coap("-m", "put", "-e", "abc", f"{base}/sensors/l1/pump-1/temp")
    assert response_code(out) == "4.00" and "not_number" in out
    out = coap("-m", "put", "-e", "NaN", f"{base}/sensors/l1/pump-1/temp")
    assert response_code(out) == "4.00" and "not_finite" in out
    out = coap("-N", "-m", "post", "-e", "{not json", f"{base}/json/meter-1/power")
    assert response_code(out) == "4.00" and "not_json" in out
    out = coap("-m", "post", "-e", '{"n":"x","v":1}', f"{base}/senml/pump-3")
    assert response_code(out) == "4.00" and "not_senml" in out
    out = coap("-m", "post", "-e", '[{"n":"label","vs":"x"}]', f"{base}/senml/pump-3")
    assert response_code(out) == "4.00" and "no_fields" in out
    out = coap("-m", "put", "-e", "1", f"{base}/nowhere/pump-1/temp")
    assert response_code(out) == "4.04"
    out = coap("-m", "put", "-e", "1", f"{base}/sensors/l1/pump-1")  # one level short
    assert response_code(out) == "4.04"
    out = coap("-b", "32", "-m", "put", "-e", "1" + "0" * 99, f"{base}/sensors/l1/pump-1/temp")
    assert response_code(out) == "4.13"  # max_payload = 64 bytes
    # The good one after all that.
    assert response_code(coap("-m", "put", "-e", "42", f"{base}/sensors/l1/pump-1/temp")) == "2.xx"

    st = gw.wait_stats("bad input counted by reason", lambda s: s["coap"]["requests"] == 9)
    assert st["bad"] == {"not_number": 1, "not_finite": 1, "not_json": 1, "not_senml": 1,
                         "no_fields": 1, "no_template": 2, "too_large": 1}
    assert st["readings"] == 1
    records = kafka.consume("iot.readings", 1)
    assert [(v["device"], v["value"]) for v in kafka_values(records)] == [("pump-1", 42)]
    assert "bad input (not_number) on topic 'sensors/l1/pump-1/temp'" in gw.text()


def test_well_known_core_lists_the_templates(wd):
    mq = Mosquitto(wd)
    gw = Gatewayd(wd, mq.uri, extra=RESOURCES)
    base = f"coap://127.0.0.1:{coap_port(gw)}"
    out = coap("-m", "get", f"{base}/.well-known/core")
    assert '</sensors>;title="sensors/{line}/{device}/{metric}";rt="gw.reading";ct=0' in out
    assert '</senml>;title="senml/{device}";rt="gw.reading";ct=110' in out
    assert '</json>;title="json/{device}/{metric}";rt="gw.reading";ct=50' in out
    filtered = coap("-m", "get", f"{base}/.well-known/core?href=/json*")
    assert "json/{device}/{metric}" in filtered and "sensors" not in filtered


def wait_for_coap_server(proc, base, *args, client=COAP_CLIENT):
    """Waits until libcoap's coap-server at `base` answers GET / with its banner. Not "no 4.xx
    or 5.xx in the output": a coap-client that got no answer at all (the server has not bound
    its port yet, ICMP refused) prints no response code either."""
    wait_until(f"{proc.name} to answer", lambda: proc.alive() and "libcoap" in coap(
        *args, "-B", "1", "-m", "get", f"{base}/", client=client))


def start_coap_server(wd, port, name="coap-server"):
    proc = wd.track(Proc(name, [COAP_SERVER, "-A", "127.0.0.1", "-p", port, "-v", "4"], wd.path))
    wait_for_coap_server(proc, f"coap://127.0.0.1:{port}")
    return proc


def test_observed_resource_every_notification_and_a_server_restart(wd):
    """libcoap's own coap-server: /example_data is observable and a PUT changes it."""
    port = udp_free_port()
    server = start_coap_server(wd, port)
    uri = f"coap://127.0.0.1:{port}/example_data"
    coap("-m", "put", "-e", "1", uri)
    mq = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    gw = Gatewayd(wd, mq.uri, kafka=kafka, extra=f"""
[coap]
[[coap.observe]]
uri = "{uri}"
device = "boiler-7"
metric = "temperature"
reregister_after = "2s"
retry_min = "200ms"
retry_max = "1s"
""")
    wait_until("the observation", lambda: f"coap: observing {uri}" in gw.text())

    def boiler_values():  # from Kafka (the journal prunes what Kafka confirmed)
        return [v["value"] for v in kafka_readings(kafka)
                if (v["device"], v["metric"]) == ("boiler-7", "temperature")]

    changes = [10, 11, 12, 13, 14, 15, 16, 17]
    for v in changes:  # each change is one notification; the next change waits for it
        coap("-m", "put", "-e", str(v), uri)
        wait_until(f"notification {v} in Kafka", lambda: v in boiler_values(), timeout=15)
    # Every change arrived, in order (a silent re-registration may repeat the current value).
    seen = [v for v in boiler_values() if v in changes]
    dedup = [v for i, v in enumerate(seen) if i == 0 or seen[i - 1] != v]
    assert dedup == changes

    # The device restarts (forgets its observers, new process on the same port).
    server.stop()
    server = start_coap_server(wd, port, name="coap-server-2")
    coap("-m", "put", "-e", "20", uri)
    wait_until("re-registration after the restart", lambda: 20 in boiler_values(), timeout=20)
    coap("-m", "put", "-e", "21", uri)
    wait_until("notifications after the restart", lambda: 21 in boiler_values(), timeout=10)

    kv = boiler_values()
    assert all(v in kv for v in changes + [20, 21])
    st = gw.wait_stats("the observer counters", lambda s: s["coap"]["reregistrations"] >= 1)
    assert st["coap"]["observations"] == 1
    # gatewayctl status lists the CoAP source with its observation.
    ctl = subprocess.run([str(BUILD / "gateway" / "ctl" / "gatewayctl"), "--socket",
                          str(wd.path / "control.sock"), "status", "--json"],
                         capture_output=True, text=True, timeout=30)
    sources = {x["name"]: x for x in json.loads(ctl.stdout)["sources"]}
    assert sources["coap"]["observations"] == 1 and sources["coap"]["notifications"] >= 10
    assert sources["coap"]["target"] == "1 observed"


def start_gw_coap_server(wd, port, *resources, name="gw-coap-server"):
    args = [a for r in resources for a in ("--resource", r)]
    dev = wd.track(Proc(name, [GW_COAP_SERVER, "--port", port, "--value", "1", *args], wd.path))
    wait_until(f"{name} to listen", lambda: f"PORT={port}" in dev.text())
    return dev


def test_discovery_observes_every_resource_matching_the_filter(wd):
    port = udp_free_port()
    resources = ["sensors/t1;rt=temperature;ct=0", "sensors/t2;rt=temperature",
                 "sensors/t3;rt=temperature outdoor", "sensors/h1;rt=humidity", "status;rt=text"]
    dev = start_gw_coap_server(wd, port, *resources)
    mq = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    gw = Gatewayd(wd, mq.uri, kafka=kafka, extra=f"""
[coap]
[[coap.observe]]
discover = "coap://127.0.0.1:{port}"
filter = "rt=temperature"
template = "sensors/{{metric}}"
device = "boiler-8"
reregister_after = "2s"
rediscover = "1s"
""")
    wait_until("discovery", lambda: "coap: discovered 3 resource(s) to observe" in gw.text())
    for path in ("t1", "t2", "t3"):
        wait_until(f"observing {path}", lambda: f"/sensors/{path} (boiler-8 {path})" in gw.text())
    for path, v in (("t1", 21.5), ("t2", 22.5), ("t3", -3.0), ("h1", 55.0)):
        coap("-m", "put", "-e", str(v), f"coap://127.0.0.1:{port}/sensors/{path}")
    # 3 registrations (value 1) + 3 notifications; h1 and status are never observed.
    records = kafka.consume("iot.readings", 6)
    got = {(v["device"], v["metric"], v["value"]) for v in kafka_values(records)}
    assert {("boiler-8", "t1", 21.5), ("boiler-8", "t2", 22.5), ("boiler-8", "t3", -3.0)} <= got
    assert {m for _, m, _ in got} == {"t1", "t2", "t3"}
    st = gw.wait_stats("three observations", lambda s: s["coap"]["observing"] == 3)
    assert st["coap"]["observations"] == 3

    # The device restarts with one more temperature sensor: rediscovery adds it, and the
    # three known ones are observed again.
    dev.stop()
    start_gw_coap_server(wd, port, *resources, "sensors/t4;rt=temperature", name="gw-coap-server-2")
    wait_until("the new resource observed", lambda: "/sensors/t4 (boiler-8 t4)" in gw.text(), timeout=15)
    coap("-m", "put", "-e", "4.5", f"coap://127.0.0.1:{port}/sensors/t4")
    coap("-m", "put", "-e", "5.5", f"coap://127.0.0.1:{port}/sensors/t1")
    wait_until("readings after the restart", lambda: {("boiler-8", "t4", 4.5), ("boiler-8", "t1", 5.5)} <= {
        (v["device"], v["metric"], v["value"]) for v in kafka_readings(kafka)}, timeout=20)
    st = gw.wait_stats("four observations", lambda s: s["coap"]["observing"] == 4)
    assert st["coap"]["observations"] == 4


def test_dtls_psk_put(wd):
    (wd.path / "coap.psk").write_text("s3cret-psk\n")
    mq = Mosquitto(wd)
    gw = Gatewayd(wd, mq.uri, extra=RESOURCES.replace('listen = "127.0.0.1:0"\n', """listen = "127.0.0.1:0"
dtls_listen = "127.0.0.1:0"
psk_hint = "gw"
psk_key_file = "coap.psk"
""", 1) + HOLD_ROWS)
    m = wait_until("the DTLS endpoint", lambda: re.search(r"coap: listening on 127\.0\.0\.1:(\d+) DTLS", gw.text()))
    url = f"coaps://127.0.0.1:{m.group(1)}/sensors/l1/pump-5/temp"
    out = coap("-u", "device-5", "-k", "s3cret-psk", "-m", "put", "-e", "12.5", url, client=COAP_CLIENT_DTLS)
    assert response_code(out) == "2.xx", out
    wait_until("the DTLS reading", lambda: ("pump-5", "temp", 12.5) in journal_rows(wd))
    out = coap("-u", "device-5", "-k", "wrong-key", "-m", "put", "-e", "13.5", url, client=COAP_CLIENT_DTLS)
    assert ("pump-5", "temp", 13.5) not in journal_rows(wd)


def test_dtls_psk_observe(wd):
    """coaps:// observation of libcoap's coap-server with a pre-shared key (DTLS on port + 1)."""
    port = udp_free_port()
    uri = f"coaps://127.0.0.1:{port + 1}/example_data"
    key = ["-u", "device", "-k", "obs-psk"]
    server = wd.track(Proc("coap-server-dtls", ["coap-server-openssl", "-A", "127.0.0.1", "-p", port,
                                                "-k", "obs-psk", "-v", "4"], wd.path))
    wait_for_coap_server(server, f"coaps://127.0.0.1:{port + 1}", *key, client=COAP_CLIENT_DTLS)
    # The value gatewayd's first notification carries (the resource starts as 1500 bytes of
    # text, which is not a number); read back so that a lost PUT fails here, not later.
    coap(*key, "-m", "put", "-e", "7", uri, client=COAP_CLIENT_DTLS)
    assert coap(*key, "-m", "get", uri, client=COAP_CLIENT_DTLS).strip() == "7"
    (wd.path / "obs.psk").write_text("obs-psk\n")
    mq = Mosquitto(wd)
    gw = Gatewayd(wd, mq.uri, extra=f"""
[coap]
[[coap.observe]]
uri = "{uri}"
device = "boiler-9"
metric = "temperature"
psk_identity = "gw"
psk_key_file = "obs.psk"
""" + HOLD_ROWS)
    wait_until("the DTLS observation", lambda: f"coap: observing {uri}" in gw.text())
    coap(*key, "-m", "put", "-e", "8", uri, client=COAP_CLIENT_DTLS)
    wait_until("the notification over DTLS",
               lambda: [v for d, m, v in journal_rows(wd) if d == "boiler-9"] == [7, 8])


def test_check_config_refuses_a_bad_coap_section_with_exit_78(wd):
    cfg = wd.path / "gateway.toml"
    cfg.write_text('[mqtt]\nuri = "tcp://127.0.0.1:1883"\n[[mqtt.subscribe]]\ntopic = "a/+/+"\n'
                   'template = "a/{device}/{metric}"\n[coap]\n[[coap.resource]]\npath = "s/{metric}"\n')
    p = subprocess.run([str(GATEWAYD), "--check-config", str(cfg)], capture_output=True, timeout=30)
    assert p.returncode == 78
    assert p.stderr.decode().strip() == (
        f"{cfg}:8: coap.resource[0].path: must capture {{device}} (e.g. \"sensors/{{device}}/{{metric}}\"); "
        "only format senml can take the device from the payload's base name")


def test_a_coap_only_gateway_needs_no_mqtt_section(wd):
    """A site with only CoAP devices: no [mqtt] at all; readings reach the journal and Kafka."""
    kafka = KafkaBroker(wd)
    config = wd.path / "gateway.toml"
    config.write_text(f"""
[gateway]
id = "coap-only"
state_dir = "state"
control_socket = "control.sock"
stats_interval = "1s"
[kafka]
brokers = "{kafka.bootstrap}"
[kafka.properties]
"broker.address.family" = "v4"
""" + RESOURCES)
    proc = wd.track(Proc("gatewayd", [GATEWAYD, "--config", config], wd.path))

    class Log:  # what coap_port() reads
        def text(self):
            return proc.text()
    port = coap_port(Log())
    assert "mqtt:" not in proc.text()  # no MQTT client was started
    assert response_code(coap("-m", "put", "-e", "42.5", f"coap://127.0.0.1:{port}/sensors/l1/m-1/temp")) == "2.xx"
    wait_until("the reading in Kafka", lambda: any(v["value"] == 42.5 and v["device"] == "m-1"
                                                   for v in kafka_readings(kafka)), timeout=30)
    ctl = subprocess.run([str(BUILD / "gateway" / "ctl" / "gatewayctl"), "--socket",
                          str(wd.path / "control.sock"), "status", "--json"],
                         capture_output=True, text=True, timeout=30)
    st = json.loads(ctl.stdout)
    assert [x["name"] for x in st["sources"]] == ["coap"]
    assert ctl.returncode == 0, ctl.stdout
    # No gateway.stats_format here: the default short stats line, one line of readable length
    # (the fixtures' configs ask for the json form, which gwtest's stats() parses).
    line = wait_until("a short stats line with the reading", lambda: next(
        (l for l in proc.text().splitlines()
         if "stats: in " in l and "journal 1 rows" in l and "kafka up" in l), None), timeout=30)
    print(line)
    assert "bad 0" in line and len(line) <= 160, line
    assert "stats {" not in proc.text()

