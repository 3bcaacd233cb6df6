#!/bin/busybox sh
# PID 1 of the igb end-to-end guest (see scripts/igb-e2e.sh): mounts the host's root (read-only) and the
# run's output folder over 9p, binds the emulated 82576 to vfio-pci, then runs the phase the host asked for
# (scripts/igb-guest.sh, from the host's root) and powers off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# Modules in the listed order, in passes: a module whose dependency is later in the list loads next pass.
for pass in 1 2 3; do
    for m in $(cat /modules/order); do
        grep -q "^$(echo "$m" | tr - _) " /proc/modules || insmod "/modules/$m.ko" 2>/dev/null
    done
done
for m in $(cat /modules/order); do
    grep -q "^$(echo "$m" | tr - _) " /proc/modules || echo "init: module $m did not load"
done
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none hostroot /host
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none out /out
[ -f /out/env ] && . /out/env
{
    echo "init: kernel $(uname -r)"
    # The first Intel 82576 (8086:10c9) goes to vfio-pci.
    for dev in /sys/bus/pci/devices/*; do
        if [ "$(cat "$dev/vendor")" = 0x8086 ] && [ "$(cat "$dev/device")" = 0x10c9 ]; then
            NIC=$(basename "$dev")
            echo vfio-pci >"$dev/driver_override"
            echo "$NIC" >/sys/bus/pci/drivers_probe
            echo "init: $NIC driver $(basename "$(readlink "$dev/driver")") group $(basename "$(readlink "$dev/iommu_group")")"
        fi
    done
    ls -l /dev/vfio
} >/out/init.log 2>&1
# The host's binaries run in its root, with the guest's own kernel file systems.
for d in proc sys dev; do mount --bind "/$d" "/host/$d"; done
# The guest's /tmp is its own (the host's root is read-only); a checkout under the host's /tmp (a CI clone)
# stays visible at its path through a bind made before the tmpfs covers it.
case $REPO in
    /tmp/*)
        mkdir -p /repo
        mount --bind "/host$REPO" /repo
        ;;
esac
mount -t tmpfs tmp /host/tmp
case $REPO in
    /tmp/*)
        mkdir -p "/host$REPO"
        mount --bind /repo "/host$REPO"
        ;;
esac
mkdir -p /host/tmp/out
mount --bind /out /host/tmp/out
if [ "$MODE" != probe ]; then
    chroot /host /bin/sh "$REPO/scripts/igb-guest.sh" "$NIC" >/out/guest.log 2>&1
fi
sync
poweroff -f
