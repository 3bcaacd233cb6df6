#!/usr/bin/env bash
# A SYN flood against ix-http on xdp (one core, CPU 0) and tokio-http (Linux's
# TCP, net.ipv4.tcp_syncookies=1 in the server namespace), one after the other
# in one run: hping3 -S --rand-source from the client namespace (CPU 1) for
# SECONDS at RATE SYNs per second (`flood`: as fast as hping3 goes), while
# `ixload --connection-per-request` (CPU 1) opens a new connection for each
# request at LEGIT requests per second.
#
#   scripts/syn-flood.sh [-d SECONDS] [-r RATE|flood] [-l LEGIT] [-s ix|tokio|both] [-p PREFIX] [-b IX_HTTP]
#
# Prints per server: the flood rate achieved (SYNs hping3 counted, and frames
# the client's veth end sent, per second), the legitimate requests that
# succeeded (share of those scheduled) with their connect-time p50/p99/max and
# errors, SYN cookies sent / validated / failed and listen overflows (IX: the
# core's counters; Linux: nstat's TcpExt counters of the server namespace),
# the server's resident memory sampled every second (first, peak, last), and
# the server process's user and system CPU over the flood (Linux's receive
# work for tokio-http runs in hping3's context on veth: not in that figure).
#
# The server namespace's default route is the client address: SYN-ACKs to the
# random sources go to the client namespace, whose kernel drops them (no
# forwarding), as replies to spoofed addresses vanish on a real network.
# Needs root, hping3, ethtool, iproute2; builds nothing (cargo build --release
# -p ix-example-http -p ix-benches first). Wrap measurements in bench-prio.
# KEEP_DIR=DIR keeps the raw outputs there (DIR/ix, DIR/tokio: the server's
# output, ixload's JSON, hping3's output, the RSS samples in KiB).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=30 rate=flood legit=200 servers=both prefix=ixsf bin=$PWD/target/release/ix-http
usage() {
    echo "usage: $0 [-d SECONDS] [-r RATE|flood] [-l LEGIT] [-s ix|tokio|both] [-p PREFIX] [-b IX_HTTP]" >&2
    exit 2
}
while getopts "d:r:l:s:p:b:" opt; do
    case $opt in
        d) duration=$OPTARG ;;
        r) rate=$OPTARG ;;
        l) legit=$OPTARG ;;
        s) servers=$OPTARG ;;
        p) prefix=$OPTARG ;;
        b) bin=$OPTARG ;;
        *) usage ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (network namespaces, AF_XDP)" >&2; exit 2; }
command -v hping3 >/dev/null || { echo "$0: hping3 is missing (apt-get install hping3)" >&2; exit 1; }
[[ $duration =~ ^[0-9]+$ ]] && [ "$duration" -ge 1 ] || usage
[[ $legit =~ ^[0-9]+$ ]] && [ "$legit" -ge 1 ] || usage
case $servers in ix) list=(ix) ;; tokio) list=(tokio) ;; both) list=(ix tokio) ;; *) usage ;; esac
if [ "$rate" = flood ]; then
    pace=(--flood)
elif [[ $rate =~ ^[0-9]+$ ]] && [ "$rate" -ge 1 ]; then
    pace=(-i "u$((1000000 / rate))")
else
    usage
fi

load=${IXLOAD:-$PWD/target/release/ixload}
top=${KEEP_DIR:-$(mktemp -d)}
pids=()
# A started process and its descendants (`ip netns exec`, `taskset` and
# `timeout` may stay as parents of the program they run).
tree() { local p; for p in "$@"; do echo "$p"; tree $(pgrep -P "$p"); done; }
stop_all() {
    local pid
    for pid in $(tree "${pids[@]}"); do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
cleanup() {
    stop_all
    scripts/testnet.sh down -p "$prefix"
    [ -n "${KEEP_DIR:-}" ] || rm -rf "$top"
}
trap cleanup EXIT
in_cli() { ip netns exec "$prefix-cli" "$@"; }
in_srv() { ip netns exec "$prefix-srv" "$@"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# User and system CPU ticks of a process (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12, $13}'; }
tx_frames() { in_cli cat "/sys/class/net/$prefix-c/statistics/tx_packets"; }

echo "syn-flood: ${duration} s at rate ${rate}, legitimate ${legit}/s, $(date -u +%FT%TZ)," \
    "commit $(git rev-parse --short HEAD), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for server in "${list[@]}"; do
    out=$top/$server
    mkdir -p "$out"
    scripts/testnet.sh up -p "$prefix" -q 1
    ip -n "$prefix-srv" route add default via 10.77.0.2
    in_srv sysctl -qw net.ipv4.tcp_syncookies=1
    if [ "$server" = ix ]; then
        args=(--backend "xdp:$prefix-s" --addr 10.77.0.1/24 --gateway 10.77.0.2 --stats-every-ms 1000)
    else
        args=(--runtime tokio --addr 10.77.0.1/24)
    fi
    ip netns exec "$prefix-srv" taskset -c 0 "$bin" "${args[@]}" >"$out/server" 2>&1 &
    # `ip netns exec` and `taskset` exec: $! is the server itself.
    pids+=($!)
    server_pid=$!
    for _ in $(seq 100); do grep -qs "^listening" "$out/server" && break; sleep 0.1; done
    grep -q "^listening" "$out/server" || { cat "$out/server" >&2; exit 1; }
    tx_before=$(tx_frames)
    in_cli taskset -c 1 "$load" --target 10.77.0.1:8080 --connection-per-request -c 256 --rate "$legit" \
        --warmup 1s -d "${duration}s" --drain 4s --connect-timeout 4s --json "$out/legit.json" 2>"$out/legit" &
    pids+=($!)
    legit_pid=$!
    sleep 1
    in_cli taskset -c 1 timeout -s INT "$duration" hping3 -S --rand-source -p 8080 "${pace[@]}" 10.77.0.1 \
        >"$out/hping" 2>&1 &
    pids+=($!)
    flood_pid=$!
    : >"$out/rss"
    read -r user0 sys0 < <(cpu_ticks "$server_pid")
    while kill -0 "$flood_pid" 2>/dev/null; do
        rss_kb "$server_pid" >>"$out/rss"
        sleep 1
    done
    wait "$flood_pid" || true
    tx_after=$(tx_frames)
    read -r user1 sys1 < <(cpu_ticks "$server_pid")
    wait "$legit_pid" || true
    rss_kb "$server_pid" >>"$out/rss"
    syns=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' "$out/hping")
    echo "== $server: flood ${syns:-?} SYNs in ${duration} s ($(( ${syns:-0} / duration ))/s by hping3;" \
        "$(( (tx_after - tx_before) / duration ))/s frames out of the client's veth)"
    python3 - "$out/legit.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
c, e = r["connect_us"], r["errors"]
share = 100.0 * r["succeeded"] / r["scheduled"] if r["scheduled"] else 0.0
print(f"   legitimate: {r['succeeded']} of {r['scheduled']} succeeded ({share:.2f}%); connect ms p50 {c['p50']/1000:.2f}"
      f" p99 {c['p99']/1000:.2f} max {c['max']/1000:.2f} ({r['connects']} connects); request ms p99"
      f" {r['latency_us']['p99']/1000:.2f}; errors connect {e['connect']} io {e['io']} protocol {e['protocol']}"
      f" replies {e['error_replies']}; unsent {r['unsent']} unanswered {r['unanswered']}")
EOF
    echo "   server RSS KiB: first $(head -1 "$out/rss"), peak $(sort -n "$out/rss" | tail -1), last $(tail -1 "$out/rss")" \
        "($(wc -l <"$out/rss") samples, one a second); server CPU during the flood: user" \
        "$(((user1 - user0) * 100 / $(getconf CLK_TCK) / duration))%, system $(((sys1 - sys0) * 100 / $(getconf CLK_TCK) / duration))%"
    if [ "$server" = ix ]; then
        grep "^stats" "$out/server" | tail -1 | tr ' ' '\n' |
            grep -E "^(conns|pool_free|pool_exhausted|rx|tx|passive_opens|syncookies_[a-z]*|listen_overflows)=" |
            paste -sd' ' | sed 's/^/   ix counters: /'
    else
        echo "   linux counters: $(in_srv nstat -az TcpExtSyncookiesSent TcpExtSyncookiesRecv TcpExtSyncookiesFailed \
            TcpExtListenOverflows TcpExtListenDrops TcpExtTCPReqQFullDoCookies TcpPassiveOpens |
            awk 'NR>1 && $1 !~ /^#/ {printf "%s=%s ", $1, $2}')"
    fi
    stop_all
    scripts/testnet.sh down -p "$prefix"
done
