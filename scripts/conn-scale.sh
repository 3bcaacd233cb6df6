#!/usr/bin/env bash
# Connection scale: ix-http on xdp (one core) or tokio-http (CPU 0), holding N
# client connections from the client namespace, of which PERCENT are active
# (open-loop load at RATE) and the rest idle. Prints per N: the server's
# resident memory once every connection is established (and, for IX, its
# pool), the active client's summary (throughput, latency percentiles,
# errors), and for IX the last counter line.
#
#   scripts/conn-scale.sh [-r RATE] [-d SECONDS] [-a PERCENT] [-R CONNECT_RATE] [-p PREFIX] [-s ix|tokio]
#                         [-b IX_HTTP] [--] N...
#
# One process holds at most 20,000 descriptors here (a hard limit), so the
# idle connections come from several `ixload` processes of at most
# HOLDER_CONNS each, and tokio-http runs as several processes sharing the
# port (SO_REUSEPORT), all on CPU 0. A client address has about 64k ports:
# the holders use extra client addresses 10.77.0.10 and up, three holders
# each. The active connections (at most 19,000) come from one ixload on
# 10.77.0.2, started once the idle ones are established. -a 100 (default) is
# one ixload with all N connections active (N <= 19,000). Every ixload opens
# its connections at CONNECT_RATE per second (`ixload --connect-rate`,
# default 10,000), as a population of clients would; -R 0 opens each
# ixload's connections all at once (a burst of up to 19,000 SYNs).
#
# ix-http's header and idle timeouts are raised to an hour (an idle
# connection is not closed during the run); SERVER_ARGS (environment) are
# added to the server's arguments. Needs root, ethtool, iproute2; builds
# nothing (cargo build --release -p ix-example-http -p ix-benches first; IXLOAD
# names another ixload binary).
#
# Besides the server's RSS it prints the kernel's share, which tokio-http's
# connections cost outside its RSS: the server namespace's TCP sockets with
# the machine's TCP buffer pages (/proc/net/sockstat), and the machine's slab
# growth (both namespaces' sockets, and whatever else the machine did). For
# IX, the core's counters after the set-up and after the load, and the
# server veth's XDP counters with the AF_XDP socket's own (receive ring full,
# fill ring empty: scripts/xdp-socket-stats.py).
set -euo pipefail
cd "$(dirname "$0")/.."

rate=10000 duration=6 percent=100 prefix=ixcs server=ix bin=$PWD/target/release/ix-http connect_rate=10000
while getopts "r:d:a:R:p:s:b:" opt; do
    case $opt in
        r) rate=$OPTARG ;;
        d) duration=$OPTARG ;;
        a) percent=$OPTARG ;;
        R) connect_rate=$OPTARG ;;
        p) prefix=$OPTARG ;;
        s) server=$OPTARG ;;
        b) bin=$OPTARG ;;
        *) echo "usage: $0 [-r RATE] [-d SECONDS] [-a PERCENT] [-R CONNECT_RATE] [-p PREFIX] [-s ix|tokio] [-b IX_HTTP] N..." >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "$0: give at least one connection count" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (network namespaces, AF_XDP)" >&2; exit 2; }
case $server in ix | tokio) ;; *) echo "$0: -s ix or tokio" >&2; exit 2 ;; esac

readonly HOLDER_CONNS=19000 TOKIO_CONNS_PER_PROCESS=15000 HOLDERS_PER_ADDRESS=3
load=${IXLOAD:-$PWD/target/release/ixload}
pacing=()
[ "$connect_rate" = 0 ] || pacing=(--connect-rate "$connect_rate")
out=$(mktemp -d)
pids=()
# A started process and its descendants (`ip netns exec` and `taskset` may
# stay as parents of the program they run).
tree() { local p; for p in "$@"; do echo "$p"; tree $(pgrep -P "$p"); done; }
stop_all() {
    local all
    all=$(tree "${pids[@]}")
    for pid in $all; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
cleanup() {
    stop_all
    scripts/testnet.sh down -p "$prefix"
    rm -rf "$out"
}
trap cleanup EXIT
ulimit -n 20000
in_cli() { ip netns exec "$prefix-cli" "$@"; }
established() { in_cli ss -s | sed -n 's/.*estab \([0-9]*\).*/\1/p'; }
slab_kb() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
# TCP sockets in use and their buffer pages, in the server namespace.
server_sockstat() { ip netns exec "$prefix-srv" awk '/^TCP:/ {print "inuse " $3 ", " $11 * 4 " KiB of TCP buffers machine-wide"}' /proc/net/sockstat; }
# The kernel's counters of ix-http's AF_XDP sockets, on one line.
xdp_socket_counters() {
    local pid
    for pid in $(tree "${server_pids[@]}"); do
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = ix-http ] && scripts/xdp-socket-stats.py "$pid" | tr '\n' ' '
    done
    echo
}
rss_kb() {
    local kb=0 pid
    for pid in $(tree "$@"); do kb=$((kb + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0))); done
    echo "$kb"
}

for conns in "$@"; do
    active=$((conns * percent / 100))
    [ "$active" -ge 1 ] || active=1
    idle=$((conns - active))
    [ "$active" -le "$HOLDER_CONNS" ] || { echo "$0: $active active connections: at most $HOLDER_CONNS" >&2; exit 2; }
    scripts/testnet.sh up -p "$prefix" -q 1
    in_cli sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
    ip netns exec "$prefix-srv" sysctl -qw net.core.somaxconn=65535
    holders=$(((idle + HOLDER_CONNS - 1) / HOLDER_CONNS))
    for a in $(seq 0 $(((holders + HOLDERS_PER_ADDRESS - 1) / HOLDERS_PER_ADDRESS - 1))); do
        ip -n "$prefix-cli" addr add "10.77.0.$((10 + a))/24" dev "$prefix-c"
    done
    timeouts=(--header-timeout-ms 3600000 --idle-timeout-ms 3600000)
    server_pids=()
    if [ "$server" = ix ]; then
        ip netns exec "$prefix-srv" taskset -c 0 "$bin" --backend "xdp:$prefix-s" --addr 10.77.0.1/24 \
            --stats-every-ms 1000 --max-conns 1000000 --backlog 65535 "${timeouts[@]}" ${SERVER_ARGS:-} \
            >"$out/server0" 2>&1 &
        server_pids+=($!)
    else
        for i in $(seq 0 $(((conns + TOKIO_CONNS_PER_PROCESS - 1) / TOKIO_CONNS_PER_PROCESS - 1))); do
            ip netns exec "$prefix-srv" taskset -c 0 "$bin" --runtime tokio --addr 10.77.0.1/24 \
                --max-conns 1000000 --backlog 65535 "${timeouts[@]}" ${SERVER_ARGS:-} >"$out/server$i" 2>&1 &
            server_pids+=($!)
        done
    fi
    pids+=("${server_pids[@]}")
    for _ in $(seq 100); do grep -q "^listening" "$out/server0" && break; sleep 0.1; done
    sleep 1
    rss0=$(rss_kb "${server_pids[@]}") slab0=$(slab_kb)
    # Holders start one after the other (a burst of 19,000 SYNs is a flood of
    # its own): each waits until its connections are established, or until
    # STALL_S seconds (environment, default 60) pass without progress.
    left=$idle want=0 started=$(date +%s)
    for h in $(seq 0 $((holders - 1))); do
        n=$((left < HOLDER_CONNS ? left : HOLDER_CONNS)) left=$((left - n)) want=$((want + n))
        source=10.77.0.$((10 + h / HOLDERS_PER_ADDRESS))
        in_cli taskset -c 1 "$load" --target 10.77.0.1:8080 --source "$source" -c "$n" --rate 1 -d 3600s \
            --connect-timeout 130s "${pacing[@]}" >/dev/null 2>"$out/holder$h" &
        pids+=($!)
        last=-1 still=0
        while now=$(established) && [ "$now" -lt "$want" ] && [ "$still" -lt $((${STALL_S:-60} / 2)) ]; do
            if [ "$now" -eq "$last" ]; then still=$((still + 1)); else still=0 last=$now; fi
            sleep 2
        done
        echo "   holder $h ($source): $now of $want established after $(($(date +%s) - started)) s" \
            "$([ "$server" = ix ] && xdp_socket_counters | grep -o 'rx_ring_full=[0-9]*')"
    done
    open_s=$(($(date +%s) - started))
    rss=$(rss_kb "${server_pids[@]}")
    pool=$(grep "^stats" "$out/server0" | tail -1 | grep -o "pool_free=[0-9/]*" || echo "pool_free=-")
    est=$(established)
    slab=$(slab_kb)
    echo "== $server, $conns connections ($idle idle, $active active), $est established after ${open_s} s:" \
        "server RSS $((rss0 / 1024)) MB before, $((rss / 1024)) MB with them ($(((rss - rss0) * 1024 / (est > 0 ? est : 1))) B per" \
        "connection), $pool"
    echo "   kernel: server namespace TCP $(server_sockstat); slab +$(((slab - slab0) / 1024)) MB" \
        "($(((slab - slab0) * 1024 / (est > 0 ? est : 1))) B per connection, both namespaces)"
    if [ "$server" = ix ]; then
        grep "^stats" "$out/server0" | tail -1 | sed 's/^/   after set-up: /' || true
        echo "   after set-up, AF_XDP socket: $(xdp_socket_counters)"
    fi
    in_cli taskset -c 1 "$load" --target 10.77.0.1:8080 --source 10.77.0.2 -c "$active" --rate "$rate" -d "${duration}s" \
        "${pacing[@]}" 2>"$out/load" >/dev/null || true
    echo "   active: $active connections, $rate/s offered, ${duration} s; server RSS $(($(rss_kb "${server_pids[@]}") / 1024)) MB;" \
        "$(established) established"
    grep -v WARN "$out/load" | tail -5
    grep "^stats" "$out/server0" | tail -1 || true
    if [ "$server" = ix ]; then
        echo "   server veth XDP counters: $(ip netns exec "$prefix-srv" ethtool -S "$prefix-s" | awk '$2 != 0 && /xdp|drops/' | tr -s ' \n' ' ')"
        echo "   AF_XDP socket: $(xdp_socket_counters)"
    fi
    stop_all
    scripts/testnet.sh down -p "$prefix"
done
