#!/usr/bin/env bash
# Where a blocking server's CPU goes per request (issues #15, #19): one server on
# CPU 0 of the test network, ixload (open loop, Poisson, 32 connections, nice
# -20) on CPU 1 at a fixed RATE (the CPUs `ix-bench` gives them; ix-http pins its
# core 0 to CPU 0 on the xdp backend), then three windows of SECONDS under that
# load: the server's CPU time per request (schedstat of its threads, nothing
# attached: on this kernel, without IRQ time accounting, the softirq work its
# system calls run, such as the client's TCP receive behind a veth transmit,
# is its own) with its blocks (voluntary context switches); its system calls
# per request (perf's syscall tracepoints); and, with -p, a call-graph profile
# of CPU 0 or, with -t, strace's counts. With -S the test network is steered
# (`testnet.sh steer -s 0 -c 1`, again once the server listens: an XDP attach
# brings a NAPI thread to pin), so that everything on CPU 0 is the server's
# work; -p then also splits all of CPU 0's samples by what ran: the server's
# user space, its sendto, its blocking and wake-up (ppoll, epoll_wait), its
# other system calls, softirq, the NAPI thread, other processes, idle.
#
#   scripts/idle-cost.sh [-s SERVER] [-i IDLE] [-r RATE] [-d SECONDS] [-S] [-p] [-t]   (root)
#
# SERVER: `xdp` (ix-http on the xdp backend, as ix-bench runs it), `ixcp`
# (ix-http as nobody under ixcp on a virtual port, as scripts/ixcp-efficiency.sh
# runs it, ixcp told never to poll), or `tokio` (ix-http --runtime tokio).
# IDLE: the IX server's --idle (default block). -p adds `perf record -g` of
# CPU 0 (report in the output directory, top entries printed); -t runs
# `strace -c -f` on the server (slows it: its counts, not its times, mean
# something). Run it under `bench-prio` on the shared machine. KEEP=1 keeps
# the output directory; IX_HTTP=PATH runs another ix-http build (a before/after);
# SERVER_ENV="NAME=VALUE ..." sets variables for the server alone (for example
# GLIBC_TUNABLES=glibc.malloc.hugetlb=1).
#
#   cargo build --release -p ix-driver -p ix-example-http -p ix-benches --bins
set -u
SERVER_KIND=xdp
IDLE=block
RATE=10000
SECS=5
PROFILE=
STRACE=
STEER=
while getopts "s:i:r:d:Spt" opt; do
    case $opt in
        s) SERVER_KIND=$OPTARG ;;
        i) IDLE=$OPTARG ;;
        r) RATE=$OPTARG ;;
        d) SECS=$OPTARG ;;
        S) STEER=1 ;;
        p) PROFILE=1 ;;
        t) STRACE=1 ;;
        *) echo "usage: $0 [-s xdp|ixcp|tokio] [-i IDLE] [-r RATE] [-d SECONDS] [-S] [-p] [-t]" >&2; exit 2 ;;
    esac
done
W=$(cd "$(dirname "$0")/.." && pwd)
B=$W/target/release
IX_HTTP=${IX_HTTP:-$B/ix-http}
for bin in ixcp ix-http ixload; do
    [ -x "$B/$bin" ] || { echo "$B/$bin missing: cargo build --release -p ix-driver -p ix-example-http -p ix-benches --bins" >&2; exit 1; }
done
. "$W/scripts/ixcp-config.sh"
P=ixic$$
SERVER=10.77.0.1
D=$(mktemp -d); chmod 755 "$D"
SERVER_PID=
CP_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
    [ -n "$CP_PID" ] && kill "$CP_PID" 2>/dev/null
    wait 2>/dev/null
    "$W/scripts/testnet.sh" down -p $P >/dev/null
    if [ -n "${KEEP:-}" ]; then echo "output kept in $D"; else rm -rf "$D"; fi
}
trap cleanup EXIT
"$W/scripts/testnet.sh" up -p $P -q 1 >/dev/null
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(lscpu | grep 'Model name' | tr -s ' ')"

case $SERVER_KIND in
    xdp)
        nice -n -20 ip netns exec $P-srv taskset -c 0 env ${SERVER_ENV:-} "$IX_HTTP" --runtime ix --idle "$IDLE" \
            --backend "xdp:$P-s" --addr $SERVER/24 --port 8080 >"$D/server.log" 2>&1 &
        SERVER_PID=$!
        ;;
    ixcp)
        ip netns exec $P-cli ethtool -K $P-c gro on >/dev/null
        # No polling CPU: ixcp never asks the server to poll.
        ixcp_config "$D/ixcp.toml" "$D/ixcp.sock" $P-s $SERVER 8080 "" 0
        RUST_LOG=warn ixcp_start "$B/ixcp" $P-srv "$D/ixcp.toml" "$D/ixcp.sock" "$D/ixcp.log" 1
        CP_PID=$IXCP_PID
        ixcp_dataplane "$D/ixcp.sock" $SERVER 8080 "$D/server.log" taskset -c 0 env ${SERVER_ENV:-} "$IX_HTTP" --runtime ix --idle "$IDLE"
        SERVER_PID=$DATAPLANE_PID
        ;;
    tokio)
        nice -n -20 ip netns exec $P-srv taskset -c 0 env ${SERVER_ENV:-} "$IX_HTTP" --runtime tokio --addr $SERVER/24 --port 8080 \
            >"$D/server.log" 2>&1 &
        SERVER_PID=$!
        ;;
    *) echo "unknown server $SERVER_KIND" >&2; exit 2 ;;
esac
for _ in $(seq 100); do
    ip netns exec $P-cli curl -s -m 1 -o /dev/null http://$SERVER:8080/ && break
    sleep 0.1
done
[ -n "$STEER" ] && "$W/scripts/testnet.sh" steer -p $P -s 0 -c 1
# "cpu_ns voluntary_switches involuntary_switches" of the server's threads now.
server_counters() {
    local cpu=0 vol=0 invol=0 t
    for t in /proc/"$SERVER_PID"/task/*; do
        cpu=$((cpu + $(cut -d' ' -f1 "$t/schedstat")))
        vol=$((vol + $(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status")))
        invol=$((invol + $(awk '/^nonvoluntary_ctxt_switches/ {print $2}' "$t/status")))
    done
    echo "$cpu $vol $invol"
}
# Three windows of SECS under one load: the CPU time uninstrumented (per-task
# perf events would tax every context switch), the system calls counted by
# perf, then the profile or strace when asked.
WINDOWS=2
[ -n "$PROFILE$STRACE" ] && WINDOWS=3
nice -n -20 ip netns exec $P-cli taskset -c 1 "$B/ixload" --target $SERVER:8080 -c 32 --rate "$RATE" \
    --warmup 1s -d "$((WINDOWS * SECS + 1))s" --drain 0.5s --json "$D/load.json" -q &
LOAD=$!
sleep 1.5
before=$(server_counters); t0=$(date +%s.%N)
sleep "$SECS"
after=$(server_counters); t1=$(date +%s.%N)
EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_ppoll,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait2,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev,syscalls:sys_enter_recvmsg,syscalls:sys_enter_clock_gettime,syscalls:sys_enter_read,syscalls:sys_enter_write
perf stat -x, -e "$EVENTS" -p "$SERVER_PID" -o "$D/stat.csv" -- sleep "$SECS"
if [ -n "$STRACE" ]; then
    timeout -s INT "$SECS" strace -c -f -p "$SERVER_PID" -o "$D/strace.txt"
elif [ -n "$PROFILE" ]; then
    perf record -q -g -C 0 -o "$D/perf.data" -- sleep "$SECS" 2>/dev/null
fi
wait $LOAD
python3 - "$D/load.json" "$RATE" "$SERVER_KIND" "$IDLE" "$before" "$after" "$t0" "$t1" "$D/stat.csv" "$SECS" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
rate = report["throughput"]
before, after = [list(map(int, s.split())) for s in (sys.argv[5], sys.argv[6])]
wall = float(sys.argv[8]) - float(sys.argv[7])
served = rate * wall
print(f"server {sys.argv[3]} idle {sys.argv[4]}: offered {sys.argv[2]} req/s, served {rate:.0f} req/s, "
      f"p50 {report['latency_us']['p50']:.0f} us, p99 {report['latency_us']['p99']:.0f} us")
cpu_ns, vol, invol = (b - a for a, b in zip(before, after))
print(f"  server CPU (schedstat): {100 * cpu_ns / 1e9 / wall:.1f}% of a CPU, {cpu_ns / 1e3 / served:.2f} us per request; "
      f"switches per request: {vol / served:.3f} voluntary (blocks), {invol / served:.3f} involuntary")
served = rate * float(sys.argv[10])
for line in open(sys.argv[9]):
    f = line.strip().split(",")
    if len(f) < 3 or not f[0].isdigit() or f[0] == "0":
        continue
    print(f"  {f[2]:>34}: {f[0]:>9}  {int(f[0]) / served:6.3f} per request")
PY
[ -f "$D/strace.txt" ] && head -n 25 "$D/strace.txt"
if [ -n "$PROFILE" ]; then
    server_tid=$(perf script -i "$D/perf.data" -F comm,tid 2>/dev/null | awk '$1 ~ /^(ix|tokio)-core-0$/ {print $2}' \
        | sort | uniq -c | sort -rn | awk 'NR == 1 {print $2}')
    echo "the server thread's ($server_tid) samples, share of its own, with callees (children):"
    perf report -i "$D/perf.data" --children --tid "$server_tid" --percentage relative --sort symbol --stdio -g none \
        2>/dev/null | grep -E '^ +[0-9]' | head -n 60 | cut -c1-120 | tee "$D/top.txt"
    # All of CPU 0's samples (cpu-clock: idle is sampled too), each put in one
    # class by its thread and call chain, as time per request.
    perf script -i "$D/perf.data" -F comm,tid,ip,sym 2>/dev/null | python3 - "$server_tid" "$RATE" "$SECS" "$D/load.json" <<'PY'
import json, sys
server_tid, secs = sys.argv[1], float(sys.argv[3])
rate = json.load(open(sys.argv[4]))["throughput"]
classes = {}
def classify(comm, tid, frames):
    if any(f in ("handle_softirqs", "__do_softirq", "net_rx_action") for f in frames):
        where = "in the server's thread" if tid == server_tid else "elsewhere"
        return f"softirq ({where})"
    if comm.startswith("napi/"):
        return "NAPI thread (receive: XDP, AF_XDP copy)"
    if tid == server_tid:
        kernel = [f for f in frames if f.startswith(("__x64_sys_", "__se_sys_", "__do_sys_"))]
        if not kernel:
            return "server: user space"
        call = kernel[-1].split("sys_", 1)[1]
        if call in ("sendto", "writev", "write"):
            return f"server: {call} (transmit)"
        if call in ("ppoll", "epoll_wait", "epoll_pwait", "epoll_pwait2"):
            return f"server: {call} (block and wake-up)"
        return f"server: other system calls ({call} ...)"
    if comm == "swapper" or tid == "0":
        return "idle"
    return f"other processes and kernel threads"
samples = []
for block in sys.stdin.read().split("\n\n"):
    lines = [l for l in block.splitlines() if l.strip()]
    if not lines:
        continue
    head = lines[0].split()
    comm, tid = " ".join(head[:-1]), head[-1].rstrip(":")
    frames = [l.split()[1] if len(l.split()) > 1 else "" for l in lines[1:]]
    frames = [f.split("+")[0] for f in frames]
    samples.append(classify(comm, tid, frames))
total = len(samples) or 1
for c in samples:
    classes[c] = classes.get(c, 0) + 1
print(f"CPU 0, all {len(samples)} samples over {secs:.0f} s at {rate:.0f} req/s (share of CPU 0, us per request):")
for c, n in sorted(classes.items(), key=lambda kv: -kv[1]):
    print(f"  {c:<52} {100 * n / total:5.1f}%  {1e6 * secs * n / total / (rate * secs):6.2f}")
PY
fi
