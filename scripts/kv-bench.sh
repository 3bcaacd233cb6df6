#!/usr/bin/env bash
# kv benchmark: memcaslap (90% get / 10% set, 32-byte keys and values, one
# thread, 32 connections, pinned to CPU 1) against memcached -t 1 and ix-kv -t 1
# on tokio, on IX's kernel backend and on IX over TAP (servers on CPU 0; the IX
# runtime pins its core 0 to CPU 0 itself), one run each, printed as a
# table of ops/s and p99 (upper bound of memcaslap's log2 latency bucket).
# Usage: scripts/kv-bench.sh [SECONDS] (default 10). Needs root for the TAP run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
cargo build --release -q -p ix-example-kv
bin=target/release/ix-kv
work=$(mktemp -d)
tap="ixkvb$$"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    ip link del "$tap" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
printf 'key\n32 32 1\nvalue\n32 32 1\ncmd\n0 0.1\n1 0.9\n' >"$work/cfg"

wait_port() { # host port
    for _ in $(seq 200); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.05; done
    echo "server at $1:$2 did not start" >&2; return 1
}

# Prints "ops/s p99_us" from a memcaslap report.
summarize() {
    python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
tps = re.search(r"TPS: (\d+)", text).group(1)
total = text[text.index("Total Statistics"):]
counts = {}
for row in re.finditer(r"^\s+(\d+):((?:\s+\d+)+)\s*$", total.split("cmd_get")[0], re.M):
    base = int(row.group(1))
    for i, n in enumerate(row.group(2).split()):
        counts[base + i] = int(n)
n = sum(counts.values())
seen = 0
for exp in sorted(counts):
    seen += counts[exp]
    if seen >= 0.99 * n:
        print(tps, 2 ** (exp + 1))
        break
PY
}

run_load() { # name host port
    taskset -c 1 memcaslap -s "$2:$3" -F "$work/cfg" -t "${secs}s" -T 1 -c 32 -S "${secs}s" >"$work/load.txt" 2>&1
    read -r ops p99 < <(summarize "$work/load.txt")
    base="${base:-$ops}"
    printf '%-22s %10s %10s %8s\n' "$1" "$ops" "$p99" "$(awk "BEGIN {printf \"%.2fx\", $ops / $base}")"
}

printf '%-22s %10s %10s %8s\n' server ops/s "p99<=us" "ops/s vs memcached"
user=(); [ "$(id -u)" -eq 0 ] && user=(-u root)
taskset -c 0 memcached -U 0 -l 127.0.0.1 -p 21411 -t 1 "${user[@]}" & pids+=($!)
wait_port 127.0.0.1 21411
run_load "memcached -t 1" 127.0.0.1 21411
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

taskset -c 0 "$bin" --runtime tokio --addr 127.0.0.1 -p 21412 -t 1 >/dev/null & pids+=($!)
wait_port 127.0.0.1 21412
run_load "ix-kv tokio -t 1" 127.0.0.1 21412
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

taskset -c 0 "$bin" --runtime ix --backend kernel --addr 127.0.0.1 -p 21413 -t 1 >/dev/null & pids+=($!)
wait_port 127.0.0.1 21413
run_load "ix-kv ix kernel -t 1" 127.0.0.1 21413
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

if [ "$(id -u)" -eq 0 ]; then
    "$bin" --runtime ix --backend "tap:$tap" --addr 10.96.0.2/24 -p 11211 -t 1 >/dev/null & pids+=($!)
    for _ in $(seq 200); do ip link show "$tap" >/dev/null 2>&1 && break; sleep 0.05; done
    ip addr add 10.96.0.1/24 dev "$tap"
    ip link set "$tap" up
    wait_port 10.96.0.2 11211
    run_load "ix-kv ix tap -t 1" 10.96.0.2 11211
    kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
fi
