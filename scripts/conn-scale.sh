#!/usr/bin/env bash
# Connection scale: ix-http on xdp (one core) or tokio, loaded by ixload from
# the client namespace with N connections, open loop, for each N given. Prints
# per N ixload's summary (throughput, latency percentiles, errors) and the
# server's resident memory at the end of the run; for IX also its last counter
# line (connections, pool, SYN cookies, pressure drops).
#
#   scripts/conn-scale.sh [-r RATE] [-d SECONDS] [-p PREFIX] [-s ix|tokio] [-b IX_HTTP] [--] N...
#
# One ixload process holds at most 20,000 descriptors here (a hard limit), so
# N stays at or below 19,000 per run. SERVER_ARGS (environment) are added to
# ix-http's arguments, e.g. SERVER_ARGS="--header-timeout-ms 120000". Needs root, ethtool, iproute2; builds
# nothing (cargo build --release -p ix-example-http -p ix-benches first).
set -euo pipefail
cd "$(dirname "$0")/.."

rate=10000 duration=6 prefix=ixcs server=ix bin=$PWD/target/release/ix-http
while getopts "r:d:p:s:b:" opt; do
    case $opt in
        r) rate=$OPTARG ;;
        d) duration=$OPTARG ;;
        p) prefix=$OPTARG ;;
        s) server=$OPTARG ;;
        b) bin=$OPTARG ;;
        *) echo "usage: $0 [-r RATE] [-d SECONDS] [-p PREFIX] [-s ix|tokio] [-b IX_HTTP] N..." >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "$0: give at least one connection count" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (network namespaces, AF_XDP)" >&2; exit 2; }
load=$PWD/target/release/ixload
out=$(mktemp -d)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null
    scripts/testnet.sh down -p "$prefix"
    rm -rf "$out"
}
trap cleanup EXIT
ulimit -n 20000

for conns in "$@"; do
    scripts/testnet.sh up -p "$prefix" -q 1
    case $server in
        ix) args=(--backend "xdp:$prefix-s" --addr 10.77.0.1/24 --stats-every-ms 1000) ;;
        tokio) args=(--runtime tokio --addr 10.77.0.1/24) ;;
        *) echo "$0: -s ix or tokio" >&2; exit 2 ;;
    esac
    ip netns exec "$prefix-srv" taskset -c 0 "$bin" "${args[@]}" --max-conns 1000000 ${SERVER_ARGS:-} >"$out/server" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do grep -q "^listening" "$out/server" && break; sleep 0.1; done
    ip netns exec "$prefix-cli" taskset -c 1 "$load" --target 10.77.0.1:8080 -c "$conns" --rate "$rate" \
        -d "${duration}s" 2>"$out/load" >/dev/null || true
    rss=$(awk '/VmRSS/ {print $2 / 1024 " MB"}' "/proc/$server_pid/status")
    echo "== $server, $conns connections, $rate/s offered, ${duration} s: server RSS $rss"
    grep -v WARN "$out/load" | tail -4
    grep "^stats" "$out/server" | tail -1 || true
    kill -9 "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
    scripts/testnet.sh down -p "$prefix"
done
