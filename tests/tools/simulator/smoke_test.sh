#!/usr/bin/env bash
# Smoke test for gw-sim and gw-bare-sub against a private Mosquitto on an ephemeral loopback
# port: 2,000 QoS 1 readings plus one of each bad input must all arrive and be listed in --out.
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
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" >"$dir/mosquitto.conf"
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
assert all(set(r) == {"topic", "device", "line", "metric", "value", "ts"} for r in good)
PY
cat "$dir/sim.txt" "$dir/bare.txt"
echo PASS
