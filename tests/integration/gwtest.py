"""Fixtures for integration tests: real servers on ephemeral loopback ports, each test its own.

Every server is a real process (Mosquitto, the Kafka test broker on librdkafka's mock
cluster, VictoriaMetrics, gatewayd); readiness is polled with a deadline; logs are kept in
the test's folder and printed when a test fails.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

BUILD = Path(os.environ.get("GW_BUILD_DIR", Path(__file__).resolve().parents[2] / "build" / "release")).resolve()
GATEWAYD = BUILD / "gateway" / "gatewayd"
GATEWAYCTL = BUILD / "gateway" / "ctl" / "gatewayctl"
KAFKA_BROKER = BUILD / "tests" / "tools" / "kafka_broker" / "kafka_broker"
GW_SIM = BUILD / "tests" / "tools" / "simulator" / "gw-sim"
BARE_SUB = BUILD / "tests" / "tools" / "simulator" / "gw-bare-sub"
PLUGIN = BUILD / "protocols" / "mqtt" / "iot_gateway_timestamp.so"
POWERCUT = BUILD / "tests" / "tools" / "powercut" / "libpowercut.so"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, fn, timeout=20.0, interval=0.05):
    """Polls fn() until it returns a truthy value; fails with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Proc:
    """A child process whose output goes to a log file in the test folder."""

    def __init__(self, name, argv, workdir, stdin=None, env=None, own_group=False):
        """own_group: the child in a process group of its own (see Gatewayd's own_group)."""
        self.name = name
        self.log_path = Path(workdir) / f"{name}.log"
        self.log = open(self.log_path, "ab")
        self.p = subprocess.Popen([str(a) for a in argv], stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=stdin, cwd=workdir, env=env, process_group=0 if own_group else None)

    def alive(self):
        return self.p.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            self.p.send_signal(sig)
        try:
            self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()

    def stop(self):
        self.kill(signal.SIGTERM)
        self.log.close()

    def text(self):
        return self.log_path.read_text(errors="replace")


class Workdir:
    """A temporary folder per test, removed unless the test failed (then logs are printed)."""

    def __init__(self, name):
        self.path = Path(tempfile.mkdtemp(prefix=f"gw-{name}-"))
        self.procs = []

    def track(self, proc):
        self.procs.append(proc)
        return proc

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(failed=exc_type is not None)

    def close(self, failed):
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception:
                pass
        if failed:
            for p in self.procs:
                print(f"\n===== {p.name} log ({p.log_path}) =====")
                print(p.text()[-8000:])
        else:
            shutil.rmtree(self.path, ignore_errors=True)


class Mosquitto:
    def __init__(self, wd, port=None, persistence=True, plugin=None, plugin_opts=None):
        """plugin: path of a broker plugin to load (e.g. the build's iot_gateway_timestamp.so);
        plugin_opts: its options, {"format": "rfc3339"} becomes `plugin_opt_format rfc3339`."""
        self.wd = wd
        self.port = port or free_port()
        self.dir = wd.path / "mosquitto"
        self.dir.mkdir(exist_ok=True)
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            f"persistence {'true' if persistence else 'false'}\n"
            f"persistence_location {self.dir}/\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 0\n"
            "message_size_limit 0\n"
            "log_dest stdout\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            + (f"plugin {plugin}\n" if plugin else "")
            + "".join(f"plugin_opt_{k} {v}\n" for k, v in (plugin_opts or {}).items()))
        self.conf = conf
        self.start()

    def start(self):
        self.proc = self.wd.track(Proc("mosquitto", ["mosquitto", "-c", self.conf], self.wd.path))
        wait_until("mosquitto to listen", lambda: port_open(self.port))

    @property
    def uri(self):
        return f"tcp://127.0.0.1:{self.port}"


class KafkaBroker:
    def __init__(self, wd, topics=("iot.readings",)):
        self.proc = wd.track(Proc("kafka", [KAFKA_BROKER, "--topics", ",".join(topics)], wd.path,
                                  stdin=subprocess.PIPE))
        self.bootstrap = wait_until("kafka_broker to print BOOTSTRAP", self._bootstrap)

    def _bootstrap(self):
        for line in self.proc.text().splitlines():
            if line.startswith("BOOTSTRAP="):
                return line.split("=", 1)[1].strip()
        return None

    def command(self, cmd):
        n = self.proc.text().count(f"OK {cmd}")
        self.proc.p.stdin.write(f"{cmd}\n".encode())
        self.proc.p.stdin.flush()
        wait_until(f"kafka_broker to answer {cmd}", lambda: self.proc.text().count(f"OK {cmd}") > n)

    def down(self):
        self.command("down")

    def up(self):
        self.command("up")

    def consume(self, topic, expected, timeout=60.0):
        """Reads the whole topic with kcat (the independent consumer) until `expected` records."""
        records = []

        def read():
            nonlocal records
            out = subprocess.run(
                ["kcat", "-C", "-b", self.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-J",
                 "-X", "broker.address.family=v4"],
                capture_output=True, timeout=60)
            records = [json.loads(l) for l in out.stdout.decode().splitlines() if l.strip()]
            return len(records) >= expected

        wait_until(f"{expected} records in Kafka topic {topic}", read, timeout=timeout, interval=0.5)
        return records


class VictoriaMetrics:
    def __init__(self, wd, port=None):
        self.wd = wd
        self.port = port or free_port()
        self.data = wd.path / "vm-data"
        self.start()

    def start(self):
        self.proc = self.wd.track(Proc("victoria-metrics", [
            "victoria-metrics", f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.data}", "-influxSkipSingleField", "-retentionPeriod=100y",
            "-search.disableCache", "-loggerLevel=ERROR"], self.wd.path))
        wait_until("victoria-metrics /health", self._healthy)

    def stop(self):
        self.proc.stop()

    def _healthy(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    @property
    def write_url(self):
        return f"http://127.0.0.1:{self.port}/write"

    def export(self, match='{__name__=~".+"}'):
        """All raw samples: [{"metric": {labels}, "values": [...], "timestamps": [ms...]}]."""
        urllib.request.urlopen(f"http://127.0.0.1:{self.port}/internal/force_flush", timeout=10).read()
        q = urllib.parse.urlencode({"match[]": match, "start": "0"})
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/export?{q}", timeout=30) as r:
            return [json.loads(l) for l in r.read().decode().splitlines() if l.strip()]

    # Readings only: aggregates are `<metric>_<window>_<stat>` (temperature_10s_p95).
    READINGS = '{__name__=~".+",__name__!~".+_[0-9.]+[smh]_[a-z0-9]+"}'
    ALL = '{__name__=~".+"}'

    def samples(self, match=READINGS):
        """Flattened (labels-dict, value, ts_ms) tuples."""
        out = []
        for series in self.export(match):
            for v, t in zip(series["values"], series["timestamps"]):
                out.append((series["metric"], v, t))
        return out

    def wait_samples(self, expected, timeout=60.0, match=READINGS):
        got = []

        def enough():
            nonlocal got
            got = self.samples(match)
            return len(got) >= expected

        wait_until(f"{expected} samples in VictoriaMetrics", enough, timeout=timeout, interval=0.5)
        return got


DEFAULT_SUBSCRIBE = """
[[mqtt.subscribe]]
topic = "plant1/+/+/+"
qos = 1
template = "plant1/{line}/{device}/{metric}"
format = "json"
timestamp = "ts"
timestamp_unit = "ms"
"""


class Gatewayd:
    def __init__(self, wd, mqtt_uri, kafka=None, vm=None, extra="", subscribe=DEFAULT_SUBSCRIBE,
                 client_id=None, env=None, buffer="", commit_interval="20ms", own_group=False,
                 session_expiry="1h", stats_format="json"):
        """env: extra environment variables (e.g. LD_PRELOAD); buffer: more [buffer] keys;
        commit_interval: None leaves buffer.commit_interval at gatewayd's default;
        stats_format: None leaves the key out (builds before it, c59da00^ and older, log JSON
        stats and do not know it); session_expiry: mqtt.session_expiry ("0s": a clean session,
        no messages kept for it once it stops); own_group:
        gatewayd in a process group of its own, for a caller that stops it (SIGSTOP): in the
        caller's group it would get the kernel's SIGHUP + SIGCONT when that group is orphaned
        while it is stopped (e.g. the shell that started the caller in the background exits)."""
        self.wd = wd
        self.own_group = own_group
        self.env = {**os.environ, **env} if env else None
        self.config = wd.path / "gateway.toml"
        text = f"""
[gateway]
id = "test-gw"
state_dir = "state"
control_socket = "control.sock"
stats_interval = "1s"
{f'stats_format = "{stats_format}"  # stats() parses the `stats {{json}}` line' if stats_format else ""}

[mqtt]
uri = "{mqtt_uri}"
client_id = "{client_id or 'gw-' + wd.path.name}"
session_expiry = "{session_expiry}"
reconnect_max = "1s"
{subscribe}
[buffer]
{f'commit_interval = "{commit_interval}"' if commit_interval else ""}
{buffer}
"""
        if kafka:
            text += f"""
[kafka]
brokers = "{kafka.bootstrap}"
readings_topic = "iot.readings"
delivery_timeout = "5s"
retry_max = "1s"
[kafka.properties]
"broker.address.family" = "v4"
"""
        if vm:
            text += f"""
[timeseries]
url = "{vm.write_url}"
retry_max = "1s"
timeout = "5s"
"""
        self.config.write_text(text + extra)
        self.proc = None
        self.start()

    def start(self):
        log = self.wd.path / "gatewayd.log"
        self.offset = log.stat().st_size if log.exists() else 0  # this run's part of the log
        self.proc = self.wd.track(Proc("gatewayd", [GATEWAYD, "--config", self.config], self.wd.path,
                                       env=self.env, own_group=self.own_group))
        wait_until("gatewayd to connect to MQTT",
                   lambda: "mqtt: connected" in self.text() or not self.proc.alive())
        assert self.proc.alive(), "gatewayd exited:\n" + self.proc.text()

    def kill(self):
        self.proc.kill(signal.SIGKILL)

    def text(self):
        return self.proc.text()[self.offset:]

    def stats(self):
        """The last `stats {json}` line gatewayd logged (it logs one a second in tests)."""
        for line in reversed(self.text().splitlines()):
            i = line.find("stats {")
            if i >= 0:
                try:
                    return json.loads(line[i + 6:])
                except ValueError:
                    continue
        return None

    def wait_stats(self, what, pred, timeout=30.0):
        return wait_until(what, lambda: (lambda s: s if s and pred(s) else None)(self.stats()),
                          timeout=timeout, interval=0.2)


def run_sim(wd, uri, *args, name="sim", timeout=300):
    """Runs gw-sim to completion; returns (summary dict, list of sent records)."""
    out = wd.path / f"{name}.jsonl"
    argv = [GW_SIM, "--uri", uri, "--out", out, *args]
    p = subprocess.run([str(a) for a in argv], capture_output=True, timeout=timeout)
    (wd.path / f"{name}.log").write_bytes(p.stdout + p.stderr)
    assert p.returncode == 0, f"gw-sim failed ({p.returncode}):\n{p.stdout.decode()}\n{p.stderr.decode()}"
    summary = {}
    for line in p.stdout.decode().splitlines():
        if line.startswith("sent="):
            summary = dict(kv.split("=", 1) for kv in line.split())
    sent = [json.loads(l) for l in out.read_text().splitlines() if l.strip()]
    return summary, sent


def start_sim(wd, uri, *args, name="sim"):
    """Starts gw-sim in the background; returns (Proc, path of its --out file)."""
    out = wd.path / f"{name}.jsonl"
    proc = wd.track(Proc(name, [GW_SIM, "--uri", uri, "--out", out, *args], wd.path))
    return proc, out
