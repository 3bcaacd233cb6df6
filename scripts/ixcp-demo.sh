#!/usr/bin/env bash
# ixcp by hand: the ixcp daemon owns one veth end of a test network; ix-http
# (port 8080) and ix-kv (port 11211) run as nobody with no capabilities and a
# kernel HTTP server (python3, port 7001) on the same address; curl, a memcached
# set/get, curl to the kernel and ping from the client namespace; ixctl's list,
# live view and share change; then all stop.
#
#   cargo build --release -p ix-driver -p ix-example-http -p ix-example-kv --bins
#   scripts/ixcp-demo.sh          (root; needs iproute2, ethtool, setpriv, curl, python3)
set -u
P=ixdemo$$
W=$(cd "$(dirname "$0")/.." && pwd)
cd "$W"
scripts/testnet.sh up -p $P -q 1 >/dev/null
ip netns exec $P-cli ethtool -K $P-c gro on >/dev/null
D=$(mktemp -d); chmod 755 $D
. "$W/scripts/ixcp-config.sh"
ixcp_config $D/ixcp.toml $D/ixcp.sock $P-s 10.77.0.1 "8080, 11211" 1 ""
RUST_LOG_STYLE=never ip netns exec $P-srv $W/target/release/ixcp --config $D/ixcp.toml 2>$D/ixcp.log &
CP=$!
sleep 1
setpriv --reuid=65534 --regid=65534 --clear-groups $W/target/release/ix-http --runtime ix --backend ixcp:$D/ixcp.sock,ports=8080 --addr 10.77.0.1/24 --port 8080 >$D/http.log 2>&1 &
H=$!
setpriv --reuid=65534 --regid=65534 --clear-groups $W/target/release/ix-kv --runtime ix --backend ixcp:$D/ixcp.sock,ports=11211 --addr 10.77.0.1/24 --port 11211 -t 1 >$D/kv.log 2>&1 &
K=$!
ip netns exec $P-srv python3 -m http.server 7001 --bind 10.77.0.1 >/dev/null 2>&1 &
PY=$!
sleep 2
echo "CapEff http: $(grep CapEff /proc/$H/status)  kv: $(grep CapEff /proc/$K/status)"
echo "--- ix-http:"; ip netns exec $P-cli curl -s -m 5 http://10.77.0.1:8080/ ; echo
echo "--- ix-kv:"; ip netns exec $P-cli python3 - <<'PY'
import socket
s = socket.create_connection(("10.77.0.1", 11211), timeout=5)
s.sendall(b"set k 0 0 5\r\nhello\r\nget k\r\n")
import time; time.sleep(0.3)
print(s.recv(4096))
PY
echo "--- kernel:"; ip netns exec $P-cli curl -s -m 5 -o /dev/null -w "%{http_code}\n" http://10.77.0.1:7001/
echo "--- ping:"; ip netns exec $P-cli ping -c 2 -i 0.2 -W 2 10.77.0.1 | tail -2 | head -1
echo "--- ixctl list:"; target/release/ixctl --socket $D/ixcp.sock list
echo "--- ixctl top (one refresh, under curl load):"
ip netns exec $P-cli sh -c 'for i in $(seq 300); do curl -s -o /dev/null http://10.77.0.1:8080/; done' &
sleep 1; target/release/ixctl --socket $D/ixcp.sock top --count 2 --interval 500 | tail -n +5; wait $!
PORT=$(target/release/ixctl --socket $D/ixcp.sock list --json | python3 -c 'import json,sys; print([d["port_name"] for d in json.load(sys.stdin)["dataplanes"] if d["ports"]==[8080]][0])')
echo "--- ixctl set-share $PORT 0, then 2 (over the grant's max_cpus = 1), as nobody:"
target/release/ixctl --socket $D/ixcp.sock set-share $PORT 0
target/release/ixctl --socket $D/ixcp.sock set-share $PORT 2
setpriv --reuid=65534 --regid=65534 --clear-groups target/release/ixctl --socket $D/ixcp.sock set-share $PORT 1
kill $H $K $CP $PY; wait 2>/dev/null
echo "--- ixcp's log:"; cut -c1-200 $D/ixcp.log
echo "--- virtual ports left after ixcp stopped: $(ip -n $P-srv link show | grep -c ixdp)"
scripts/testnet.sh down -p $P; rm -rf $D
