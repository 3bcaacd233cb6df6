#!/usr/bin/env bash
# Two builds of an IX server (ix-http, or ix-kv with `-w etc|usr|kv`), alternated (before, after, before,
# after, ...) in one run on the test network: `ixload` throughput and latency at each connection count, closed
# loop or at a fixed open-loop rate (`-R`), with the CPU split of both CPUs over the measured window
# (/proc/stat: user, system, softirq, steal, idle), then the server's last TCP counters.
#
#   bench-prio scripts/server-ab.sh [-w http|etc|usr|kv] [-r ROUNDS] [-c CONNS,...] [-d SECONDS] [-R RATE]
#                                   BEFORE_DIR AFTER_DIR
#
# Each DIR holds the server binary (a worktree's target/release); `ixload` comes from this tree's. Server on
# CPU 0 (xdp backend, one core, --idle adaptive:100), load generator on CPU 1. `kv` is 90% get of 32-byte
# values (the harness's default KV mix); `etc` and `usr` are ixload's Facebook workloads over 10,000 keys.
# With `-R`, the p99 of the requests no host stall touched is printed beside the p99 of all (see
# docs/results.md, "Stalls"); the CPU split tells which side was saturated at that rate.
set -euo pipefail
rounds=3 conns=256,32 secs=4 workload=http rate=
usage="usage: $0 [-w http|etc|usr|kv] [-r ROUNDS] [-c CONNS,...] [-d SECONDS] [-R RATE] BEFORE_DIR AFTER_DIR"
while getopts "w:r:c:d:R:" opt; do
    case $opt in
        w) workload=$OPTARG ;;
        r) rounds=$OPTARG ;;
        c) conns=$OPTARG ;;
        d) secs=$OPTARG ;;
        R) rate=$OPTARG ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || { echo "$usage" >&2; exit 2; }
case $workload in
    http) server=ix-http port=8080 load=(--protocol http --path /) ;;
    etc | usr) server=ix-kv port=11211 load=(--protocol memcache --keys 10000 --prefill --workload "$workload") ;;
    kv) server=ix-kv port=11211
        load=(--protocol memcache --keys 10000 --prefill --get-ratio 0.9 --key-size 16 --value-size 32) ;;
    *) echo "$usage" >&2; exit 2 ;;
esac
if [ -n "$rate" ]; then mode=(--rate "$rate"); else mode=(--closed); fi
W=$(cd "$(dirname "$0")/.." && pwd)
for dir in "$@"; do [ -x "$dir/$server" ] || { echo "server-ab: no $server in '$dir'" >&2; exit 1; }; done
[ -x "$W/target/release/ixload" ] || { echo "server-ab: build ixload first (cargo build --release -p ix-benches)" >&2; exit 1; }
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

# CPU 0's and CPU 1's counters from /proc/stat.
cpu_counters() { grep -E '^cpu[01] ' /proc/stat; }

# One server start: every connection count, then its last counters. $1 label, $2 directory.
run() {
    local common=(--runtime ix --backend xdp:$P-s --idle adaptive:100 --addr 10.77.0.1/24)
    if [ "$server" = ix-http ]; then
        ip netns exec $P-srv taskset -c 0 "$2/ix-http" "${common[@]}" --cores 1 --port $port --max-conns 16384 \
            --stats-every-ms 500 >"$D/server.log" 2>&1 &
    else
        ip netns exec $P-srv taskset -c 0 "$2/ix-kv" "${common[@]}" -t 1 -p $port -m 1024 -c 16384 \
            --metrics 127.0.0.1:9464 >"$D/server.log" 2>&1 &
    fi
    SERVER_PID=$!
    for _ in $(seq 50); do
        ip netns exec $P-cli bash -c "exec 3<>/dev/tcp/10.77.0.1/$port" 2>/dev/null && break
        sleep 0.2
    done
    for c in ${conns//,/ }; do
        ip netns exec $P-cli taskset -c 1 "$W/target/release/ixload" --target 10.77.0.1:$port -c "$c" "${mode[@]}" \
            "${load[@]}" --stalls --stall-pids "$SERVER_PID" --warmup 1s -d "${secs}s" --json "$D/load.json" -q \
            >/dev/null 2>"$D/load.err" &
        local load_pid=$!
        # The window: after the warm-up (and the prefill), to a second before its end.
        sleep "$(echo "1.5 + $secs * 0.1" | bc)"
        cpu_counters >"$D/cpu.before"
        sleep "$(echo "$secs * 0.8" | bc)"
        cpu_counters >"$D/cpu.after"
        wait "$load_pid" || { echo "server-ab: ixload failed: $(tail -3 "$D/load.err")" >&2; continue; }
        python3 - "$D/load.json" "$D/cpu.before" "$D/cpu.after" "$1" "$c" <<'PY'
import json, sys
report, before, after, label, conns = sys.argv[1:]
r = json.load(open(report))
lat, stalls = r['latency_us'], r.get('stalls') or {}
unstalled = (stalls.get('unstalled_latency_us') or {}).get('p99')
line = f"{label} {conns:>5} conns {r['throughput']:>9.0f} req/s  p50 {lat['p50']:8.0f} us  p99 {lat['p99']:8.0f} us"
if unstalled is not None:
    # Every request stalled: no unstalled p99 to show.
    shown = 'n/a' if stalls.get('stalled_requests') == stalls.get('requests') else f"{unstalled:.0f} us"
    line += f"  p99 unstalled {shown:>11} ({stalls.get('stalled_pct', 0):.0f}% stalled)"
read = lambda path: {l.split()[0]: [int(x) for x in l.split()[1:]] for l in open(path)}
b, a = read(before), read(after)
for cpu in ('cpu0', 'cpu1'):
    # user nice system idle iowait irq softirq steal
    d = [y - x for x, y in zip(b[cpu], a[cpu])]
    total = sum(d[:8]) or 1
    pct = lambda *i: 100 * sum(d[j] for j in i) / total
    line += f" | {cpu} usr {pct(0, 1):3.0f} sys {pct(2):3.0f} sirq {pct(5, 6):3.0f} steal {pct(7):3.0f} idle {pct(3, 4):3.0f}"
print(line)
PY
    done
    if [ "$server" = ix-http ]; then
        grep '^stats' "$D/server.log" | tail -1 | tr ' ' '\n' |
            grep -E '^(tx|retransmits|tlp_probes|tlp_spurious|dsacks_received)=[0-9]+$' | tr '\n' ' ' |
            sed "s/^/$1 counters: /"
    else
        ip netns exec $P-srv curl -s -m 2 http://127.0.0.1:9464/metrics |
            grep -E '^ix_loop_tx_packets_total|counter="(retransmits|tlp_probes|tlp_spurious|dsacks_received)"' |
            sed -E 's/^ix_loop_(tx)_packets_total[^ ]*/\1/; s/.*counter="([a-z_]+)"\}/\1/' | awk '{printf "%s=%s ", $1, $2}' |
            sed "s/^/$1 counters: /"
    fi
    echo
    kill -INT "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
}
for round in $(seq 1 "$rounds"); do
    run before "$1"
    run after "$2"
done
