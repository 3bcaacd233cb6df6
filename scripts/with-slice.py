#!/usr/bin/env python3
"""Sets the scheduler slice of every thread of a process.

    with-slice.py MICROSECONDS PID

The slice is sched_setattr's sched_runtime of an ordinary (SCHED_OTHER)
thread, honoured since Linux 6.12 (the kernel clamps it to 0.1-100 ms); the
nice value is kept. A thread whose slice is shorter than the running task's
may preempt it when it wakes (EEVDF's PREEMPT_SHORT) instead of waiting for
that task's slice to end, which the scheduler notices at the next tick, up to
4 ms later at 250 Hz. ixcp does the same to a dataplane's core threads with
`slice_us` in its [policy]; ixcp-efficiency.sh uses this for tokio's server
(SERVER_SLICE_US), so that both get the same.
"""
import ctypes
import os
import struct
import sys

SYS_SCHED_SETATTR = 314  # x86_64
LIBC = ctypes.CDLL(None, use_errno=True)


def set_slice(tid, slice_us):
    nice = os.getpriority(os.PRIO_PROCESS, tid)
    # struct sched_attr, version 0 (48 bytes): size, policy (SCHED_OTHER),
    # flags, nice, priority, runtime, deadline, period.
    attr = struct.pack("=IIQiIQQQ", 48, 0, 0, nice, 0, slice_us * 1000, 0, 0)
    if LIBC.syscall(SYS_SCHED_SETATTR, tid, ctypes.c_char_p(attr), 0) != 0:
        raise OSError(ctypes.get_errno(), f"sched_setattr({tid})")


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    slice_us, pid = int(argv[1]), int(argv[2])
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        set_slice(tid, slice_us)


if __name__ == "__main__":
    main(sys.argv)
