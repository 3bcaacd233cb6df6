#!/usr/bin/env bash
# End-to-end test of the `igb` backend in an emulated machine: a QEMU guest (TCG, q35, a virtual Intel IOMMU,
# one emulated 82576) boots a Debian kernel and a busybox initramfs, binds the NIC to vfio-pci and runs the
# project's binaries from the host's root (shared read-only over 9p) against a TAP device in a namespace this
# script creates. The guest's checks are in scripts/igb-guest.sh; the host's side is here.
#
# usage: scripts/igb-e2e.sh [--probe]     (root; builds what it needs from Debian's packages)
#   --probe   boot the guest, bind the NIC to vfio-pci, print what the guest sees, power off
# Environment: IX_GUEST_CACHE (default /var/cache/ix-igb-guest) keeps the kernel and packages between runs;
# IX_GUEST_TIMEOUT_S (default 1500) bounds the whole guest run. The emulated NIC is slow (about 18 Mbit/s):
# nothing here measures time.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
MODE=${1:-test}

if [ "$(id -u)" -ne 0 ]; then
    if [ "${CI:-}" = true ]; then echo "igb-e2e: needs root" >&2; exit 1; fi
    echo "igb-e2e: skipped: needs root (QEMU on a TAP device in a network namespace)"
    exit 0
fi

CACHE=${IX_GUEST_CACHE:-/var/cache/ix-igb-guest}
TIMEOUT_S=${IX_GUEST_TIMEOUT_S:-1500}
# Unique per run: other engineers and CI run this beside us.
TAG=$$
NS=ixigb$TAG
TAP=ixtap$TAG
HOST_IP=10.77.$((TAG % 200)).1
GUEST_IP=10.77.$((TAG % 200)).2
WORK=$(mktemp -d /tmp/ix-igb.XXXXXX)
QEMU_PID=

cleanup() {
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then kill "$QEMU_PID" 2>/dev/null || true; fi
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- what the test needs, from Debian's packages --------------------------------------------------------
# QEMU 10 (the first with an `igb` model in Debian) is in bookworm-backports.
install_packages() {
    local need=()
    if ! qemu-system-x86_64 -device help 2>/dev/null | grep -q '"igb"'; then
        need+=(qemu-system-x86)
    fi
    [ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q static || need+=(busybox-static)
    command -v cpio >/dev/null || need+=(cpio)
    command -v curl >/dev/null || need+=(curl)
    command -v python3 >/dev/null || need+=(python3)
    command -v file >/dev/null || need+=(file)
    [ "${#need[@]}" -gt 0 ] || return 0
    if ! grep -rqs bookworm-backports /etc/apt/sources.list.d/; then
        echo "deb http://deb.debian.org/debian bookworm-backports main" >/etc/apt/sources.list.d/ix-backports.list
    fi
    echo "igb-e2e: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports \
        "${need[@]}" >/dev/null
}

# The newest Debian kernel package, unpacked once into the cache.
fetch_kernel() {
    mkdir -p "$CACHE"
    local pkg
    kernel_package() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}'; }
    pkg=$(kernel_package)
    [ -n "$pkg" ] || { apt-get update -qq && pkg=$(kernel_package); }
    [ -n "$pkg" ] || { echo "igb-e2e: no linux-image package known to apt (run apt-get update)" >&2; exit 1; }
    if [ ! -d "$CACHE/$pkg" ]; then
        (cd "$CACHE" && apt-get download "$pkg" >/dev/null 2>&1)
        dpkg-deb -x "$CACHE/${pkg}"_*.deb "$CACHE/$pkg.tmp"
        mv "$CACHE/$pkg.tmp" "$CACHE/$pkg"
        rm -f "$CACHE/${pkg}"_*.deb
    fi
    KDIR=$CACHE/$pkg
    KVER=${pkg#linux-image-}
    VMLINUZ=$KDIR/boot/vmlinuz-$KVER
}

# Modules the guest loads, dependencies first: virtio and 9p for the host's root, vfio for the NIC.
GUEST_MODULES="virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
netfs fscache 9pnet 9pnet_virtio 9p irqbypass vfio vfio_iommu_type1 vfio_virqfd vfio-pci-core vfio-pci"

build_initramfs() {
    local root=$WORK/initramfs
    mkdir -p "$root"/{bin,dev,proc,sys,host,out,modules}
    cp /bin/busybox "$root/bin/busybox"
    local m path
    for m in $GUEST_MODULES; do
        path=$(find "$KDIR/lib/modules/$KVER/kernel" -name "$m.ko" | head -1)
        [ -n "$path" ] || { echo "igb-e2e: module $m not in $KVER" >&2; exit 1; }
        cp "$path" "$root/modules/"
        echo "$m" >>"$root/modules/order"
    done
    cp "$REPO/scripts/igb-guest-init.sh" "$root/init"
    chmod +x "$root/init"
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$WORK/initramfs.gz"
}

# --- the host's end of the wire ---------------------------------------------------------------------------
make_network() {
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    ip -n "$NS" tuntap add dev "$TAP" mode tap
    ip -n "$NS" addr add "$HOST_IP/24" dev "$TAP"
    ip -n "$NS" link set "$TAP" up
    # The dataplane computes its own checksums; the host's must be real on the wire too.
    ip netns exec "$NS" ethtool -K "$TAP" tx off >/dev/null 2>&1 || true
}

boot_guest() {
    local mode=$1
    mkdir -p "$WORK/out"
    printf 'MODE=%s\nGUEST_IP=%s\nHOST_IP=%s\nREPO=%s\n' "$mode" "$GUEST_IP" "$HOST_IP" "$REPO" >"$WORK/out/env"
    ip netns exec "$NS" timeout --kill-after=10 "$TIMEOUT_S" qemu-system-x86_64 \
        -accel tcg -cpu max -smp 2 -m 1024 -M q35 \
        -device intel-iommu \
        -nographic -no-reboot -serial "file:$WORK/console.log" -monitor none \
        -kernel "$VMLINUZ" -initrd "$WORK/initramfs.gz" \
        -append "console=ttyS0 intel_iommu=on panic=-1 quiet" \
        -virtfs local,path=/,mount_tag=hostroot,readonly=on,security_model=none,multidevs=remap \
        -virtfs "local,path=$WORK/out,mount_tag=out,security_model=none" \
        -netdev "tap,id=wire,ifname=$TAP,script=no,downscript=no" \
        -device igb,netdev=wire,mac=52:54:00:12:34:56,bus=pcie.0,addr=0x5 &
    QEMU_PID=$!
}

# --- the host's checks -------------------------------------------------------------------------------------
fail() {
    echo "igb-e2e: FAILED: $*" >&2
    echo "--- guest console (tail)"; tail -n 30 "$WORK/console.log" >&2 || true
    for log in "$WORK"/out/*.log; do echo "--- $log"; tail -n 30 "$log"; done >&2
    exit 1
}
in_ns() { ip netns exec "$NS" "$@"; }
PASSED=0
pass() { PASSED=$((PASSED + 1)); echo "igb-e2e: ok: $*"; }

# Waits (bounded) until the guest's server answers, or the guest died.
wait_until() {
    local what=$1 limit=$2
    shift 2
    local start=$SECONDS
    until "$@" >/dev/null 2>&1; do
        kill -0 "$QEMU_PID" 2>/dev/null || fail "the guest stopped before $what"
        [ ! -e "$WORK/out/failed" ] || fail "$(cat "$WORK/out/failed")"
        [ $((SECONDS - start)) -lt "$limit" ] || fail "$what: nothing after ${limit}s"
        sleep 2
    done
}

check_http() {
    wait_until "ix-http answered" 900 in_ns curl -sf -m 10 "http://$GUEST_IP:8080/"
    # No Linux stack owns the guest's NIC: every answer comes from the IX stack.
    in_ns ping -c 3 -W 10 "$GUEST_IP" >/dev/null || fail "ping $GUEST_IP got no answer"
    pass "ping answered by the IX stack"
    in_ns curl -sf -m 30 "http://$GUEST_IP:8080/" | grep -q . || fail "GET / returned nothing"
    pass "GET /"
    local n=300000
    in_ns curl -sf -m 120 "http://$GUEST_IP:8080/bytes/$n" -o "$WORK/bytes" || fail "GET /bytes/$n failed"
    python3 -c "
import sys
data = open('$WORK/bytes', 'rb').read()
want = bytes(ord('a') + i % 26 for i in range($n))
sys.exit(0 if data == want else 1)" || fail "GET /bytes/$n: body differs from the pattern"
    pass "GET /bytes/$n, every byte checked"
    # Eight connections from eight source ports: RSS spreads them over the two queues the one core polls (all
    # on one queue has odds of 1 in 128), so a queue left unpolled fails about half of them.
    local i
    for i in 1 2 3 4 5 6 7 8; do
        in_ns curl -sf -m 30 "http://$GUEST_IP:8080/" | grep -q . || fail "GET / on connection $i of 8 failed"
    done
    pass "8 connections spread over the two queues of one core, all answered"
    touch "$WORK/out/http.done"
}

# Linux's TCP sends ECHO_BYTES in total through the echo over ECHO_CONNECTIONS connections at once (distinct
# source ports, so RSS spreads them over both queues) and checks every byte that comes back.
ECHO_BYTES=$((20 * 1024 * 1024))
ECHO_CONNECTIONS=8
check_echo() {
    wait_until "the echo server listened" 900 in_ns python3 -c "
import socket; socket.create_connection(('$GUEST_IP', 7), timeout=5).close()"
    in_ns timeout 900 python3 - "$GUEST_IP" "$ECHO_BYTES" "$ECHO_CONNECTIONS" <<'PY' || fail "echo streams"
import random, socket, sys, threading
host, total, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
each = total // conns
errors = []

def stream(seed):
    data = random.Random(seed).randbytes(each)
    s = socket.create_connection((host, 7), timeout=120)
    got = bytearray()
    def reader():
        while len(got) < each:
            chunk = s.recv(65536)
            if not chunk:
                break
            got.extend(chunk)
    t = threading.Thread(target=reader)
    t.start()
    s.sendall(data)
    t.join()
    s.close()
    if bytes(got) != data:
        errors.append(f"connection {seed}: {len(got)} of {each} bytes back, equal prefix "
                      f"{next((i for i, (a, b) in enumerate(zip(got, data)) if a != b), len(got))}")

threads = [threading.Thread(target=stream, args=(i,)) for i in range(conns)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    print("\n".join(errors)); sys.exit(1)
PY
    pass "$((ECHO_BYTES / 1024 / 1024)) MiB each way through the echo over $ECHO_CONNECTIONS connections, every byte checked"
    touch "$WORK/out/echo.done"
}

# The echo server's per-core report: both queues received, both cores served, all that was sent was echoed,
# nothing was handed between cores (each flow was served where its queue is).
check_cores() {
    wait_until "the guest finished" 300 test -e "$WORK/out/guest.done"
    python3 - "$WORK/out/echo.log" "$ECHO_BYTES" <<'PY' || fail "per-core report"
import re, sys
text = open(sys.argv[1]).read()
cores = {int(m[0]): dict(zip(m[1::2], map(int, m[2::2])))
         for m in (line.split()[1:] for line in text.splitlines() if line.startswith("core "))}
print(text.strip())
assert set(cores) == {0, 1}, f"two cores report: {sorted(cores)}"
for core, c in cores.items():
    assert c["connections"] > 0, f"core {core} served no connection"
    assert c["queue_rx_packets"] > 0, f"queue {core} received nothing"
    assert c["handed_over"] == 0, f"core {core} handed {c['handed_over']} frames to another core"
assert sum(c["bytes"] for c in cores.values()) == int(sys.argv[2]), "bytes echoed"
# The 82576 counts good frames for the whole port, and queue 0 reads those registers: they must have seen the
# echo's traffic (they are read every 512 bursts, which can be many frames each, so they may trail the software counters).
hw_rx, hw_tx = cores[0]["queue_hw_rx_packets"], cores[0]["queue_hw_tx_packets"]
sw_rx = sum(c["queue_rx_packets"] for c in cores.values())
assert 0 < hw_rx and 0 < hw_tx, f"the device's statistics registers counted rx {hw_rx} tx {hw_tx}"
assert hw_rx <= sw_rx + sum(c["queue_rx_drops"] for c in cores.values()) + 1000, f"device rx {hw_rx} > software {sw_rx}"
assert "echo_server exit 0" in text, "the echo server exited cleanly"
PY
    pass "flows landed on both queues and were served by the core owning each; the device's counters saw them"
}

install_packages
fetch_kernel
build_initramfs
make_network
if [ "$MODE" = --probe ]; then
    boot_guest probe
    wait "$QEMU_PID" || true
    cat "$WORK/console.log"
    cat "$WORK/out/"*.log 2>/dev/null || true
    exit 0
fi
echo "igb-e2e: building the servers"
cargo build --release -q -p ix-example-http --bin ix-http -p ix-runtime --example echo_server
boot_guest test
check_http
check_echo
check_cores
wait "$QEMU_PID" || true
QEMU_PID=
echo "igb-e2e: $PASSED passed, 0 failed"
