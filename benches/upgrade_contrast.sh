#!/usr/bin/env bash
# What clients see when tether is replaced under load, two ways:
#   handoff: `kill -USR2` (the new binary inherits every listening socket; the old one stops
#            accepting only once the new one is ready);
#   overlap: the old advice: start a second tether on the same port (SO_REUSEPORT), then
#            SIGTERM the old one (connections queued on its sockets when it closes them reset).
# Each run: three `tether node`s, tether in front, `tether load --new-connection` for 10 s, the
# replacement at 3 s; prints the load tool's errors per mode.
#
#   benches/upgrade_contrast.sh [path/to/tether]     (default target/dist/tether; `make build`)
#
# Everything on 127.0.0.1, ports picked by binding port 0; every process it starts is killed by
# its PID on exit.
set -euo pipefail
BIN=$(realpath "${1:-target/dist/tether}")
ROUNDS=${ROUNDS:-3}
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$1/whoami" && return 0
        sleep 0.05
    done
    echo "nothing answers on :$1" >&2
    return 1
}

nodes=""
for id in node-a node-b node-c; do
    p=$(free_port)
    "$BIN" node --id "$id" --listen "127.0.0.1:$p" >/dev/null 2>&1 &
    pids+=($!)
    wait_http "$p"
    nodes+="      - { id: $id, address: \"127.0.0.1:$p\" }"$'\n'
done

run() {
    local mode=$1 port out
    port=$(free_port)
    cat >"$dir/tether.yaml" <<EOF
listen:
  - address: "127.0.0.1:$port"
upstreams:
  realtime:
    affinity: { mode: none }
    nodes:
$nodes
shutdown: { grace: 2s, close_window: 1s }
log: { access: false }
EOF
    "$BIN" run --config "$dir/tether.yaml" 2>>"$dir/$mode.log" &
    local old=$!
    pids+=($old)
    wait_http "$port"
    "$BIN" load --url "http://127.0.0.1:$port" --flow http --new-connection --clients 16 \
        --duration 10s --timeout 5s --json >"$dir/load.json" 2>/dev/null &
    local load=$!
    sleep 3
    if [ "$mode" = handoff ]; then
        kill -USR2 "$old"
    else
        "$BIN" run --config "$dir/tether.yaml" 2>>"$dir/$mode.log" &
        pids+=($!)
        # The second process is up once it logs so; then the old one goes.
        for _ in $(seq 200); do grep -q "tether started.*pid=$!" "$dir/$mode.log" && break; sleep 0.05; done
        kill -TERM "$old"
    fi
    wait "$load" || true
    python3 - "$mode" "$dir/load.json" <<'PY'
import json, sys
mode, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
errors = {k: v for k, v in r["errors"].items() if v}
print(f"{mode:8} requests {r['requests']:6}  failed {r['errors_total']:4}  {errors}")
PY
    # Stop every tether this run started (their pids are in the start lines of the log).
    sleep 3.5
    for p in $(grep -o 'tether started.*pid=[0-9]*' "$dir/$mode.log" | grep -o '[0-9]*$'); do
        kill "$p" 2>/dev/null || true
    done
    : >"$dir/$mode.log"
}

for round in $(seq "$ROUNDS"); do
    run handoff
    run overlap
done
