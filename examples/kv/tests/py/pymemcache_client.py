"""Drives an ix-kv server with pymemcache: every command and error path.

Usage: pymemcache_client.py HOST PORT. Exits 0 when every check passes,
1 with the failed checks listed otherwise.
"""
import sys
import time

from pymemcache.client.base import Client
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheServerError,
    MemcacheUnknownCommandError,
)

HOST, PORT = sys.argv[1], int(sys.argv[2])
failures = []
passed = 0


def check(name, got, want):
    global passed
    if got == want:
        passed += 1
    else:
        failures.append(f"{name}: got {got!r}, want {want!r}")


def raises(name, exc, fn):
    global passed
    try:
        fn()
    except exc as e:
        passed += 1
        return str(e)
    except Exception as e:  # noqa: BLE001 - report the wrong kind
        failures.append(f"{name}: raised {type(e).__name__}: {e}")
        return None
    failures.append(f"{name}: did not raise {exc.__name__}")
    return None


def connect():
    return Client((HOST, PORT), connect_timeout=10, timeout=10, default_noreply=False)


def refused(name, exc, request, want):
    """Sends a raw request that the server must refuse, on a fresh connection."""
    e = connect()
    msg = raises(name, exc, lambda: e.raw_command(request, b"\r\n"))
    check(name + " text", msg, want)
    e.close()


c = connect()
c.flush_all()

# Storage and retrieval.
check("set", c.set("k1", b"v1", expire=0), True)
check("get", c.get("k1"), b"v1")
check("get miss", c.get("missing"), None)
check("add existing", c.add("k1", b"x"), False)
check("add new", c.add("k2", b"v2"), True)
check("replace existing", c.replace("k2", b"r2"), True)
check("replace missing", c.replace("nope", b"x"), False)
check("append", c.append("k1", b"+a"), True)
check("prepend", c.prepend("k1", b"p+"), True)
check("after append/prepend", c.get("k1"), b"p+v1+a")
check("append missing", c.append("nope", b"x"), False)
check("get_many", c.get_many(["k1", "k2", "missing"]), {"k1": b"p+v1+a", "k2": b"r2"})
check("set_many", c.set_many({"m1": b"1", "m2": b"2"}), [])
check("flags", c.set("fl", b"x", flags=4294967295) and c.raw_command(b"get fl", b"END\r\n"),
      b"VALUE fl 4294967295 1\r\nx\r\n")

# noreply on every storage command: the value still lands.
for cmd in ("set", "add", "replace", "append", "prepend"):
    getattr(c, cmd)("nr", b"z", noreply=True)
check("noreply commands", c.get("nr"), b"zzz")
c.delete("nr", noreply=True)
check("delete noreply", c.get("nr"), None)

# CAS.
value, cas = c.gets("k2")
check("gets", value, b"r2")
check("cas ok", c.cas("k2", b"c2", cas), True)
check("cas stale", c.cas("k2", b"c3", cas), False)
check("cas missing", c.cas("nope", b"x", 1), None)
check("gets_many", sorted(c.gets_many(["k2", "missing"]).keys()), ["k2"])

# Delete, incr, decr (64-bit wrap, floor at 0, non-numeric refused).
check("delete", c.delete("k2"), True)
check("delete miss", c.delete("k2"), False)
c.set("n", b"10")
check("incr", c.incr("n", 5), 15)
check("decr floor", c.decr("n", 100), 0)
c.set("n", b"18446744073709551615")
check("incr wraps", c.incr("n", 1), 0)
check("incr missing", c.incr("missing", 1), None)
c.set("s", b"abc")
raises("incr non-numeric", MemcacheClientError, lambda: c.incr("s", 1))
refused("incr bad delta", MemcacheClientError, b"incr n x", "b'invalid numeric delta argument'")

# Expiration: negative is already expired, touch and gat change it.
c.set("neg", b"x", expire=-1)
check("negative expire", c.get("neg"), None)
c.set("t", b"x", expire=100)
check("touch", c.touch("t", expire=1), True)
check("touch missing", c.touch("missing", expire=1), False)
# pymemcache has no gat/gats: raw commands.
check("gat", c.raw_command(b"gat 100 t", b"END\r\n"), b"VALUE t 0 1\r\nx\r\n")
check("gats", c.raw_command(b"gats 100 t missing", b"END\r\n").startswith(b"VALUE t 0 1 "), True)
c.set("short", b"x", expire=1)
time.sleep(2.2)
check("expired by ttl", c.get("short"), None)
check("touched alive", c.get("t"), b"x")
c.set("abs", b"x", expire=int(time.time()) + 100)
check("absolute expire", c.get("abs"), b"x")

# Server errors.
msg = raises("too large", MemcacheServerError, lambda: c.set("big", b"x" * (2 * 1024 * 1024)))
check("too large text", msg, "b'object too large for cache'")
check("after too large", c.get("k1"), b"p+v1+a")
refused("bad key (server)", MemcacheClientError, b"get " + b"k" * 251, "b'bad command line format'")
refused("unknown command", MemcacheUnknownCommandError, b"bogus", "b'bogus'")
refused("bad data chunk", MemcacheClientError, b"set bd 0 0 1\r\nxyz", "b'bad data chunk'")
refused("bad flags", MemcacheClientError, b"set bd x 0 1\r\nx", "b'bad command line format'")
check("after errors", c.get("k1"), b"p+v1+a")

# Meta commands.
# raw_command returns what precedes its end token.
check("mn", c.raw_command(b"mn", b"MN\r\n"), b"")
check("ms+mg", c.raw_command(b"ms mk 2 F7\r\nhi", b"\r\n"), b"HD")
check("mg", c.raw_command(b"mg mk v f k", b"hi\r\n"), b"VA 2 f7 kmk\r\n")
check("mg miss", c.raw_command(b"mg nope v", b"\r\n"), b"EN")
check("ma", c.raw_command(b"ma ctr N0 J5 v", b"\r\n5\r\n"), b"VA 1")
check("ma incr", c.raw_command(b"ma ctr D3 v", b"\r\n8\r\n"), b"VA 1")
check("md", c.raw_command(b"md mk", b"\r\n"), b"HD")
check("md miss", c.raw_command(b"md mk", b"\r\n"), b"NF")

# Stats, version, verbosity, flush_all with delay, quit.
stats = c.stats()
for field in (b"pid", b"uptime", b"curr_items", b"total_items", b"bytes", b"curr_connections",
              b"get_hits", b"get_misses", b"evictions", b"cmd_get", b"cmd_set", b"limit_maxbytes"):
    check(f"stats has {field!r}", field in stats, True)
check("stats get_hits counts", stats[b"get_hits"] > 0, True)
check("stats settings", b"item_size_max" in c.stats("settings"), True)
check("version", c.version().startswith(b"1.6"), True)
check("verbosity", c.raw_command(b"verbosity 1", b"\r\n"), b"OK")
check("flush_all delayed", c.flush_all(delay=2), True)
check("before delayed flush", c.get("k1"), b"p+v1+a")
time.sleep(2.2)
check("after delayed flush", c.get("k1"), None)
c.set("k3", b"v3")
check("flush_all", c.flush_all(), True)
check("flushed", c.get("k3"), None)
c.quit()
check("reconnects after quit", c.set("q", b"1") and c.get("q"), b"1")

print(f"{passed} passed, {len(failures)} failed")
for f in failures:
    print("FAILED", f)
sys.exit(1 if failures else 0)
