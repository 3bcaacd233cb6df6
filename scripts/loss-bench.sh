#!/usr/bin/env bash
# Loss recovery against Linux, side by side in one run (issue #13): the same
# hyper service (`ix-http`) on IX (xdp, native mode, its own address 10.77.0.3)
# and on tokio (Linux's TCP, 10.77.0.1), both in PREFIX-srv pinned to CPU 0, over
# the veth of scripts/testnet.sh with random loss each way (`testnet.sh loss`).
#
#  1. Goodput: curl in PREFIX-cli (CPU 1) fetches BYTES from `GET /bytes/BYTES`
#     at 0, 1, 5 and 10% loss; RUNS runs per cell, IX and Linux taking turns;
#     median goodput and the ratio IX / Linux. A fetch still running after
#     MAX_TIME seconds counts with the bytes it got by then (marked `*`).
#  2. RPC tail at 1% loss: `ixload` open loop (RATE requests/s of `GET /`,
#     32 connections, SECONDS s window) against each; p99 and p99.9 per run,
#     the median of each and the ratio IX / tokio.
#
#   scripts/loss-bench.sh [-r RUNS] [-b BYTES] [-t MAX_TIME] [--rate RATE]
#                         [-d SECONDS] [-p PREFIX] [--no-build]
#                         [--losses 0,1,5,10] [--only goodput|rpc]
#                         [--idle POLICY] [--hogs N] [--bin-dir DIR]
#
# --losses picks the goodput levels and --only one half, so that a run fits in
# the ten minutes a `bench-prio` call may take. --idle is IX's idle policy
# (`ix-http --idle`: busy, adaptive[:US], block; default its default). --hogs
# runs N busy loops on each CPU throughout, beside the servers and the client:
# a machine shared with other work, in a controlled form (Linux's TCP does
# most of its work in softirq, ahead of every thread; IX's runs in its thread,
# which must win its CPU from the busy loops first). Keep N small: under
# `bench-prio` the loops outrank every other process on the machine.
# --bin-dir takes ix-http and ixload from DIR (another build's target/release,
# e.g. a `git worktree` of an older commit) instead of this tree's, and builds
# nothing: two builds are compared by calling the script in turn with each DIR
# inside one `bench-prio` call (docs/loss-recovery.md has the command).
#
# Needs root (namespaces, XDP), iproute2, ethtool, nftables, curl, taskset.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3 bytes=20000000 max_time=60 rate=1000 seconds=10 prefix=ixlb build=1 losses=0,1,5,10 only= idle= hogs=0 bin_dir=
usage() {
    echo "usage: $0 [-r RUNS] [-b BYTES] [-t MAX_TIME] [--rate RATE] [-d SECONDS] [-p PREFIX] [--no-build]" \
        "[--losses 0,1,5,10] [--only goodput|rpc] [--idle POLICY] [--hogs N] [--bin-dir DIR]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        -r) runs=$2; shift 2 ;;
        -b) bytes=$2; shift 2 ;;
        -t) max_time=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        -d) seconds=$2; shift 2 ;;
        -p) prefix=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --losses) losses=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --idle) idle=$2; shift 2 ;;
        --hogs) hogs=$2; shift 2 ;;
        --bin-dir) bin_dir=$(cd "$2" && pwd); build=0; shift 2 ;;
        *) usage ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "loss-bench: needs root (network namespaces, XDP)" >&2; exit 2; }

# shellcheck source=scripts/packages.sh
. scripts/packages.sh
need_cmd ip iproute2
need_cmd ethtool ethtool
need_cmd nft nftables
need_cmd curl curl
need_cmd taskset util-linux
install_needed

[ "$build" -eq 1 ] && cargo build --release -q -p ix-example-http -p ix-benches --bins
bins=${bin_dir:-$PWD/target/release}
http=$bins/ix-http ixload=$bins/ixload
needed=("$http")
[ "$only" = goodput ] || needed+=("$ixload")
for bin in "${needed[@]}"; do
    [ -x "$bin" ] || { echo "loss-bench: no $bin (build it, or pass --bin-dir)" >&2; exit 1; }
done
srv=$prefix-srv cli=$prefix-cli
ix_addr=10.77.0.3 linux_addr=10.77.0.1

pids=() logs=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    rm -f "${logs[@]}"
    scripts/testnet.sh down -p "$prefix"
}
trap cleanup EXIT
# A signal ends the script through exit, so the EXIT trap runs (bash skips it on an untrapped signal).
trap 'exit 130' INT TERM HUP
scripts/testnet.sh up -p "$prefix" -q 1
# The bridge and the GSO cap of `loss` from the start: every level takes the same path.
scripts/testnet.sh loss -p "$prefix" -l 0

# Starts ix-http in the server namespace on CPU 0; waits for its listening line.
start_server() {
    local log; log=$(mktemp)
    logs+=("$log")
    ip netns exec "$srv" taskset -c 0 "$http" --port 8080 --cores 1 "$@" >"$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do
        grep -q "^listening on" "$log" && return 0
        sleep 0.05
    done
    echo "loss-bench: ix-http $* did not start:" >&2; cat "$log" >&2; exit 1
}
ix_args=(--runtime ix --backend "xdp:$prefix-s,mode=native" --addr "$ix_addr/24")
[ -n "$idle" ] && ix_args+=(--idle "$idle")
start_server "${ix_args[@]}"
start_server --runtime tokio --addr "$linux_addr"
for cpu in $(seq 0 $(($(nproc) - 1))); do
    for _ in $(seq "$hogs"); do
        # Each loop ends by itself once this script is gone, whatever killed it.
        taskset -c "$cpu" sh -c "while kill -0 $$ 2>/dev/null; do :; done" &
        pids+=($!)
    done
done

# One fetch: prints "MB/s" and a `*` when it did not finish within MAX_TIME.
fetch() {
    local out got secs
    out=$(ip netns exec "$cli" taskset -c 1 curl -s -o /dev/null --max-time "$max_time" \
        -w '%{size_download} %{time_total}' "http://$1:8080/bytes/$bytes" || true)
    read -r got secs <<<"$out"
    awk -v g="$got" -v s="$secs" -v want="$bytes" 'BEGIN { printf "%.2f%s\n", g / s / 1e6, (g == want ? "" : "*") }'
}

# The median of the numbers on stdin (a trailing `*` is kept when the median
# value carries it).
median() {
    sort -g | awk '{ v[NR] = $0 } END { print v[int((NR + 1) / 2)] }'
}

[ -z "$only" ] || [ "$only" = goodput ] || [ "$only" = rpc ] || usage
IFS=, read -r -a loss_levels <<<"$losses"

declare -A goodput
goodput_sweep() {
    local loss run ix_runs linux_runs
    for loss in "${loss_levels[@]}"; do
        scripts/testnet.sh loss -p "$prefix" -l "$loss"
        ix_runs=() linux_runs=()
        for run in $(seq "$runs"); do
            ix_runs+=("$(fetch "$ix_addr")")
            linux_runs+=("$(fetch "$linux_addr")")
            echo "goodput ${loss}% run $run: ix ${ix_runs[-1]} MB/s, linux ${linux_runs[-1]} MB/s" >&2
        done
        goodput[ix,$loss]=$(printf '%s\n' "${ix_runs[@]}" | median)
        goodput[linux,$loss]=$(printf '%s\n' "${linux_runs[@]}" | median)
    done
}

# One ixload run against $1: prints "p99_us p99.9_us throughput errors".
rpc_once() {
    local out
    out=$(ip netns exec "$cli" taskset -c 1 "$ixload" --target "$1:8080" --rate "$rate" -c 32 \
        --duration "${seconds}s" 2>&1 >/dev/null)
    awk '
        /^latency us:/ { for (i = 1; i <= NF; i++) { if ($i == "p99") p99 = $(i + 1); if ($i == "p99.9") p999 = $(i + 1) } }
        /throughput/ { for (i = 1; i <= NF; i++) if ($i == "throughput") tput = $(i + 1) }
        /^errors:/ { errs = $3 + $5 + $7 + $10 }
        END { printf "%s %s %s %d\n", p99, p999, tput, errs }' <<<"$out"
}

ix_rpc=() tokio_rpc=()
rpc_sweep() {
    local run
    scripts/testnet.sh loss -p "$prefix" -l 1
    for run in $(seq "$runs"); do
        ix_rpc+=("$(rpc_once "$ix_addr")")
        tokio_rpc+=("$(rpc_once "$linux_addr")")
        echo "rpc 1% run $run: ix ${ix_rpc[-1]}, tokio ${tokio_rpc[-1]} (p99 us, p99.9 us, req/s, errors)" >&2
    done
    scripts/testnet.sh loss -p "$prefix" -l 0
}

column_median() {
    local column=$1; shift
    printf '%s\n' "$@" | awk -v c="$column" '{ print $c }' | median
}

print_goodput() {
    echo "Goodput of GET /bytes/$bytes, curl on Linux receiving; median of $runs runs (MB/s; * = not finished in ${max_time} s)"
    printf "%-6s %12s %16s %9s\n" loss "IX (xdp)" "Linux (tokio)" "IX/Linux"
    for loss in "${loss_levels[@]}"; do
        awk -v l="$loss%" -v i="${goodput[ix,$loss]}" -v k="${goodput[linux,$loss]}" \
            'BEGIN { printf "%-6s %12s %16s %9.2f\n", l, i, k, (i + 0) / (k + 0) }'
    done
}

print_rpc() {
    echo "RPC at 1% loss: ixload --rate $rate -c 32 -d ${seconds}s, GET /; median of $runs runs (us)"
    printf "%-14s %10s %10s %12s %8s\n" server p99 p99.9 "req/s" errors
    for name in ix tokio; do
        declare -n rows="${name}_rpc"
        printf "%-14s %10s %10s %12s %8s\n" "$name" "$(column_median 1 "${rows[@]}")" "$(column_median 2 "${rows[@]}")" \
            "$(column_median 3 "${rows[@]}")" "$(column_median 4 "${rows[@]}")"
    done
    awk -v a="$(column_median 1 "${ix_rpc[@]}")" -v b="$(column_median 1 "${tokio_rpc[@]}")" \
        -v c="$(column_median 2 "${ix_rpc[@]}")" -v d="$(column_median 2 "${tokio_rpc[@]}")" \
        'BEGIN { printf "%-14s %10.2f %10.2f\n", "IX/tokio", a / b, c / d }'
}

[ "$only" = rpc ] || goodput_sweep
[ "$only" = goodput ] || rpc_sweep

echo
# The commit of the tree the binaries came from (what its checkout says: a build may be older).
bins_commit=$(git -C "$bins" rev-parse --short HEAD 2>/dev/null || echo unknown)
bins_changes=$(git -C "$bins" diff --quiet HEAD 2>/dev/null || echo '+changes')
echo "binaries $bins (commit $bins_commit$bins_changes), $(nproc) CPUs, Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "IX idle policy: ${idle:-the default of ix-http}; busy loops per CPU: $hogs"
if [ "$only" != rpc ]; then
    echo
    print_goodput
fi
if [ "$only" != goodput ]; then
    echo
    print_rpc
fi
