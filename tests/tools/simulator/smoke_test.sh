#!/usr/bin/env bash
# Smoke test for gw-sim and gw-bare-sub against a private Mosquitto on an ephemeral loopback
# port: 2,000 QoS 1 readings plus one of each bad input must all arrive and be listed in --out;
# then a short run with device clock errors (--clock) and network delay (--delay) must stamp
# what it says in --out.
# Usage: smoke_test.sh GW_SIM GW_BARE_SUB MOSQUITTO PYTHON3
set -euo pipefail
sim=$1 bare=$2 mosquitto=$3 python=$4
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$dir"/*.log "$dir"/*.txt; do [ -e "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
  exit 1
}
wait_for() {  # wait_for SECONDS COMMAND...
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -lt $deadline ] || return 1; sleep 0.05; done
}

port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# A subscriber that falls behind on a loaded machine: Mosquitto's default queue of 1,000 messages
# per client dropped 208 of the 2,005 the count checks (a CI dry run); gwtest.Mosquitto raises it too.
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\n' "$port" >"$dir/mosquitto.conf"
"$mosquitto" -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
pids+=($!)
port_open() { "$python" -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; }
wait_for 10 port_open || fail "mosquitto did not listen on $port"

uri=tcp://127.0.0.1:$port
"$bare" --uri "$uri" --topic 'plant1/#' --qos 1 --count 2005 --timeout 40 \
  --ready-file "$dir/ready" >"$dir/bare.txt" 2>"$dir/bare.log" &
bare_pid=$!
pids+=($bare_pid)
wait_for 10 test -e "$dir/ready" || fail "gw-bare-sub did not subscribe"

"$sim" --uri "$uri" --devices 10 --count 2000 --qos 1 --seed 3 --odd-device 'pump 7,a=b' \
  --bad-input --out "$dir/out.jsonl" >"$dir/sim.txt" 2>"$dir/sim.log" || fail "gw-sim exited $?"
wait "$bare_pid" || fail "gw-bare-sub exited $?"

grep -q '^sent=2000 acked=2000 failed=0 ' "$dir/sim.txt" || fail "gw-sim summary"
grep -q 'bad_sent=5 bad_acked=5 bad_failed=0' "$dir/sim.txt" || fail "gw-sim bad input summary"
grep -q '^received=2005 ' "$dir/bare.txt" || fail "gw-bare-sub count"
"$python" - "$dir/out.jsonl" <<'PY' || fail "--out file"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
good = [r for r in rows if "bad" not in r]
bad = sorted(r["bad"] for r in rows if "bad" in r)
assert len(good) == 2000, len(good)
assert bad == ["nan", "not_json", "not_number", "too_large", "unknown_topic"], bad
assert any(r["device"] == "pump 7,a=b" for r in good)
assert all(set(r) == {"topic", "device", "line", "metric", "value", "ts", "true_ts"} for r in good)
assert all(r["ts"] <= r["true_ts"] < r["ts"] + 1 for r in good)  # no --clock: ts is true time
PY

# Clock errors and delay: 10 readings/s per device for 2.5 s, events at 1 s into the run.
for bad in pump-001=offset:37 pump-001=drift:5 pump-001=step:+1s pump-009=offset:+1s; do
  rc=0
  "$sim" --uri "$uri" --devices 5 --count 1 --clock "$bad" >/dev/null 2>>"$dir/clock.log" || rc=$?
  [ "$rc" = 2 ] || fail "--clock $bad: exit $rc, want 2"
done
"$sim" --uri "$uri" --devices 5 --metrics flow --rate 50 --duration 2.5 --qos 1 --seed 5 \
  --clock pump-001=offset:+37s --clock pump-002=offset:-5m --clock pump-003=drift:20000ppm \
  --clock pump-004=reset:1s --clock '*=step:+10s@1s' --delay 0-50ms \
  --out "$dir/clock.jsonl" >"$dir/clock.txt" 2>>"$dir/clock.log" || fail "gw-sim --clock exited $?"
grep -q '^sent=\([0-9]*\) acked=\1 failed=0 .* late=' "$dir/clock.txt" || fail "gw-sim --clock summary"
"$python" - "$dir/clock.jsonl" <<'PY' || fail "--clock/--delay --out file"
import collections, json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert len(rows) > 100, len(rows)
assert all(0 <= r["delay_ms"] <= 50 for r in rows)
assert max(r["delay_ms"] for r in rows) > 25  # spread over the range, not fixed
t0 = min(r["true_ts"] for r in rows)  # the run starts just before the first reading
by = collections.defaultdict(list)
for r in rows:
    by[r["device"]].append((r["true_ts"] - t0, r["ts"] - r["true_ts"], r["ts"]))
def near(got, want, tol, what):
    assert abs(got - want) <= tol, f"{what}: ts - true_ts = {got:.3f} ms, want {want:.3f}"
for run, d, ts in by["pump-001"]:
    near(d, 37000, 1.01, "offset +37s")
for run, d, ts in by["pump-002"]:
    near(d, -300000, 1.01, "offset -5m")
for run, d, ts in by["pump-003"]:
    near(d, run * 0.02, 1.5, f"drift 20000ppm at {run:.0f} ms")
for run, d, ts in by["pump-004"]:  # reset to 1970 at 1 s
    if run < 990:
        near(d, 0, 1.01, "before the reset")
    elif run > 1010:
        assert ts < 1e9, f"after the reset ts = {ts}"
        near(ts, run - 1000, 1.5, "ms since the reset")
for run, d, ts in by["pump-005"]:  # '*': step +10 s at 1 s
    if run < 990:
        near(d, 0, 1.01, "before the step")
    elif run > 1010:
        near(d, 10000, 1.01, "after the step")
assert sum(run > 1010 for run, _, _ in by["pump-004"]) >= 5
PY
cat "$dir/sim.txt" "$dir/bare.txt" "$dir/clock.txt"
echo PASS
