#!/usr/bin/env bash
# The test network: two network namespaces joined by a veth pair.
#
#   scripts/testnet.sh up   [-p PREFIX] [-q QUEUES]
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
set -euo pipefail

usage() {
    echo "usage: $0 up|down [-p PREFIX] [-q QUEUES]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
action=$1
shift
prefix=ixt
queues=2
while getopts "p:q:" opt; do
    case $opt in
        p) prefix=$OPTARG ;;
        q) queues=$OPTARG ;;
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

case $action in
    up)
        # A failure half-way leaves nothing behind.
        trap 'down' ERR
        up
        ;;
    down) down ;;
    *) usage ;;
esac
