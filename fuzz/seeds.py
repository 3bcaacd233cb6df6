#!/usr/bin/env python3
"""Writes the hand-made seeds of every target into corpus/TARGET/seed-*; scripts/fuzz.sh grows and
minimises the corpora from there. HTTP/2 seeds are what curl sent (seeds-http/, captured once).
`seeds.py TARGET...` writes only those targets' seeds (a target added later, without bringing back the seeds
the minimisation of the others dropped)."""
import os, struct, sys

ONLY = sys.argv[1:]

HERE = os.path.dirname(os.path.abspath(__file__))

def put(target, name, data):
    if ONLY and target not in ONLY:
        return
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)

def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff

SRC, DST = bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1])

def ipv4(proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0, SRC, DST)
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload

def tcp(flags, payload=b"", options=b""):
    off = (20 + len(options)) // 4
    h = struct.pack("!HHIIBBHHH", 40000, 80, 1000, 2000, off << 4, flags, 65535, 0, 0) + options
    pseudo = SRC + DST + struct.pack("!BBH", 0, 6, len(h) + len(payload))
    c = csum(pseudo + h + payload)
    return h[:16] + struct.pack("!H", c) + h[18:] + payload

def udp(payload):
    h = struct.pack("!HHHH", 5353, 53, 8 + len(payload), 0)
    pseudo = SRC + DST + struct.pack("!BBH", 0, 17, len(h) + len(payload))
    return h[:6] + struct.pack("!H", csum(pseudo + h + payload) or 0xffff) + payload

def icmp_echo(data):
    h = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + data
    return h[:2] + struct.pack("!H", csum(h)) + h[4:]

ETH = bytes([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2])
syn_opts = bytes([2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7])
sack_opts = bytes([1, 1, 5, 10]) + struct.pack("!IIII", 3000, 4000, 5000, 6000)
arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, ETH[6:], SRC, b"\0" * 6, DST)

put("ethernet", "ipv4", ETH + b"\x08\x00" + ipv4(6, tcp(0x02, options=syn_opts)))
put("ethernet", "arp", ETH + b"\x08\x06" + arp)
put("arp", "request", arp)
put("ipv4", "tcp-syn", ipv4(6, tcp(0x02, options=syn_opts)))
put("ipv4", "options", bytes([0x46]) + ipv4(17, udp(b"x"))[1:20] + b"\x01\x01\x01\x00" + udp(b"x"))
put("icmpv4", "echo", icmp_echo(b"ping data"))
put("udp", "query", SRC + DST + udp(b"\x12\x34\x01\x00"))
put("tcp", "syn", SRC + DST + tcp(0x02, options=syn_opts))
put("tcp", "sack", SRC + DST + tcp(0x10, b"data", options=sack_opts))

# kv_text: a cut byte, then a command stream.
for i, stream in enumerate([
    b"set a 1 0 3\r\nabc\r\nget a b\r\ngets a\r\nappend a 0 0 2\r\nde\r\nincr n 5\r\ndelete a\r\n",
    b"ms m 2 T5 c\r\nhi\r\nmg m v f t\r\nma n N0 J13\r\nmd m q\r\nmn\r\n",
    b"set big 0 0 20000\r\n" + b"z" * 300 + b"\r\nget big\r\nstats\r\nstats settings\r\n",
    b"cas a 0 0 1 99\r\nx\r\ntouch a 10\r\nflush_all 0\r\nversion\r\nverbosity 1\r\nquit\r\n",
    b"slabs automove 1\r\nlru tune 10 20 0.5 2\r\ncache_memlimit 1\r\nstats items\r\nstats slabs\r\n",
]):
    put("kv_text", "stream%d" % i, bytes([0x80 if i % 2 else 0x03]) + stream)

# http_server: a cut byte, then what the client sent.
http = {
    "get": b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "pipelined": b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.0\r\n\r\n",
    "bad": b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
}
for name in sorted(os.listdir(os.path.join(HERE, "seeds-http"))):
    http[name] = open(os.path.join(HERE, "seeds-http", name), "rb").read()
for i, (name, stream) in enumerate(sorted(http.items())):
    put("http_server", name, bytes([(0xc0 if i % 2 else 0x01)]) + stream)

# tcp_session: operation scripts (see ix-fuzz/src/tcp_session.rs: op byte % 10, then its fields).
def seg(flow, flags, seq_mode, ack_mode, payload_len=0, options=b"", seq=0, ack=0):
    b = bytes([0, flow, 1, flags])
    b += bytes([seq_mode]) + (struct.pack("!I", seq) if seq_mode == 3 else (b"\0\0" if seq_mode < 2 else b""))
    b += bytes([ack_mode]) + (struct.pack("!I", ack) if ack_mode == 3 else (b"\0\0" if ack_mode == 2 else b""))
    b += struct.pack("!HH", 65535, 0) + bytes([len(options)]) + options + struct.pack("!H", payload_len) + b"\x01"
    return b

steps = lambda n: bytes([9, n])
honest_open = bytes([4, 0, 0, 0])
honest_send = lambda i, n: bytes([4, i]) + struct.pack("!H", n)
reads = bytes([5])
advance = lambda ms: bytes([6]) + struct.pack("!H", ms)
handshake = seg(0, 0x02, 3, 3, options=syn_opts, seq=7777) + steps(8) + seg(0, 0x10, 2, 0)
put("tcp_session", "honest", honest_open + steps(20) + honest_send(0, 5000) + steps(60) + reads + advance(200))
put("tcp_session", "attacker-data", handshake + steps(4) + seg(0, 0x18, 2, 0, 500) + steps(10) + reads
    + seg(0, 0x18, 0, 0, 300) + seg(0, 0x11, 2, 0) + steps(20) + advance(1000))
put("tcp_session", "mixed", honest_open + steps(20) + handshake + honest_send(0, 9000)
    + seg(0, 0x18, 2, 0, 1000, options=sack_opts) + steps(30) + bytes([7, 0, 3, 0x10, 0]) + steps(30)
    + seg(0, 0x04, 2, 0) + reads + advance(3000))
put("tcp_session", "raw", bytes([3, 0, 1]) + struct.pack("!H", 40) + ipv4(1, icmp_echo(b"x" * 12))[:40] + steps(4)
    + bytes([3, 2, 0]) + struct.pack("!H", 28) + arp + steps(4))

# ixcp_message: one message of each kind (ix-driver/src/ixcp/protocol.rs: header "IXCP", version, kind, body
# length; little-endian).
def ixcp(kind, body):
    return b"IXCP" + struct.pack("<HHI", 3, kind, len(body)) + body

def ixcp_name(name):
    return bytes([len(name)]) + name

ixcp_core = (struct.pack("<HBHHB", 0, 1, 1, 420, 1) + struct.pack("<13Q", 99, 10, 5000, 3, 7, 7, 1, 2, 0, 4000, 4096, 9, 5)
             + struct.pack("<4Q", 2, 1, 3, 2))
ixcp_dataplane = (struct.pack("<I", 65534) + bytes([10, 77, 0, 1]) + ixcp_name(b"veth0") + ixcp_name(b"ixdp0")
                  + struct.pack("<IH", 4096, 2) + struct.pack("<HH", 8080, 11211) + struct.pack("<4Q", 1, 2, 3, 4)
                  + struct.pack("<HHH", 1, 2, 1) + ixcp_core)
put("ixcp_message", "admit", ixcp(1, bytes([10, 77, 0, 1]) + struct.pack("<HIIH", 1, 4096, 1000, 2)
                                  + struct.pack("<HH", 8080, 11211)))
put("ixcp_message", "grant", ixcp(2, bytes([2, 0, 0, 0, 0, 9]) + struct.pack("<IHII", 1500, 1, 4096, 1000)
                                  + ixcp_name(b"ixdp3")))
ixcp_refusal = b"port 22 is not granted to uid 65534"
put("ixcp_message", "refusal", ixcp(3, struct.pack("<HH", 5, len(ixcp_refusal)) + ixcp_refusal))
put("ixcp_message", "list", ixcp(4, b""))
put("ixcp_message", "listing", ixcp(5, struct.pack("<9Q", 3, 2, 1, 1, 5, 4, 1, 6, 7) + struct.pack("<H", 1)
                                    + ixcp_dataplane))
put("ixcp_message", "set-share", ixcp(6, ixcp_name(b"ixdp0") + struct.pack("<H", 0)))
put("ixcp_message", "share-set", ixcp(7, ixcp_name(b"ixdp0") + struct.pack("<H", 1)))

# ixcp_allocation: a header (dataplanes, polling CPU mask, shared set, policy thresholds, cores and share of
# each), then operations: publish a core's counters, a period's decision, a step window, a share, a thread
# id changing hands (ix-fuzz/src/ixcp.rs, `allocation`; big-endian).
def alloc_header(tenants, mask, shared, cores, shares, step=1):
    policy = bytes([76, 85, 3, 0, 0, step, 200, 1])
    return bytes([tenants - 1, mask, shared]) + policy + bytes(c - 1 for c in cores) + bytes(shares)

def alloc_publish(tenant, core, tid, busy_delta, self_polls_delta=0):
    return (bytes([0, tenant, core, tid, 1]) + struct.pack("!I", busy_delta) + bytes([1])
            + struct.pack("!I", self_polls_delta) + bytes([1]))

def alloc_decide(ms):
    return bytes([2]) + struct.pack("!H", ms * 100)

def alloc_step(ms):
    return bytes([3]) + struct.pack("!H", ms * 1000)

# Tids 1 and 3 are the second dataplane's, 2 and 4 the first's (tid % dataplanes).
busy, idle = 100_000_000, 0
named = alloc_publish(0, 0, 2, 0) + alloc_publish(0, 1, 4, 0) + alloc_publish(1, 0, 1, 0) + alloc_decide(100)
put("ixcp_allocation", "busy-then-idle", alloc_header(2, 0b001100, 0, [2, 1], [1, 2]) + named
    + alloc_publish(0, 0, 2, busy) + alloc_publish(0, 1, 4, busy) + alloc_publish(1, 0, 1, busy) + alloc_decide(100)
    + (alloc_publish(0, 0, 2, idle) + alloc_decide(100)) * 4)
put("ixcp_allocation", "steps", alloc_header(2, 0b000100, 1, [1, 1], [1, 1]) + named
    + (alloc_publish(0, 0, 2, 10_000_000) + alloc_publish(1, 0, 1, 10_000_000) + alloc_step(10)) * 3
    + alloc_decide(30))
put("ixcp_allocation", "self-poll", alloc_header(1, 0b110000, 2, [1], [1]) + alloc_publish(0, 0, 1, 0)
    + alloc_decide(100) + alloc_publish(0, 0, 1, 20_000_000, 1) + alloc_decide(100)
    + alloc_publish(0, 0, 1, 1_000_000, 1) + alloc_decide(100))
named1 = alloc_publish(0, 0, 2, 0) + alloc_publish(1, 0, 1, 0) + alloc_decide(100)
# The first dataplane's polling thread (2) exits and its id goes to another process; its share drops to 0, so
# the decision sends the core back (without moving the thread). Id 2 then goes to the second dataplane, whose
# core names it; the first names the second's thread 9.
put("ixcp_allocation", "thread-reused", alloc_header(2, 0b001100, 0, [1, 1], [1, 1]) + named1
    + alloc_publish(0, 0, 2, busy) + alloc_decide(100) + bytes([5, 1, 1]) + bytes([4, 0, 0]) + alloc_decide(100)
    + bytes([5, 1, 2, 1]) + alloc_publish(1, 0, 2, busy) + alloc_decide(100) + alloc_publish(1, 0, 2, busy)
    + alloc_decide(100) + alloc_publish(0, 0, 9, busy) + alloc_decide(100))
