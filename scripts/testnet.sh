#!/usr/bin/env bash
# The test network: two network namespaces joined by a veth pair.
#
#   scripts/testnet.sh up   [-p PREFIX] [-q QUEUES]
#   scripts/testnet.sh loss [-p PREFIX] -l PERCENT
#   scripts/testnet.sh relay [-p PREFIX]
#   scripts/testnet.sh steer [-p PREFIX] -s SERVER_CPU -c CLIENT_CPU
#   scripts/testnet.sh unsteer [-p PREFIX]
#   scripts/testnet.sh down [-p PREFIX]
#
# `up` creates namespaces PREFIX-srv and PREFIX-cli (PREFIX defaults to ixt), a
# veth pair PREFIX-s (in PREFIX-srv, 10.77.0.1/24) and PREFIX-c (in PREFIX-cli,
# 10.77.0.2/24) with QUEUES receive and transmit queues each (default 2), turns
# off transmit checksum offload, TSO, GSO and GRO on both ends (AF_XDP on veth
# receives frames whose checksums the sender left unfinished otherwise), and
# sets the links up. A dataplane under test runs in PREFIX-srv; load comes from
# PREFIX-cli. `down` removes both namespaces (and with them the veth pair); it
# succeeds when there is nothing to remove. Needs root, iproute2 and ethtool.
#
# `loss` drops PERCENT (an integer, 0-100) of the frames at random each way
# between the client namespace's kernel and the wire, with nftables
# (`numgen random` on netdev ingress hooks; this kernel has no netem and no tc
# gact). The drop must happen where the sending TCP cannot see it: a drop on the
# sender's own egress hook is reported back to Linux's TCP as a local failure
# (NET_XMIT_DROP) and retried at once, which is not loss. So the first `loss`
# moves the client address 10.77.0.2/24 to a veth pair inside PREFIX-cli
# (PREFIX-l, the host's end, and PREFIX-w), bridged (PREFIX-b) with PREFIX-c;
# frames are dropped as they arrive at PREFIX-w (sent by the client's kernel)
# and at PREFIX-l (sent to it). It also caps gso_max_segs at 1 on PREFIX-l and
# PREFIX-s, so that Linux's TCP builds one segment per packet and the rate
# applies per segment (GSO builds multi-segment packets even with offloads
# off). 0 removes the drops and keeps the bridge. Needs nft (Debian: nftables).
#
# `relay` (after `up`, instead of `loss`) makes room for a user-space relay and
# for two dataplanes side by side (the soak test, scripts/soak.sh):
#
#   PREFIX-cli: kernel 10.77.0.2 on PREFIX-l <-> PREFIX-w ~ relay ~ PREFIX-c
#   PREFIX-srv: PREFIX-s, PREFIX-D and PREFIX-E bridged (PREFIX-B);
#               PREFIX-D <-> PREFIX-d and PREFIX-E <-> PREFIX-e, one queue each,
#               for two dataplanes (each on its own address)
#
# Nothing joins PREFIX-w and PREFIX-c until a relay (benches' `wire-relay
# --a PREFIX-w --b PREFIX-c`, run in PREFIX-cli) copies frames between them.
# The server namespace's kernel keeps no address on the path.
#
# `steer` (after `up`, `loss` or `relay`) makes each side's receive work run on
# that side's CPU: what PREFIX-srv's devices receive on SERVER_CPU, what
# PREFIX-cli's receive on CLIENT_CPU. Without it, veth does the receiver's work
# in the sender's context: veth_xmit hands the frame to the peer device at
# once, on the sending CPU, so the client's whole TCP receive runs in softirq
# on the CPU of the server that transmitted (and is charged to the server),
# and the server's receive runs on the client's CPU. A real NIC interrupts the
# receiving host's CPU instead. veth passes a frame one of two ways (Linux
# 6.18, drivers/net/veth.c, veth_xmit and veth_forward_skb):
#   - the backlog (__netif_rx), when the receiving device has no NAPI
#     instance: no XDP program and GRO off, as `up` leaves it, so tokio's,
#     monoio's, nginx's, memcached's and the load generator's receive.
#     `steer` sets every receive queue's rps_cpus to the side's CPU: Receive
#     Packet Steering queues the frame to that CPU's backlog and wakes it with
#     an interprocessor interrupt; the whole receive (IP, TCP, the socket's
#     wake-up) then runs in that CPU's softirq. The sender keeps only the
#     enqueue and the interrupt.
#   - the device's NAPI instance, when an XDP program is attached (an IX
#     dataplane on `xdp:`) or GRO is on: veth_xdp_rx puts the frame on the
#     receive queue's ring and schedules the NAPI poll, which in softirq runs on
#     the sending CPU whatever rps_cpus says (the XDP program and the AF_XDP
#     copy run before RPS). `steer` turns on threaded NAPI
#     (/sys/class/net/DEV/threaded): each NAPI instance gets a kernel thread,
#     `napi/DEV-ID`, which `steer` pins to the side's CPU. veth creates its
#     NAPI instances when an XDP program is attached and deletes them when the
#     last one goes (GRO off), and the kernel refuses `threaded` on a device
#     with none; the setting then stays on the device, and each new instance
#     gets an unpinned thread. So run `steer` again after each XDP attach (the
#     harness does it after starting each server). A NAPI thread costs a
#     context switch per wake-up where a NIC's interrupt runs the poll in
#     softirq: IX's receive on `xdp:` (native mode) pays that switch, and on
#     `xdp:IFACE,mode=generic` it goes through the backlog (and RPS) instead.
# It prints, per device, the mask written and the NAPI threads pinned.
# `unsteer` puts every device back: rps_cpus 0, threaded NAPI off.
set -euo pipefail

usage() {
    echo "usage: $0 up|loss|relay|steer|unsteer|down [-p PREFIX] [-q QUEUES] [-l PERCENT] [-s CPU -c CPU]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
action=$1
shift
prefix=ixt
queues=2
loss_percent=
server_cpu=
client_cpu=
while getopts "p:q:l:s:c:" opt; do
    case $opt in
        p) prefix=$OPTARG ;;
        q) queues=$OPTARG ;;
        l) loss_percent=$OPTARG ;;
        s) server_cpu=$OPTARG ;;
        c) client_cpu=$OPTARG ;;
        *) usage ;;
    esac
done

# Interface names are at most 15 bytes: PREFIX-s must fit.
if [ ${#prefix} -gt 13 ] || ! [[ $prefix =~ ^[A-Za-z0-9_.-]+$ ]]; then
    echo "$0: PREFIX must be 1-13 characters of [A-Za-z0-9_.-], not '$prefix'" >&2
    exit 2
fi
if ! [[ $queues =~ ^[0-9]+$ ]] || [ "$queues" -lt 1 ] || [ "$queues" -gt 64 ]; then
    echo "$0: QUEUES must be a number from 1 to 64, not '$queues'" >&2
    exit 2
fi

srv=$prefix-srv
cli=$prefix-cli

down() {
    for ns in "$srv" "$cli"; do
        if ip netns list | grep -qw -- "$ns"; then
            ip netns del "$ns"
        fi
    done
}

offloads_off() {
    local ns=$1 dev=$2
    ip netns exec "$ns" ethtool -K "$dev" tx off tso off gso off gro off >/dev/null 2>&1 ||
        ip netns exec "$ns" ethtool -K "$dev" tx off >/dev/null
}

up() {
    command -v ethtool >/dev/null || { echo "$0: ethtool is missing (apt-get install ethtool)" >&2; exit 1; }
    down
    ip netns add "$srv"
    ip netns add "$cli"
    ip link add "$prefix-s" numtxqueues "$queues" numrxqueues "$queues" netns "$srv" type veth \
        peer name "$prefix-c" numtxqueues "$queues" numrxqueues "$queues" netns "$cli"
    ip -n "$srv" addr add 10.77.0.1/24 dev "$prefix-s"
    ip -n "$cli" addr add 10.77.0.2/24 dev "$prefix-c"
    offloads_off "$srv" "$prefix-s"
    offloads_off "$cli" "$prefix-c"
    for ns in "$srv" "$cli"; do
        ip -n "$ns" link set lo up
    done
    ip -n "$srv" link set "$prefix-s" up
    ip -n "$cli" link set "$prefix-c" up
}

# The bridge of `loss`: the client's kernel behind PREFIX-l <-> PREFIX-w.
client_bridge() {
    ip -n "$cli" link show "$prefix-b" >/dev/null 2>&1 && return 0
    ip -n "$cli" link add "$prefix-l" type veth peer name "$prefix-w"
    ip -n "$cli" link add "$prefix-b" type bridge
    ip -n "$cli" addr del 10.77.0.2/24 dev "$prefix-c"
    ip -n "$cli" link set "$prefix-c" master "$prefix-b"
    ip -n "$cli" link set "$prefix-w" master "$prefix-b"
    ip -n "$cli" addr add 10.77.0.2/24 dev "$prefix-l"
    offloads_off "$cli" "$prefix-l"
    offloads_off "$cli" "$prefix-w"
    for dev in "$prefix-w" "$prefix-l" "$prefix-b"; do
        ip -n "$cli" link set "$dev" up
    done
}

relay() {
    ip -n "$cli" link add "$prefix-l" type veth peer name "$prefix-w"
    ip -n "$cli" addr del 10.77.0.2/24 dev "$prefix-c"
    ip -n "$cli" addr add 10.77.0.2/24 dev "$prefix-l"
    ip -n "$srv" addr del 10.77.0.1/24 dev "$prefix-s"
    ip -n "$srv" link add "$prefix-B" type bridge
    ip -n "$srv" link set "$prefix-s" master "$prefix-B"
    for port in D E; do
        local dataplane
        dataplane=$prefix-$(echo "$port" | tr DE de)
        ip -n "$srv" link add "$prefix-$port" numtxqueues 1 numrxqueues 1 type veth \
            peer name "$dataplane" numtxqueues 1 numrxqueues 1
        ip -n "$srv" link set "$prefix-$port" master "$prefix-B"
        offloads_off "$srv" "$prefix-$port"
        offloads_off "$srv" "$dataplane"
        ip -n "$srv" link set "$prefix-$port" up
        ip -n "$srv" link set "$dataplane" up
    done
    ip -n "$srv" link set "$prefix-B" up
    for dev in "$prefix-l" "$prefix-w"; do
        offloads_off "$cli" "$dev"
        ip -n "$cli" link set "$dev" gso_max_segs 1
        ip -n "$cli" link set "$dev" up
    done
}

loss() {
    if ! [[ $loss_percent =~ ^[0-9]+$ ]] || [ "$loss_percent" -gt 100 ]; then
        echo "$0: loss needs -l PERCENT, an integer from 0 to 100, not '$loss_percent'" >&2
        exit 2
    fi
    command -v nft >/dev/null || { echo "$0: nft is missing (apt-get install nftables)" >&2; exit 1; }
    client_bridge
    ip -n "$srv" link set "$prefix-s" gso_max_segs 1
    ip -n "$cli" link set "$prefix-l" gso_max_segs 1
    ip netns exec "$cli" nft delete table netdev testnet_loss 2>/dev/null || true
    [ "$loss_percent" -gt 0 ] || return 0
    ip netns exec "$cli" nft -f - <<EOF
table netdev testnet_loss {
    chain from_client {
        type filter hook ingress device "$prefix-w" priority 0;
        numgen random mod 100 < $loss_percent counter drop
    }
    chain to_client {
        type filter hook ingress device "$prefix-l" priority 0;
        numgen random mod 100 < $loss_percent counter drop
    }
}
EOF
}

# The rps_cpus bitmap of CPU $1: hexadecimal, in comma-separated 32-bit words.
cpu_mask() {
    local cpu=$1 mask i
    mask=$(printf '%x' $((1 << (cpu % 32))))
    for ((i = 0; i < cpu / 32; i++)); do
        mask=$mask,00000000
    done
    echo "$mask"
}

# Steers the receive work of every device of namespace $1 but lo to CPU $2
# (an empty CPU: back to the default, where it was sent).
steer_namespace() {
    local ns=$1 cpu=$2 mask=0 threaded=0 dev queue pid pinned name
    if [ -n "$cpu" ]; then
        mask=$(cpu_mask "$cpu")
        threaded=1
    fi
    for dev in $(ip -n "$ns" -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
        [ "$dev" = lo ] && continue
        # sysfs shows the devices of the namespace it is mounted in: `ip netns exec` mounts the right one.
        ip netns exec "$ns" sh -c 'for queue in /sys/class/net/$1/queues/rx-*; do echo "$2" > "$queue/rps_cpus"; done' \
            steer "$dev" "$mask"
        # Refused (EOPNOTSUPP) while the device has no NAPI instance: see the header.
        ip netns exec "$ns" sh -c 'echo "$2" > "/sys/class/net/$1/threaded"' steer "$dev" "$threaded" 2>/dev/null || true
        pinned=
        if [ -n "$cpu" ]; then
            # Kernel threads show their whole name in comm (not cut at 15 bytes).
            for pid in $(pgrep -x "napi/${dev//./\\.}-[0-9]+" 2>/dev/null || true); do
                taskset -p -c "$cpu" "$pid" >/dev/null
                name=$(cat "/proc/$pid/comm" 2>/dev/null || echo "$pid")
                pinned="$pinned $name"
            done
        fi
        echo "$ns $dev: rps_cpus $mask, threaded NAPI $(ip netns exec "$ns" cat "/sys/class/net/$dev/threaded"),${pinned:- no} NAPI thread pinned${cpu:+ to CPU $cpu}"
    done
}

steer() {
    local cpus
    cpus=$(nproc --all)
    for cpu in "$server_cpu" "$client_cpu"; do
        if ! [[ $cpu =~ ^[0-9]+$ ]] || [ "$cpu" -ge "$cpus" ]; then
            echo "$0: steer needs -s SERVER_CPU -c CLIENT_CPU, CPUs from 0 to $((cpus - 1)), not '$cpu'" >&2
            exit 2
        fi
    done
    steer_namespace "$srv" "$server_cpu"
    steer_namespace "$cli" "$client_cpu"
}

unsteer() {
    steer_namespace "$srv" ""
    steer_namespace "$cli" ""
}

case $action in
    loss) loss ;;
    steer) steer ;;
    unsteer) unsteer ;;
    relay) relay ;;
    up)
        # A failure half-way leaves nothing behind.
        trap 'down' ERR
        up
        ;;
    down) down ;;
    *) usage ;;
esac
