"""Issue 14: safe reloads. `systemctl reload` runs the unit's ExecReload= lines: the config is
checked first, so a bad one fails the reload and the daemon is not signalled; a SIGHUP with a
config that parses but cannot start leaves the running pipeline untouched (no teardown, no MQTT
reconnect, counters kept). A good reload, for contrast, does rebuild the pipeline: the test can
see a teardown when there is one."""
import json
import shlex
import signal
import subprocess
import time
from pathlib import Path

from gwtest import BUILD, GATEWAYD, Gatewayd, KafkaBroker, Mosquitto, wait_until

from gwtest import GATEWAYCTL  # noqa: E402 (one definition, in gwtest)
UNIT = Path(__file__).resolve().parents[2] / "systemd" / "iot-gateway.service"


def status(gw):
    p = subprocess.run([str(GATEWAYCTL), "--socket", str(gw.wd.path / "control.sock"), "status", "--json"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout)


def wait_status(gw, what, pred, timeout=30.0):
    return wait_until(what, lambda: (lambda s: s if pred(s) else None)(status(gw)), timeout=timeout, interval=0.2)


def publish(mq, value):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mq.port), "-q", "1", "-V", "mqttv5",
                    "-t", "plant1/line1/pump-1/temp", "-m", json.dumps({"value": value, "ts": int(time.time() * 1000)})],
                   check=True, timeout=20)


def exec_reload(gw):
    """Runs the unit's ExecReload= lines as systemd does: in order, stopping at the first failure.
    Returns (exit code, stderr) of the last one run."""
    lines = [l.split("=", 1)[1] for l in UNIT.read_text().splitlines() if l.startswith("ExecReload=")]
    assert len(lines) >= 2, lines
    for line in lines:
        line = (line.replace("/usr/sbin/gatewayd", str(GATEWAYD))
                .replace("/etc/iot-gateway/gateway.toml", str(gw.config))
                .replace("$MAINPID", str(gw.proc.p.pid)))
        p = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            return p.returncode, p.stderr
    return 0, ""


def connects(gw):
    return gw.text().count("mqtt: connected")


def test_a_bad_reload_fails_and_changes_nothing(wd):
    mq = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    gw = Gatewayd(wd, mq.uri, kafka=kafka)
    good = gw.config.read_text()
    publish(mq, 1.0)
    st = wait_status(gw, "1 reading sent to kafka", lambda s: s["readings"] == 1 and s["sinks"][0]["sent"] >= 1)
    sent = st["sinks"][0]["sent"]
    n = connects(gw)

    # 1. systemctl reload with a config the parser refuses: the check fails, no signal is sent.
    gw.config.write_text(good.replace("[buffer]\n", '[buffer]\ncomit_interval = "20ms"\n', 1))
    code, err = exec_reload(gw)
    assert code == 78, (code, err)
    assert "buffer.comit_interval: unknown key" in err
    st = status(gw)
    assert st["daemon"]["reloads"] == 0 and st["daemon"]["reload_failures"] == 0  # not signalled
    assert "SIGHUP" not in gw.text()

    # 2. A state_dir that cannot be created: --check-config refuses it too (start-up would).
    blocker = wd.path / "not-a-dir"
    blocker.write_text("x")
    unstartable = good.replace('state_dir = "state"', f'state_dir = "{blocker}/state"')
    assert unstartable != good
    gw.config.write_text(unstartable)
    code, err = exec_reload(gw)
    assert code == 78 and "gateway.state_dir" in err, (code, err)

    # 3. The same config sent with a bare SIGHUP (no ExecReload check): the daemon refuses it
    # before tearing anything down.
    gw.proc.p.send_signal(signal.SIGHUP)
    st = wait_status(gw, "the failed reload", lambda s: s["daemon"]["reload_failures"] == 1)
    assert st["daemon"]["last_reload"]["ok"] is False
    assert st["daemon"]["reloads"] == 0
    assert st["readings"] == 1, "counters were reset: the pipeline was rebuilt"
    assert st["sinks"][0]["sent"] == sent
    assert connects(gw) == n, "MQTT reconnected: the pipeline was torn down"
    assert "gateway.state_dir" in st["daemon"]["last_reload"]["error"], st["daemon"]["last_reload"]
    assert "reload: cannot start with the new config" not in gw.text()
    publish(mq, 2.0)
    wait_status(gw, "2 readings on the old pipeline", lambda s: s["readings"] == 2)
    assert connects(gw) == n

    # For contrast, a good reload rebuilds the pipeline, and the test sees it.
    gw.config.write_text(good.replace('stats_interval = "1s"', 'stats_interval = "2s"'))
    code, err = exec_reload(gw)
    assert code == 0, err
    wait_status(gw, "the good reload", lambda s: s["daemon"]["reloads"] == 1)
    wait_until("MQTT reconnected by the new pipeline", lambda: connects(gw) == n + 1)
    assert gw.proc.alive()
