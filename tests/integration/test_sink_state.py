"""Issue 14: a sink's state comes from its connectivity, not from its last batch. Kafka and the
time-series store pointed at dead ports are DOWN within 10 s with the cause shown (also with
nothing to send), and up within 10 s of coming back."""
import json
import subprocess
import time

from gwtest import BUILD, Gatewayd, KafkaBroker, Mosquitto, VictoriaMetrics, free_port, wait_until

from gwtest import GATEWAYCTL  # noqa: E402 (one definition, in gwtest)
LIMIT = 10.0  # seconds: the bound for DOWN after a loss and up after a return


def ctl(wd, *args):
    return subprocess.run([str(GATEWAYCTL), "--socket", str(wd.path / "control.sock"), *args],
                          capture_output=True, text=True, timeout=30)


def sink(wd, name):
    p = ctl(wd, "sinks", "--json")
    assert p.returncode in (0, 1), p.stderr
    for s in json.loads(p.stdout)["sinks"]:
        if s["name"] == name:
            return s
    raise AssertionError(f"no sink {name} in {p.stdout}")


def wait_state(wd, name, state, since, limit=LIMIT):
    """Waits for the sink's state; returns (sink json, seconds since `since`)."""
    got = wait_until(f"{name} {state}", lambda: (lambda s: s if s["state"] == state else None)(sink(wd, name)),
                     timeout=limit + 5, interval=0.2)
    took = time.monotonic() - since
    assert took <= limit, f"{name} took {took:.1f} s to turn {state}"
    return got, took


def test_kafka_at_a_dead_port_is_down_with_the_cause(wd):
    mq = Mosquitto(wd)
    dead = free_port()
    t0 = time.monotonic()
    Gatewayd(wd, mq.uri, extra=f"""
[kafka]
brokers = "127.0.0.1:{dead}"
delivery_timeout = "60s"
[kafka.properties]
"broker.address.family" = "v4"
""")
    s, took = wait_state(wd, "kafka", "down", t0)
    assert "Connection refused" in s["last_error"], s
    assert s["up"] is False
    st = ctl(wd, "status")
    assert st.returncode == 1, st.stdout
    assert "DOWN: kafka" in st.stdout
    assert "all sources and sinks up" not in st.stdout
    print(f"kafka at a dead port: DOWN after {took:.1f} s: {s['last_error']}")


def test_kafka_lost_and_back_with_nothing_to_send(wd):
    mq = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    t0 = time.monotonic()
    gw = Gatewayd(wd, mq.uri, kafka=kafka)
    _, took_up = wait_state(wd, "kafka", "up", t0)
    assert sink(wd, "kafka")["sent"] == 0  # nothing was sent: the state is the connection's

    t1 = time.monotonic()
    kafka.down()
    s, took_down = wait_state(wd, "kafka", "down", t1)
    assert s["last_error"], s
    assert "timed out" not in s["last_error"], s  # the cause, not librdkafka's timeout

    t2 = time.monotonic()
    kafka.up()
    _, took_back = wait_state(wd, "kafka", "up", t2)
    assert ctl(wd, "status").returncode == 0
    assert gw.proc.alive()
    print(f"kafka: up after {took_up:.1f} s, DOWN {took_down:.1f} s after the loss "
          f"({s['last_error']}), up {took_back:.1f} s after the return")


def test_timeseries_at_a_dead_port_is_down_then_up_when_it_comes(wd):
    mq = Mosquitto(wd)
    port = free_port()
    t0 = time.monotonic()
    Gatewayd(wd, mq.uri, extra=f"""
[timeseries]
url = "http://127.0.0.1:{port}/write"
""")
    s, took_down = wait_state(wd, "timeseries", "down", t0)
    assert "Connection refused" in s["last_error"], s
    assert "DOWN: timeseries" in ctl(wd, "status").stdout

    t1 = time.monotonic()
    vm = VictoriaMetrics(wd, port=port)
    _, took_up = wait_state(wd, "timeseries", "up", t1)

    t2 = time.monotonic()
    vm.stop()
    s, took_lost = wait_state(wd, "timeseries", "down", t2)
    assert "Connection refused" in s["last_error"], s
    print(f"timeseries: DOWN after {took_down:.1f} s, up {took_up:.1f} s after it came, "
          f"DOWN {took_lost:.1f} s after it stopped")
