"""Issue 14: command-line conventions. Usage errors exit 64 (EX_USAGE) in gatewayctl as in
gatewayd; `gatewayctl help [COMMAND]`, per-command --help with examples, a clear error for an
unknown command, -V; `config check` defaults to the packaged config path."""
import subprocess

from gwtest import BUILD

from gwtest import GATEWAYCTL  # noqa: E402 (one definition, in gwtest)
COMMANDS = ["status", "sensors", "buffer", "sinks", "alerts"]


def ctl(*args):
    return subprocess.run([str(GATEWAYCTL), *args], capture_output=True, text=True, timeout=30)


def test_unknown_command_and_no_command_are_usage_errors():
    p = ctl("bogus")
    assert p.returncode == 64
    assert "unknown command 'bogus'" in p.stderr and "gatewayctl help" in p.stderr, p.stderr
    assert "A subcommand is required" not in p.stderr
    p = ctl("--socket", "/nonexistent", "bogus")
    assert p.returncode == 64 and "unknown command 'bogus'" in p.stderr
    p = ctl("config", "bogus")
    assert p.returncode == 64 and "unknown command 'bogus'" in p.stderr
    p = ctl()
    assert p.returncode == 64 and "Usage: gatewayctl" in p.stderr
    p = ctl("status", "--no-such-option")
    assert p.returncode == 64


def test_help_and_version():
    p = ctl("help")
    assert p.returncode == 0 and "Usage: gatewayctl [OPTIONS]" in p.stdout
    for cmd in COMMANDS:
        for p in (ctl("help", cmd), ctl(cmd, "--help")):
            assert p.returncode == 0, p.stderr
            assert "Examples:" in p.stdout and f"gatewayctl {cmd}" in p.stdout, p.stdout
    p = ctl("help", "config", "check")
    assert p.returncode == 0 and "Usage: gatewayctl config check" in p.stdout
    assert "/etc/iot-gateway/gateway.toml" in p.stdout
    p = ctl("help", "nope")
    assert p.returncode == 64 and "unknown command 'nope'" in p.stderr
    for flag in ("-V", "--version"):
        p = ctl(flag)
        assert p.returncode == 0 and p.stdout.startswith("gatewayctl "), p


def test_config_check_defaults_to_the_packaged_config(wd):
    p = ctl("config", "check")
    # Whatever this machine has there, the default path is the one checked.
    assert "/etc/iot-gateway/gateway.toml" in p.stdout + p.stderr
    assert p.returncode in (0, 78)
    cfg = wd.path / "gateway.toml"
    cfg.write_text('[mqtt]\nuri = "tcp://127.0.0.1:1883"\n[[mqtt.subscribe]]\ntopic = "a/+/+"\n'
                   'template = "a/{device}/{metric}"\n')
    p = ctl("config", "check", str(cfg))
    assert p.returncode == 0 and f"{cfg}: ok" in p.stdout
