#!/usr/bin/env bash
# First figures of the XDP backend: an IX "Hello, world!" server on xdp (one
# core, shared address, native mode) against the same server on tokio's
# current-thread runtime, each loaded by wrk over the veth pair of
# scripts/testnet.sh. Server pinned to CPU 0, wrk to CPU 1; RUNS runs of
# SECONDS seconds per connection count, the two servers taking turns (the
# machine is shared: interleaving spreads other load over both); prints one
# line per run.
#
#   scripts/xdp-hello-bench.sh [SECONDS] [RUNS] [CONNECTIONS...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
runs=${2:-3}
shift $(( $# > 2 ? 2 : $# )) || true
conns=("$@")
[ ${#conns[@]} -gt 0 ] || conns=(32 256)
prefix=ixbench
srv=$prefix-srv
cli=$prefix-cli

cargo build --release -q -p ix-runtime --example hello_bench
bin=target/release/examples/hello_bench
scripts/testnet.sh up -p "$prefix" -q 1
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    scripts/testnet.sh down -p "$prefix"
}
trap cleanup EXIT

start() {
    ip netns exec "$srv" taskset -c 0 "$bin" "$@" > /tmp/ix-hello-bench.log 2>&1 &
    server=$!
    for _ in $(seq 100); do
        grep -q listening /tmp/ix-hello-bench.log && return
        sleep 0.1
    done
    echo "server did not start:" >&2
    cat /tmp/ix-hello-bench.log >&2
    exit 1
}

stop() {
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=
}

# One wrk run: prints "NAME connections=C run=R req/s=X p99=Y [errors]".
measure() {
    local name=$1 c=$2 run=$3 out rps p99 errs
    out=$(ip netns exec "$cli" taskset -c 1 wrk -t1 -c"$c" -d"${seconds}s" --latency http://10.77.0.1:8080/)
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errs=$(grep -E "Non-2xx|Socket errors" <<<"$out" | tr '\n' ' ' || true)
    echo "$name connections=$c run=$run req/s=$rps p99=$p99 $errs"
}

for c in "${conns[@]}"; do
    for run in $(seq "$runs"); do
        start ix "$prefix-s,mode=native,ports=8080" 10.77.0.1/24 8080
        measure ix-xdp "$c" "$run"
        stop
        start tokio - 10.77.0.1 8080
        measure tokio "$c" "$run"
        stop
    done
done
