"""Issue 2, items 1 and 4: every reading arrives in Kafka and VictoriaMetrics, intact."""
import collections
import json

from gwtest import DEFAULT_SUBSCRIBE, PLUGIN, Gatewayd, KafkaBroker, Mosquitto, VictoriaMetrics, run_sim, wait_until

ODD = "pump 7,a=b"


def kafka_key(r):
    v = json.loads(r["payload"])
    return (v["device"], v["metric"], v["tags"].get("line"), v["value"], v["device_time"])


def sent_key(s):
    from datetime import datetime, timezone
    t = datetime.fromtimestamp(s["ts"] / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return (s["device"], s["metric"], s["line"], s["value"], t)


def event_ms(iso):
    from datetime import datetime
    return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000 + 0.5)


def test_10000_readings_from_50_devices_arrive_in_both_sinks(wd):
    mq = Mosquitto(wd, plugin=PLUGIN)  # broker stamps, as the design deploys it
    kafka = KafkaBroker(wd)
    vm = VictoriaMetrics(wd)
    gw = Gatewayd(wd, mq.uri, kafka=kafka, vm=vm)

    summary, sent = run_sim(wd, mq.uri, "--devices", "50", "--count", "10000", "--rate", "2000",
                            "--qos", "1", "--seed", "7")
    assert int(summary["acked"]) == 10000
    assert len(sent) == 10000
    assert len({s["device"] for s in sent}) == 50

    # Kafka: every reading, with device key, event-time timestamp and the design's JSON.
    records = kafka.consume("iot.readings", 10000)
    got = collections.Counter(kafka_key(r) for r in records)
    want = collections.Counter(sent_key(s) for s in sent)
    assert set(got) == set(want), f"missing {len(set(want) - set(got))}, unexpected {len(set(got) - set(want))}"
    dups = sum(got.values()) - len(got)
    print(f"kafka: {len(records)} records, {dups} duplicates")
    r0 = records[0]
    v0 = json.loads(r0["payload"])
    assert r0["key"] == v0["device"]
    assert set(v0) == {"device", "metric", "tags", "value", "time", "device_time", "reference", "offset_ms", "seq"}
    assert v0["time"] == v0["device_time"] and v0["offset_ms"] == 0
    for r in records:
        v = json.loads(r["payload"])
        from datetime import datetime
        ts_ms = int(datetime.strptime(v["time"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000 + 0.5)
        assert r["ts"] == ts_ms, "Kafka timestamp must be the event time"

    # VictoriaMetrics: every sample with labels, value and time (ms): the event time of the same
    # reading in Kafka (both sinks forward the same journal rows). That it equals the device time
    # is asserted above for the first record; a sample that reached the broker late under load may
    # be corrected by the clock stage, which the clock tests cover.
    samples = vm.wait_samples(10000)
    got_vm = collections.Counter((m["device"], m["__name__"], m["line"], v, t) for m, v, t in samples)
    want_vm = set()
    for r in records:
        v = json.loads(r["payload"])
        want_vm.add((v["device"], v["metric"], v["tags"].get("line"), v["value"], event_ms(v["time"])))
    assert len(want_vm) == 10000
    assert set(got_vm) == want_vm

    st = gw.wait_stats("the journal to be fully forwarded",
                       lambda s: all(x["backlog"] == 0 for x in s["sinks"].values()))
    assert st["readings"] >= 10000 and st["bad"] == {}

    # Issue 13: the threads beside the event loop (the journal's, the sinks' workers, librdkafka's)
    # are SCHED_BATCH, so that waking them never preempts the loop; the loop itself is not.
    threads = thread_policies(gw.proc.p.pid)
    print("threads:", sorted(threads.items()))
    assert threads.pop(gw.proc.p.pid)[1] == SCHED_OTHER
    workers = {n: p for n, p in threads.values() if n.startswith(("gw-", "rdk:"))}
    assert {"gw-wal-sync", "gw-checkpoint", "gw-fwd-kafka", "rdk:main"} <= set(workers)
    assert any(n.startswith("rdk:broker") for n in workers)
    assert all(p == SCHED_BATCH for p in workers.values()), workers


SCHED_OTHER, SCHED_BATCH = 0, 3


def thread_policies(pid):
    """tid -> (name, scheduling policy) of every thread of a process (/proc/PID/task/*/stat)."""
    import os
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            stat = f.read()
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state) on
        out[int(tid)] = (name, int(fields[41 - 3]))
    return out


def test_bad_input_is_counted_and_odd_device_names_arrive_intact(wd):
    mq = Mosquitto(wd, plugin=PLUGIN)  # broker stamps, as the design deploys it
    kafka = KafkaBroker(wd)
    vm = VictoriaMetrics(wd)
    # A broad filter with a narrow template: topics outside the template are counted, not lost.
    gw = Gatewayd(wd, mq.uri, kafka=kafka, vm=vm,
                  subscribe=DEFAULT_SUBSCRIBE.replace('topic = "plant1/+/+/+"', 'topic = "plant1/#"'))

    summary, sent = run_sim(wd, mq.uri, "--devices", "3", "--count", "60", "--rate", "500", "--qos", "1",
                            "--odd-device", ODD, "--bad-input", "--seed", "3")
    good = [s for s in sent if "bad" not in s]
    bad = [s for s in sent if "bad" in s]
    assert {b["bad"] for b in bad} >= {"not_json", "not_number", "nan", "too_large", "unknown_topic"}
    assert any(s["device"] == ODD for s in good)

    st = gw.wait_stats("bad input to be counted by reason",
                       lambda s: sum(s["bad"].values()) >= len(bad), timeout=30)
    for reason in ("not_json", "not_number", "too_large", "no_template"):
        assert st["bad"].get(reason, 0) >= 1, (reason, st["bad"])
    assert st["bad"].get("not_finite", 0) + st["bad"].get("not_json", 0) >= 2
    assert gw.proc.alive()

    records = kafka.consume("iot.readings", len(good))
    odd_kafka = [json.loads(r["payload"]) for r in records if r["key"] == ODD]
    assert odd_kafka and all(v["device"] == ODD for v in odd_kafka)
    assert len(odd_kafka) == sum(1 for s in good if s["device"] == ODD)

    samples = vm.wait_samples(len(good))
    odd_vm = [(m, v) for m, v, t in samples if m.get("device") == ODD]
    assert len(odd_vm) == len(odd_kafka)
    assert all(set(m) == {"__name__", "device", "line"} for m, v in odd_vm), "device name injected a tag"


def test_senml_over_mqtt(wd):
    """The payload decoders are shared by every source: a SenML pack published over MQTT names
    its own device (base name) and metrics, as it does over CoAP."""
    import subprocess
    mq = Mosquitto(wd)
    kafka = KafkaBroker(wd)
    gw = Gatewayd(wd, mq.uri, kafka=kafka, subscribe='''
[[mqtt.subscribe]]
topic = "senml/#"
template = "senml/#"
format = "senml"
''')
    pack = json.dumps([{"bn": "boiler-9:", "bt": 1796000000, "n": "temp", "v": 71.5},
                       {"n": "pressure", "v": 2.25, "t": 1}])
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mq.port), "-q", "1",
                    "-t", "senml/site1", "-m", pack], check=True, timeout=10)
    records = kafka.consume("iot.readings", 2)
    got = sorted((v["device"], v["metric"], v["value"], v["device_time"])
                 for v in (json.loads(r["payload"]) for r in records))
    assert got == [("boiler-9", "pressure", 2.25, "2026-11-30T00:53:21.000Z"),
                   ("boiler-9", "temp", 71.5, "2026-11-30T00:53:20.000Z")]
    st = gw.wait_stats("both readings counted", lambda s: s["readings"] >= 2)
    assert st["bad"] == {} and st["readings"] == 2
