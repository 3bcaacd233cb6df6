#!/usr/bin/env python3
"""Prints one point of scripts/server-ab.sh: latency, both CPUs' split, the counters, and the slow requests.

    scripts/server-ab-report.py --label L --idle POLICY --conns C --dir D [--sched FILE]

Reads, from D, ixload's report (load.json, with its timeline and stall split) and the snapshots server-ab.sh
took at the window's start and end (window.start.* and window.end.*: /proc/stat, the server's metrics, the
client namespace's `nstat`, the softirq threads' run time, and `perf stat` of the server's core thread). The
server publishes its metrics every 500 ms, so its counters are given per received frame, a ratio within the
span between its two publications, not per second. With --sched (perf script of sched_switch on CPUs 0 and 1,
after the clocks' offset), says what ran on each CPU during the longest slow episodes.
"""
import argparse
import json
import re
from collections import defaultdict

# Latency above which a request is slow: the SLA of the harness's search.
SLOW_US = 500
# Slow requests whose lives lie within this of each other belong to one episode.
EPISODE_GAP_US = 200
# Server metrics shown per received frame.
LOOP = ("rounds", "batches", "empty_rounds", "blocks", "tx_packets", "tasks_polled")
TCP = ("delayed_acks", "acks_sent", "retransmitted_segments", "tlp_probes", "tlp_spurious", "dsacks_received")
# The client kernel's TCP counters.
NSTAT = ("TcpRetransSegs", "TcpExtTCPLossProbes", "TcpExtDelayedACKs", "TcpExtTCPDSACKRecv", "TcpExtTCPDSACKOldSent",
         "TcpExtTCPSpuriousRtxHostQueues", "TcpExtTCPTimeouts", "TcpOutSegs")


def cpu_split(before, after):
    """Each CPU's user, system, softirq (with irq), steal and idle percent between two /proc/stat reads."""
    read = lambda path: {l.split()[0]: [int(x) for x in l.split()[1:]] for l in open(path)}
    b, a = read(before), read(after)
    out = []
    for cpu in ("cpu0", "cpu1"):
        # user nice system idle iowait irq softirq steal
        d = [y - x for x, y in zip(b[cpu], a[cpu])]
        total = sum(d[:8]) or 1
        pct = lambda *i: 100 * sum(d[j] for j in i) / total
        out.append(f"{cpu} usr {pct(0, 1):3.0f} sys {pct(2):3.0f} sirq {pct(5, 6):3.0f} steal {pct(7):3.0f} "
                   f"idle {pct(3, 4):3.0f}")
    return " | ".join(out)


def metrics(path):
    """The server's counters: loop and queue ones by name, the stack's by `layer.counter`."""
    out = {}
    for line in open(path):
        if line.startswith("#"):
            continue
        m = re.match(r'(\w+)\{([^}]*)\} (\d+)', line)
        if not m:
            continue
        name, labels, value = m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2))), int(m.group(3))
        if name == "ix_stack_events_total":
            out[f"{labels.get('layer')}.{labels.get('counter')}"] = value
        elif name.startswith("ix_loop_") and name.endswith("_total"):
            out[name[len("ix_loop_"):-len("_total")]] = value
    return out


def nstat(path):
    out = {}
    for line in open(path):
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def delta(before, after):
    return {k: after[k] - before.get(k, 0) for k in after}


def episodes(timeline, slow_us, stalls=()):
    """The lives `[sent, sent + latency]` of the slow requests that no stall interval (Unix microseconds)
    overlaps, merged into episodes, as (start, end, count), in microseconds after the window's start, longest
    first."""
    origin = timeline["window_start_unix_us"]
    spans = [(a - origin, b - origin) for a, b in stalls]
    touched = lambda s, e: any(a <= e and s < b for a, b in spans)
    slow = sorted((s, s + lat) for s, lat in timeline["requests"] if lat > slow_us and not touched(s, s + lat))
    merged = []
    for start, end in slow:
        if merged and start <= merged[-1][1] + EPISODE_GAP_US:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2] + 1)
        else:
            merged.append((start, end, 1))
    return sorted(merged, key=lambda e: e[1] - e[0], reverse=True)


def sched_runs(path):
    """Per CPU, the intervals (start_us, end_us, comm, pid) of the tasks that ran, in Unix microseconds, from a
    file whose first line is the Unix time less the monotonic clock (us) and the rest `perf script` lines of
    sched_switch recorded with the monotonic clock."""
    line_re = re.compile(r'\[(\d+)\]\s+([\d.]+):.*prev_comm=(.*?) prev_pid=(\d+).*next_comm=(.*?) next_pid=(\d+)')
    runs, current = defaultdict(list), {}
    lines = open(path)
    offset_us = int(next(lines, "0"))
    for line in lines:
        m = line_re.search(line)
        if not m:
            continue
        cpu, t = int(m.group(1)), float(m.group(2)) * 1e6 + offset_us
        if cpu in current:
            since, comm, pid = current[cpu]
            runs[cpu].append((since, t, comm, pid))
        current[cpu] = (t, m.group(5), int(m.group(6)))
    return runs


def ran_during(runs, start, end):
    """Per CPU, microseconds that each task (by comm; not the idle task) ran within [start, end]."""
    out = {}
    for cpu, intervals in runs.items():
        by = defaultdict(float)
        for s, e, comm, pid in intervals:
            overlap = min(e, end) - max(s, start)
            if overlap > 0 and pid != 0:
                by[comm] += overlap
        out[cpu] = by
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--label", required=True)
    p.add_argument("--idle", required=True)
    p.add_argument("--conns", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--sched")
    a = p.parse_args()
    d = a.dir
    r = json.load(open(f"{d}/load.json"))
    lat, lag, stalls = r["latency_us"], r["send_lag_us"], r.get("stalls") or {}
    un = stalls.get("unstalled_latency_us") or {}
    every = stalls.get("stalled_requests") == stalls.get("requests")
    pct = lambda q: "n/a" if every else f"{un.get(q, 0):.0f}"
    offered = f"{r['offered_rate']:.0f}/s" if r.get("offered_rate") else "closed"
    print(f"{a.label} {a.idle} {a.conns} conns {offered}: {r['throughput']:.0f} req/s | unstalled us p50 {pct('p50')} "
          f"p90 {pct('p90')} p99 {pct('p99')} p99.9 {pct('p999')} | all p50 {lat['p50']:.0f} p90 {lat['p90']:.0f} "
          f"p99 {lat['p99']:.0f} p99.9 {lat['p999']:.0f} max {lat['max']:.0f} | stalled "
          f"{stalls.get('stalled_pct', 0):.1f}% | send lag us p50 {lag['p50']:.1f} p99 {lag['p99']:.1f} max "
          f"{lag['max']:.0f}")
    print(f"  cpu: {cpu_split(f'{d}/window.start.cpu', f'{d}/window.end.cpu')}")
    m = delta(metrics(f"{d}/window.start.metrics"), metrics(f"{d}/window.end.metrics"))
    rx = m.get("rx_packets", 0)
    if rx > 0:
        loop = " ".join(f"{k} {m.get(k, 0) / rx:.3f}" for k in LOOP)
        tcp = " ".join(f"{k} {m.get('tcp.' + k, 0) / rx:.4f}" for k in TCP)
        print(f"  server per received frame ({rx} frames): {loop} | mean batch "
              f"{rx / max(m.get('batches', 0), 1):.2f} | tcp {tcp}")
    n = delta(nstat(f"{d}/window.start.nstat"), nstat(f"{d}/window.end.nstat"))
    out_segs = n.get("TcpOutSegs", 0) or 1
    print("  client kernel per segment sent: " + " ".join(f"{k} {n.get(k, 0) / out_segs:.4f}" for k in NSTAT[:-1])
          + f" ({out_segs} segments)")
    try:
        calls = {row.split(",")[2]: row.split(",")[0] for row in open(f"{d}/window.syscalls") if row.count(",") > 2}
        soft = [dict(zip(("comm", "ns"), l.split())) for l in open(f"{d}/window.start.softirqd")]
        soft_end = {l.split()[0]: int(l.split()[1]) for l in open(f"{d}/window.end.softirqd")}
        ksoft = " ".join(f"{s['comm']} {(soft_end.get(s['comm'], 0) - int(s['ns'])) / 1e6:.1f} ms" for s in soft)
        print("  core thread over the window: " + " ".join(f"{k.split(':')[-1]} {v}" for k, v in calls.items())
              + f" | {ksoft}")
    except (OSError, IndexError, ValueError) as e:
        print(f"  core thread's system calls: not read ({e})")
    timeline = r.get("timeline")
    if not timeline:
        return
    requests = len(timeline["requests"])
    slow_all = sum(1 for _, lat in timeline["requests"] if lat > SLOW_US)
    stalls = [(i["start_unix_us"], i["end_unix_us"]) for i in r.get("stall_intervals") or []]
    eps = episodes(timeline, SLOW_US, stalls)
    slow = sum(e[2] for e in eps)
    top = ", ".join(f"{(e[1] - e[0]) / 1000:.1f} ms x{e[2]} at {e[0] / 1e6:.2f}s" for e in eps[:4])
    print(f"  slow (> {SLOW_US} us): {slow_all} of {requests} requests; no stall touched {slow} "
          f"({100 * slow / max(requests, 1):.2f}% of all), in {len(eps)} episodes; longest: {top}")
    if a.sched and eps:
        runs = sched_runs(a.sched)
        origin = timeline["window_start_unix_us"]
        for start, end, count in eps[:4]:
            ran = ran_during(runs, origin + start, origin + end)
            said = []
            for cpu in sorted(ran):
                items = sorted(ran[cpu].items(), key=lambda kv: -kv[1])[:5]
                said.append(f"cpu{cpu}: " + (", ".join(f"{c} {t:.0f} us" for c, t in items) or "-"))
            print(f"    episode {(end - start) / 1000:.1f} ms x{count}: ran " + "; ".join(said))


if __name__ == "__main__":
    main()
