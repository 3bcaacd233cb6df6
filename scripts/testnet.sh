#!/usr/bin/env bash
# The test network: two network namespaces joined by a veth pair.
#
#   scripts/testnet.sh up   [-p PREFIX] [-q QUEUES]
#   scripts/testnet.sh loss [-p PREFIX] -l PERCENT
#   scripts/testnet.sh relay [-p PREFIX]
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
set -euo pipefail

usage() {
    echo "usage: $0 up|loss|relay|down [-p PREFIX] [-q QUEUES] [-l PERCENT]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
action=$1
shift
prefix=ixt
queues=2
loss_percent=
while getopts "p:q:l:" opt; do
    case $opt in
        p) prefix=$OPTARG ;;
        q) queues=$OPTARG ;;
        l) loss_percent=$OPTARG ;;
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

case $action in
    loss) loss ;;
    relay) relay ;;
    up)
        # A failure half-way leaves nothing behind.
        trap 'down' ERR
        up
        ;;
    down) down ;;
    *) usage ;;
esac
