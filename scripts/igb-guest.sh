#!/bin/sh
# Runs inside the igb end-to-end guest, chrooted into the host's root (see scripts/igb-e2e.sh): serves on the
# emulated NIC in two phases that the host drives through files in /tmp/out (shared with the host):
#   1. ix-http on one core polling two queues (RSS spreads the host's flows over both rings, which receive
#      into the core's one region); the host pings and curls it, then writes http.done; the server is SIGKILLed,
#      so phase 2 also checks that the device comes back after a killed owner.
#   2. the echo server on two queues and two cores; the host sends its streams, then writes echo.done; the
#      server stops on SIGINT and prints which core served what, which the host reads back.
NIC=$1
OUT=/tmp/out
. "$OUT/env"
# Waits for the host's file $1 while server $2 runs; a server that dies is reported to the host (failed).
wait_for() {
    while [ ! -e "$OUT/$1" ]; do
        if ! kill -0 "$2" 2>/dev/null; then
            echo "guest: the server stopped before $1" >"$OUT/failed"
            return 1
        fi
        sleep 1
    done
}

echo "guest: phase 1: ix-http on igb:$NIC,queues=2 (one core)"
"$REPO/target/release/ix-http" --backend "igb:$NIC,queues=2" --cores 1 --addr "$GUEST_IP/24" --port 8080 \
    >"$OUT/http.log" 2>&1 &
pid=$!
wait_for http.done "$pid" || exit 1
kill -KILL "$pid"
wait "$pid"
echo "guest: ix-http killed ($?)"

echo "guest: phase 2: echo on igb:$NIC,queues=2"
"$REPO/target/release/examples/echo_server" --backend "igb:$NIC,queues=2" --cores 2 --addr "$GUEST_IP/24" \
    --port 7 >"$OUT/echo.log" 2>&1 &
pid=$!
wait_for echo.done "$pid" || exit 1
kill -INT "$pid"
wait "$pid"
echo "echo_server exit $?" >>"$OUT/echo.log"
touch "$OUT/guest.done"
