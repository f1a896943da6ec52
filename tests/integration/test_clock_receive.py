"""Issue 3, item 2: the same scenario without the plugin: receive time as reference."""
from clock_scenario import check, check_sensors, run
from gwtest import Mosquitto


def test_wrong_device_clocks_are_corrected_with_receive_time(wd):
    mq = Mosquitto(wd)
    report, refs, gw = run(wd, mq, "broker")  # no stamp on the messages: falls back to receive
    assert set(refs) == {"receive"}, refs
    check(report, "receive-time reference (no plugin)")
    check_sensors(gw, "receive")
