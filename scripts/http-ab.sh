#!/usr/bin/env bash
# Two builds of ix-http, alternated (before, after, before, after, ...) in one run on the test network:
# closed-loop `ixload` throughput and latency at each connection count, then the server's TCP counters
# (transmitted frames, retransmissions, tail loss probes and the D-SACKs answering them).
#
#   bench-prio scripts/http-ab.sh [-r ROUNDS] [-c CONNS,...] [-d SECONDS] BEFORE_DIR AFTER_DIR
#
# Each DIR holds an `ix-http` binary (a worktree's target/release); `ixload` comes from this tree's.
# Server on CPU 0 (xdp backend, one core, --idle adaptive:100), load generator on CPU 1.
set -euo pipefail
rounds=3 conns=256,32 secs=4
while getopts "r:c:d:" opt; do
    case $opt in
        r) rounds=$OPTARG ;;
        c) conns=$OPTARG ;;
        d) secs=$OPTARG ;;
        *) echo "usage: $0 [-r ROUNDS] [-c CONNS,...] [-d SECONDS] BEFORE_DIR AFTER_DIR" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || { echo "usage: $0 [-r ROUNDS] [-c CONNS,...] [-d SECONDS] BEFORE_DIR AFTER_DIR" >&2; exit 2; }
W=$(cd "$(dirname "$0")/.." && pwd)
for dir in "$@"; do [ -x "$dir/ix-http" ] || { echo "http-ab: no ix-http in '$dir'" >&2; exit 1; }; done
[ -x "$W/target/release/ixload" ] || { echo "http-ab: build ixload first (cargo build --release -p ix-benches)" >&2; exit 1; }
P=ixab$$
D=$(mktemp -d)
"$W/scripts/testnet.sh" up -p $P -q 1 >/dev/null
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
    wait 2>/dev/null
    "$W/scripts/testnet.sh" down -p $P >/dev/null
    rm -rf "$D"
}
trap cleanup EXIT

# One server start: every connection count, then its last counters. $1 label, $2 directory.
run() {
    ip netns exec $P-srv taskset -c 0 "$2/ix-http" --runtime ix --backend xdp:$P-s --idle adaptive:100 --cores 1 \
        --addr 10.77.0.1/24 --port 8080 --max-conns 16384 --stats-every-ms 500 >"$D/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 50); do ip netns exec $P-cli curl -s -m 1 -o /dev/null http://10.77.0.1:8080/ && break; sleep 0.2; done
    for c in ${conns//,/ }; do
        ip netns exec $P-cli taskset -c 1 "$W/target/release/ixload" --target 10.77.0.1:8080 -c "$c" --closed \
            --warmup 1s -d "${secs}s" --json "$D/load.json" -q >/dev/null 2>&1
        python3 -c "import json, sys; r = json.load(open(sys.argv[1])); l = r['latency_us']
print(f\"$1 {sys.argv[2]:>5} conns {r['throughput']:>9.0f} req/s  p50 {l['p50']:8.0f} us  p99 {l['p99']:8.0f} us\")" "$D/load.json" "$c"
    done
    kill -INT "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
    grep '^stats' "$D/server.log" | tail -1 | grep -oE '(tx|retransmits|tlp_probes|tlp_spurious|dsacks_received)=[0-9]+' |
        tr '\n' ' ' | sed "s/^/$1 counters: /"
    echo
}
for round in $(seq 1 "$rounds"); do
    run before "$1"
    run after "$2"
done
