#!/usr/bin/env bash
# wrk against ix-http over a veth pair between two network namespaces, the same
# service on tokio and on IX, one run, one table: requests/s, p50 and p99 at
# 32 and 256 connections. Server in PREFIX-srv pinned to CPU 0, wrk in
# PREFIX-cli pinned to CPU 1. Needs root, wrk, ethtool, iproute2.
#
#   scripts/bench-http.sh [-d SECONDS] [-r RUNS] [-p PREFIX] [--no-build]
#
# Runtimes measured: tokio (kernel sockets), ix on the kernel backend (IX's
# executor and hyper glue over kernel sockets), ix on the tap backend (the
# dataplane; the TAP device is bridged to the veth, so the client reaches the
# stack on the same link). The xdp backend joins when it is built.
# Each cell is the median of RUNS runs of SECONDS seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10 runs=3 prefix=ixhb build=1
while [ $# -gt 0 ]; do
    case "$1" in
        -d) duration=$2; shift 2 ;;
        -r) runs=$2; shift 2 ;;
        -p) prefix=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        *) echo "usage: $0 [-d SECONDS] [-r RUNS] [-p PREFIX] [--no-build]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench-http: needs root (network namespaces, TAP)" >&2; exit 2; }
for tool in wrk ethtool ip taskset; do
    command -v "$tool" >/dev/null || { echo "bench-http: $tool is missing" >&2; exit 2; }
done
[ "$build" -eq 1 ] && cargo build --release -q -p ix-example-http
bin=$PWD/target/release/ix-http

srv=$prefix-srv cli=$prefix-cli
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    ip netns del "$srv" 2>/dev/null || true
    ip netns del "$cli" 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add "$srv"
ip netns add "$cli"
ip link add "$prefix-s" type veth peer name "$prefix-c"
ip link set "$prefix-s" netns "$srv"
ip link set "$prefix-c" netns "$cli"
ip -n "$srv" link add "$prefix-br" type bridge
ip -n "$srv" link set "$prefix-s" master "$prefix-br"
ip -n "$srv" addr add 10.96.49.1/24 dev "$prefix-br"
ip -n "$cli" addr add 10.96.49.2/24 dev "$prefix-c"
for ns_if in "$srv:$prefix-s" "$cli:$prefix-c"; do
    ns=${ns_if%%:*} ifc=${ns_if#*:}
    # TAP frames carry no offload metadata: checksums must be finished on the wire.
    ip netns exec "$ns" ethtool -K "$ifc" tx off tso off gso off gro off >/dev/null 2>&1 || true
    ip -n "$ns" link set "$ifc" up
    ip -n "$ns" link set lo up
done
ip -n "$srv" link set "$prefix-br" up

# Starts ix-http in the server namespace; waits for its listening line.
start_server() {
    local out; out=$(mktemp)
    ip netns exec "$srv" taskset -c 0 "$bin" --port 8080 --cores 1 "$@" >"$out" 2>&1 &
    server_pid=$!
    for _ in $(seq 200); do
        grep -q "^listening on" "$out" && { rm -f "$out"; return 0; }
        sleep 0.05
    done
    echo "bench-http: ix-http $* did not start:" >&2; cat "$out" >&2; exit 1
}

stop_server() {
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
}

# One wrk run: prints "rps p50_ms p99_ms".
wrk_once() {
    local url=$1 conns=$2 out
    out=$(ip netns exec "$cli" taskset -c 1 wrk -t1 -c"$conns" -d"${duration}s" --latency "$url")
    if grep -q "Non-2xx\|Socket errors" <<<"$out"; then echo "bench-http: wrk saw errors:" >&2; echo "$out" >&2; fi
    awk '
        function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
        /Requests\/sec/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        END { printf "%.0f %.3f %.3f\n", rps, p50, p99 }' <<<"$out"
}

# Median of RUNS runs, by requests/s.
wrk_median() {
    for _ in $(seq "$runs"); do wrk_once "$@"; done | sort -n | awk -v n="$runs" 'NR == int((n + 1) / 2)'
}

declare -A result
measure() {
    local name=$1 url=$2; shift 2
    start_server "$@"
    ip netns exec "$cli" wrk -t1 -c8 -d1s "$url" >/dev/null   # warm-up
    for c in 32 256; do result[$name,$c]=$(wrk_median "$url" "$c"); done
    stop_server
}

measure tokio http://10.96.49.1:8080/ --runtime tokio --addr 10.96.49.1
measure ix-kernel http://10.96.49.1:8080/ --runtime ix --backend kernel --addr 10.96.49.1
tap=$prefix-t
measure_tap() {
    start_server --runtime ix --backend "tap:$tap" --addr 10.96.49.3/24
    ip -n "$srv" link set "$tap" master "$prefix-br"
    ip -n "$srv" link set "$tap" up
    for _ in $(seq 100); do ip netns exec "$cli" curl -s -m 1 -o /dev/null http://10.96.49.3:8080/ && break; sleep 0.1; done
    ip netns exec "$cli" wrk -t1 -c8 -d1s http://10.96.49.3:8080/ >/dev/null
    for c in 32 256; do result[ix-tap,$c]=$(wrk_median http://10.96.49.3:8080/ "$c"); done
    stop_server
}
measure_tap

echo
echo "GET / \"Hello, world!\", 1 server core (CPU 0), wrk -t1 on CPU 1, ${runs} x ${duration}s, median"
printf "%-10s %5s %12s %9s %9s %12s %12s\n" runtime conns "requests/s" "p50 ms" "p99 ms" "rps/tokio" "p99/tokio"
for name in tokio ix-kernel ix-tap; do
    for c in 32 256; do
        read -r rps p50 p99 <<<"${result[$name,$c]}"
        read -r trps _ tp99 <<<"${result[tokio,$c]}"
        awk -v n="$name" -v c="$c" -v r="$rps" -v a="$p50" -v b="$p99" -v tr="$trps" -v tb="$tp99" \
            'BEGIN { printf "%-10s %5d %12d %9.3f %9.3f %12.2f %12.2f\n", n, c, r, a, b, r / tr, b / tb }'
    done
done
