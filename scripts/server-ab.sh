#!/usr/bin/env bash
# Two builds of an IX server (ix-http, or ix-kv with `-w etc|usr|kv`), or one build under two idle policies,
# alternated (before, after, before, after, ...) in one run on the test network: `ixload` throughput and latency
# at each connection count, closed loop or at fixed open-loop rates (`-R`), with what the window cost: both
# CPUs' split, the server's loop and TCP counters, the client kernel's TCP counters, the system calls of the
# server's thread, and where slow requests cluster in time (scripts/server-ab-report.py prints it).
#
#   bench-prio scripts/server-ab.sh [-w http|etc|usr|kv] [-r ROUNDS] [-c CONNS,...] [-d SECONDS]
#                                   [-R RATE,...] [-i IDLE[,IDLE]] [-s] [-k KEEP_DIR] BEFORE_DIR AFTER_DIR
#
# Each DIR holds the server binary (a worktree's target/release); `ixload` comes from this tree's (or $IXLOAD).
# Server on CPU 0 (xdp backend, one core), load generator on CPU 1, on the unsteered network the harness's search
# uses.
# `-i` gives the idle policy of both sides, or of before and after (default adaptive:100, the harness's):
# `-i adaptive:100,busy DIR DIR` compares two policies of one build. `kv` is 90% get of 32-byte values (the
# harness's default KV mix); `etc` and `usr` are ixload's Facebook workloads over 10,000 keys. With `-R`, the
# p99 of the requests no host stall touched is printed beside the p99 of all (see docs/results.md, "Stalls").
# `-s` also records the scheduler's switches on both CPUs over the window (`perf record`) and says what ran
# there while the slowest requests waited. `-k` keeps each point's files (ixload's JSON with every request's
# timeline, the snapshots) in KEEP_DIR/ROUND-LABEL-CONNS-RATE/.
set -euo pipefail
rounds=3 conns=256,32 secs=4 workload=http rates= idles=adaptive:100 sched= keep=
usage="usage: $0 [-w http|etc|usr|kv] [-r ROUNDS] [-c CONNS,...] [-d SECONDS] [-R RATE,...] [-i IDLE[,IDLE]] [-s]"
usage+=" [-k KEEP_DIR]"
usage+=" BEFORE_DIR AFTER_DIR"
while getopts "w:r:c:d:R:i:sk:" opt; do
    case $opt in
        w) workload=$OPTARG ;;
        r) rounds=$OPTARG ;;
        c) conns=$OPTARG ;;
        d) secs=$OPTARG ;;
        R) rates=$OPTARG ;;
        i) idles=$OPTARG ;;
        s) sched=1 ;;
        k) keep=$OPTARG ;;
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
idle_before=${idles%%,*} idle_after=${idles#*,}
W=$(cd "$(dirname "$0")/.." && pwd)
for dir in "$@"; do [ -x "$dir/$server" ] || { echo "server-ab: no $server in '$dir'" >&2; exit 1; }; done
IXLOAD=${IXLOAD:-$W/target/release/ixload}
[ -x "$IXLOAD" ] || { echo "server-ab: build ixload first (cargo build --release -p ix-benches)" >&2; exit 1; }
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

# Everything a window's figures are the difference of: both CPUs' /proc/stat lines, the server's metrics, the
# client namespace's TCP counters, the softirq threads' run time. $1: the file prefix.
snapshot() {
    grep -E '^cpu[01] ' /proc/stat >"$1.cpu"
    ip netns exec $P-srv curl -s -m 1 http://127.0.0.1:9464/metrics >"$1.metrics" || : >"$1.metrics"
    ip netns exec $P-cli nstat -asz >"$1.nstat"
    for t in $(pgrep -x 'ksoftirqd/[01]'); do echo "$(cat /proc/$t/comm) $(cut -d' ' -f1 /proc/$t/schedstat)"; done \
        >"$1.softirqd"
}

# One point: ixload at $3 connections ($4: "--rate R" or "--closed") against the running server. $1 label,
# $2 idle policy.
point() {
    local label=$1 idle=$2 c=$3
    shift 3
    rm -f "$D"/window.* "$D/sched.data"
    ip netns exec $P-cli taskset -c 1 "$IXLOAD" --target 10.77.0.1:$port -c "$c" "$@" \
        "${load[@]}" --stalls --stall-pids "$SERVER_PID" --timeline --warmup 1s -d "${secs}s" --json "$D/load.json" \
        -q >/dev/null 2>"$D/load.err" &
    local load_pid=$!
    # The window: after the warm-up (and the prefill), to a second before its end.
    local window
    window=$(echo "$secs * 0.8" | bc)
    sleep "$(echo "1.5 + $secs * 0.1" | bc)"
    snapshot "$D/window.start"
    local tid
    tid=$(ls /proc/$SERVER_PID/task | while read -r t; do grep -q '^ix-core' /proc/$SERVER_PID/task/$t/comm && echo $t; done | head -1)
    perf stat -x, -e syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_pwait2,syscalls:sys_enter_recvfrom \
        -e context-switches -t "${tid:-$SERVER_PID}" -o "$D/window.syscalls" -- sleep "$window" &
    local perf_pids=($!)
    if [ -n "$sched" ]; then
        # perf stamps with the monotonic clock; ixload's timeline is in Unix time: keep the difference.
        python3 -c 'import time; print(int(1e6 * (time.time() - time.monotonic())))' >"$D/sched.offset"
        perf record -q -k monotonic -e sched:sched_switch -C 0,1 -o "$D/sched.data" -- sleep "$window" \
            >/dev/null 2>&1 &
        perf_pids+=($!)
    fi
    sleep "$window"
    snapshot "$D/window.end"
    wait "${perf_pids[@]}" || :
    wait "$load_pid" || { echo "server-ab: ixload failed: $(tail -3 "$D/load.err")" >&2; return; }
    if [ -n "$sched" ]; then
        { cat "$D/sched.offset"; perf script -i "$D/sched.data" -F cpu,time,trace 2>/dev/null; } >"$D/sched.txt"
    fi
    python3 "$W/scripts/server-ab-report.py" --label "$label" --idle "$idle" --conns "$c" --dir "$D" \
        ${sched:+--sched "$D/sched.txt"}
    if [ -n "$keep" ]; then
        local kept="$keep/$round-$label-$c-${2:-closed}"
        mkdir -p "$kept" && cp "$D"/load.json "$D"/window.* "$kept"/ && { [ -z "$sched" ] || cp "$D/sched.txt" "$kept"/; }
    fi
}

# One server start: every connection count and rate. $1 label, $2 directory, $3 idle policy.
run() {
    local common=(--runtime ix --backend xdp:$P-s --idle "$3" --addr 10.77.0.1/24 --metrics 127.0.0.1:9464)
    if [ "$server" = ix-http ]; then
        ip netns exec $P-srv taskset -c 0 "$2/ix-http" "${common[@]}" --cores 1 --port $port --max-conns 16384 \
            >"$D/server.log" 2>&1 &
    else
        ip netns exec $P-srv taskset -c 0 "$2/ix-kv" "${common[@]}" -t 1 -p $port -m 1024 -c 16384 \
            >"$D/server.log" 2>&1 &
    fi
    SERVER_PID=$!
    for _ in $(seq 50); do
        ip netns exec $P-cli bash -c "exec 3<>/dev/tcp/10.77.0.1/$port" 2>/dev/null && break
        sleep 0.2
    done
    for c in ${conns//,/ }; do
        if [ -z "$rates" ]; then
            point "$1" "$3" "$c" --closed
        else
            for rate in ${rates//,/ }; do point "$1" "$3" "$c" --rate "$rate"; done
        fi
    done
    kill -INT "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
}
for round in $(seq 1 "$rounds"); do
    run before "$1" "$idle_before"
    run after "$2" "$idle_after"
done
