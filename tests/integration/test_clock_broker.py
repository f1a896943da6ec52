"""Issue 3, item 1: Mosquitto with the project's timestamp plugin; broker stamps as reference."""
from clock_scenario import check, check_sensors, run
from gwtest import Mosquitto, PLUGIN


def test_wrong_device_clocks_are_corrected_with_broker_stamps(wd):
    mq = Mosquitto(wd, plugin=PLUGIN)
    report, refs, gw = run(wd, mq, "broker")
    assert set(refs) == {"broker"}, refs
    check(report, "broker reference (timestamp plugin)")
    check_sensors(gw, "broker")
