"""Issue 14: `gatewayctl top` on a live gatewayd: one frame with --once (rates, sources, sinks,
backlog, alerts, at 80 columns); without it, frames refreshed in place until stopped."""
import json
import subprocess
import time

from gwtest import BUILD, Gatewayd, KafkaBroker, Mosquitto, wait_until

from gwtest import GATEWAYCTL  # noqa: E402 (one definition, in gwtest)


def test_top_once_and_live(wd):
    mq = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    Gatewayd(wd, mq.uri, kafka=kafka)
    sock = str(wd.path / "control.sock")
    for i in range(5):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mq.port), "-q", "1",
                        "-t", "plant1/line1/pump-1/temp", "-m", json.dumps({"value": 20 + i})],
                       check=True, timeout=20)

    def frame():
        p = subprocess.run([str(GATEWAYCTL), "--socket", sock, "top", "--once"], capture_output=True,
                           text=True, timeout=30)
        return p if p.returncode == 0 and "kafka" in p.stdout and " up " in p.stdout else None

    p = wait_until("a frame with kafka up", frame)
    print(p.stdout)
    lines = p.stdout.splitlines()
    assert lines[0].startswith("gatewayctl top ") and lines[0].endswith("UTC  (Ctrl-C to quit)")
    assert any(l.startswith("readings  in ") for l in lines), p.stdout
    assert any(l.startswith("journal   ") and "backlog" in l for l in lines), p.stdout
    assert any(l.startswith("mqtt ") and " up " in l for l in lines), p.stdout
    assert "alerts    0 firing, 0 pending, 0 undelivered" in lines
    assert "\033" not in p.stdout  # no colour and no screen control when not on a terminal
    for line in lines:
        assert len(line) <= 80, line

    # Live: frames refreshed in place (cursor home, clear) until stopped.
    live = subprocess.Popen([str(GATEWAYCTL), "--socket", sock, "top", "-i", "0.3"],
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(2)  # a span of time to count frames in, not a wait for a condition
    finally:
        live.terminate()
        out, _ = live.communicate(timeout=10)
    assert out.count("\033[H\033[2J") >= 3, out
    assert out.count("gatewayctl top ") == out.count("\033[H\033[2J")
