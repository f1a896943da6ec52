"""Bad config: `file:line: key: reason` and exit 78, for --check-config and for a real start."""
import subprocess

from gwtest import GATEWAYD


def run(*args):
    p = subprocess.run([str(GATEWAYD), *map(str, args)], capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_check_config_reports_file_line_key_reason(wd):
    cfg = wd.path / "gateway.toml"
    cfg.write_text('[mqtt]\nuri = "tcp://127.0.0.1:1883"\n[[mqtt.subscribe]]\ntopic = "a/+/+"\n'
                   'template = "a/{device}/{metric}"\nqos = 1\ntimestamp_unti = "ms"\n')
    rc, out, err = run("--check-config", cfg)
    assert rc == 78
    assert err.strip() == f"{cfg}:7: mqtt.subscribe[0].timestamp_unti: unknown key"
    rc, out, err = run("--config", cfg)
    assert rc == 78
    assert f"{cfg}:7: mqtt.subscribe[0].timestamp_unti: unknown key" in err


def test_good_config_checks_ok(wd):
    cfg = wd.path / "gateway.toml"
    cfg.write_text('[mqtt]\nuri = "tcp://127.0.0.1:1883"\n[[mqtt.subscribe]]\ntopic = "a/+/+"\n'
                   'template = "a/{device}/{metric}"\n')
    rc, out, err = run("--check-config", cfg)
    assert (rc, out.strip()) == (0, f"{cfg}: ok")


def test_missing_file_is_a_config_error(wd):
    rc, out, err = run("--check-config", wd.path / "nope.toml")
    assert rc == 78 and "nope.toml:0: (file):" in err


def test_usage_errors_exit_64():
    """EX_USAGE for an unknown option, as gatewayctl (CLI11's own code was 109)."""
    rc, out, err = run("--bogus")
    assert rc == 64 and "--bogus" in err, (rc, err)
    rc, out, err = run("--help")
    assert rc == 0 and "--check-config" in out
