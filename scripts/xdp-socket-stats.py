#!/usr/bin/env python3
"""Prints the kernel's counters (XDP_STATISTICS) of every AF_XDP socket a running process holds.

    scripts/xdp-socket-stats.py PID

Reads them from outside the process: each socket's descriptor is duplicated with pidfd_getfd(2) (root, or
ptrace rights over PID) and queried with getsockopt(SOL_XDP, XDP_STATISTICS). What tells a receive ring that
overflowed (rx_ring_full) from a fill ring the process left empty (rx_fill_ring_empty) when the interface
counts XDP redirect failures as drops.
"""
import ctypes
import os
import struct
import sys

SYS_PIDFD_GETFD = 438
SOL_XDP = 283
XDP_STATISTICS = 7
FIELDS = ("rx_dropped", "rx_invalid_descs", "tx_invalid_descs", "rx_ring_full", "rx_fill_ring_empty", "tx_ring_empty")


def main() -> int:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print(f"usage: {sys.argv[0]} PID", file=sys.stderr)
        return 2
    pid = int(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    found = 0
    for name in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:["):
                continue
        except OSError:
            continue
        fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
        if fd < 0:
            print(f"pidfd_getfd({pid}, {name}): {os.strerror(ctypes.get_errno())}", file=sys.stderr)
            return 1
        raw = ctypes.create_string_buffer(8 * len(FIELDS))
        size = ctypes.c_uint32(len(raw))
        status = libc.getsockopt(fd, SOL_XDP, XDP_STATISTICS, raw, ctypes.byref(size))
        os.close(fd)
        if status != 0:
            continue  # not an AF_XDP socket
        values = struct.unpack(f"{size.value // 8}Q", raw.raw[: size.value])
        print(f"fd {name}: " + " ".join(f"{k}={v}" for k, v in zip(FIELDS, values)))
        found += 1
    if not found:
        print(f"process {pid} holds no AF_XDP socket", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
