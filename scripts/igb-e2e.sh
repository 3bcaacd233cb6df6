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
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
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
echo "igb-e2e: not implemented past --probe yet" >&2
exit 1
