//! Runs one decoded command against the store and writes memcached's exact
//! reply into the connection's output buffer. No I/O and no runtime here.

use bytes::{BufMut, BytesMut};

use crate::protocol::{
    Command, ErrorReply, MetaArith, MetaArithMode, MetaDelete, MetaFlag, MetaGet, MetaSet, StatsGroup, StoreCommand,
    StoreMode, StoreRejection,
};
use crate::server::Server;
use crate::stats::Counter;
use crate::store::{ArithOutcome, ArithRequest, DeleteOutcome, ItemView, StoreOutcome, StoreRequest};

/// What the connection does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Continue,
    /// Close the connection (`quit`).
    Close,
}

/// The protocol version this server speaks, reported by `version` and `stats`.
pub const PROTOCOL_VERSION: &str = concat!("1.6.18-ix-kv-", env!("CARGO_PKG_VERSION"));

fn line(out: &mut BytesMut, text: &str) {
    out.put_slice(text.as_bytes());
    out.put_slice(b"\r\n");
}

fn number(out: &mut BytesMut, n: impl itoa::Integer) {
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Runs `cmd` and appends its reply (if any) to `out`.
pub fn execute(server: &Server, cmd: Command, out: &mut BytesMut) -> Flow {
    let counters = server.counters();
    match cmd {
        Command::Get { keys, with_cas, touch } => get(server, &keys, with_cas, touch, out),
        Command::Store(store) => store_classic(server, store, out),
        Command::StoreRejected { key, mode, reason, noreply } => {
            counters.incr(Counter::ProtocolErrors);
            let reply = match reason {
                StoreRejection::TooLarge => {
                    // memcached drops the old value so that a failed set
                    // cannot leave stale data behind.
                    if mode == StoreMode::Set {
                        server.store().delete(&key, None);
                    }
                    "SERVER_ERROR object too large for cache"
                }
                StoreRejection::BadDataChunk => ErrorReply::BadDataChunk.as_str(),
            };
            if !noreply {
                line(out, reply);
            }
        }
        Command::Delete { key, noreply } => {
            let reply = match server.store().delete(&key, None) {
                DeleteOutcome::Deleted => {
                    counters.incr(Counter::DeleteHits);
                    "DELETED"
                }
                _ => {
                    counters.incr(Counter::DeleteMisses);
                    "NOT_FOUND"
                }
            };
            if !noreply {
                line(out, reply);
            }
        }
        Command::Arith { key, delta, incr, noreply } => {
            let req = ArithRequest { key: &key, incr, delta, compare_cas: None, vivify: None, touch: None };
            let outcome = server.store().arith(req);
            count_arith(server, incr, &outcome);
            if !noreply {
                match outcome {
                    ArithOutcome::Value { value, .. } => {
                        number(out, value);
                        out.put_slice(b"\r\n");
                    }
                    ArithOutcome::NotFound | ArithOutcome::Exists => line(out, "NOT_FOUND"),
                    ArithOutcome::NonNumeric => {
                        line(out, "CLIENT_ERROR cannot increment or decrement non-numeric value")
                    }
                }
            }
        }
        Command::Touch { key, exptime, noreply } => {
            counters.incr(Counter::CmdTouch);
            let found = server.store().touch(&key, exptime);
            counters.incr(if found { Counter::TouchHits } else { Counter::TouchMisses });
            if !noreply {
                line(out, if found { "TOUCHED" } else { "NOT_FOUND" });
            }
        }
        Command::FlushAll { delay, noreply } => {
            counters.incr(Counter::CmdFlush);
            server.store().flush_all(delay);
            if !noreply {
                line(out, "OK");
            }
        }
        Command::Stats(group) => stats(server, group, out),
        Command::Version => {
            out.put_slice(b"VERSION ");
            line(out, PROTOCOL_VERSION);
        }
        Command::Verbosity { noreply } => {
            if !noreply {
                line(out, "OK");
            }
        }
        Command::Quit => return Flow::Close,
        Command::MetaGet(mg) => meta_get(server, mg, out),
        Command::MetaSet(ms) => meta_set(server, ms, out),
        Command::MetaDelete(md) => meta_delete(server, md, out),
        Command::MetaArith(ma) => meta_arith(server, ma, out),
        Command::MetaNoop => line(out, "MN"),
        Command::Invalid(reply) => {
            counters.incr(Counter::ProtocolErrors);
            line(out, reply.as_str());
        }
        Command::InvalidQuiet(_) => counters.incr(Counter::ProtocolErrors),
    }
    Flow::Continue
}

fn get(server: &Server, keys: &[bytes::Bytes], with_cas: bool, touch: Option<i64>, out: &mut BytesMut) {
    let counters = server.counters();
    let (mut hits, mut misses) = (0, 0);
    for key in keys {
        let Some(item) = server.store().get(key, touch) else {
            misses += 1;
            continue;
        };
        hits += 1;
        out.put_slice(b"VALUE ");
        out.put_slice(key);
        out.put_u8(b' ');
        number(out, item.flags);
        out.put_u8(b' ');
        number(out, item.value.len());
        if with_cas {
            out.put_u8(b' ');
            number(out, item.cas);
        }
        out.put_slice(b"\r\n");
        out.put_slice(&item.value);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"END\r\n");
    let looked_up = keys.len() as u64;
    counters.add(Counter::CmdGet, looked_up);
    counters.add(Counter::GetHits, hits);
    counters.add(Counter::GetMisses, misses);
    if touch.is_some() {
        counters.add(Counter::CmdTouch, looked_up);
        counters.add(Counter::TouchHits, hits);
        counters.add(Counter::TouchMisses, misses);
    }
}

fn store_classic(server: &Server, cmd: StoreCommand, out: &mut BytesMut) {
    let counters = server.counters();
    counters.incr(Counter::CmdSet);
    let is_cas = cmd.mode == StoreMode::Cas;
    let req = StoreRequest {
        mode: if is_cas { StoreMode::Set } else { cmd.mode },
        key: &cmd.key,
        flags: cmd.flags,
        exptime: cmd.exptime,
        data: &cmd.data,
        compare_cas: is_cas.then_some(cmd.cas),
    };
    let outcome = server.store().store(req);
    if is_cas {
        counters.incr(match outcome {
            StoreOutcome::NotFound => Counter::CasMisses,
            StoreOutcome::Exists => Counter::CasBadval,
            _ => Counter::CasHits,
        });
    }
    if cmd.noreply {
        return;
    }
    line(
        out,
        match outcome {
            StoreOutcome::Stored(_) => "STORED",
            StoreOutcome::NotStored => "NOT_STORED",
            StoreOutcome::Exists => "EXISTS",
            StoreOutcome::NotFound => "NOT_FOUND",
            StoreOutcome::OutOfMemory => "SERVER_ERROR out of memory storing object",
        },
    );
}

fn count_arith(server: &Server, incr: bool, outcome: &ArithOutcome) {
    let found = matches!(outcome, ArithOutcome::Value { .. } | ArithOutcome::NonNumeric);
    server.counters().incr(match (incr, found) {
        (true, true) => Counter::IncrHits,
        (true, false) => Counter::IncrMisses,
        (false, true) => Counter::DecrHits,
        (false, false) => Counter::DecrMisses,
    });
}

/// What the meta echo flags can report about an item.
struct EchoSource<'a> {
    key: &'a [u8],
    item: Option<&'a ItemView>,
    cas: Option<u64>,
    exptime: Option<u32>,
}

/// Appends the echoed flags (` c12 k foo O7` ...) in request order; flags with
/// nothing to report are left out.
fn echo(server: &Server, flags: &[MetaFlag], src: &EchoSource<'_>, out: &mut BytesMut) {
    let now = server.store().clock().now();
    for flag in flags {
        match flag {
            MetaFlag::Key => {
                out.put_slice(b" k");
                out.put_slice(src.key);
            }
            MetaFlag::Opaque(token) => {
                out.put_slice(b" O");
                out.put_slice(token);
            }
            MetaFlag::Cas => {
                if let Some(cas) = src.cas.or(src.item.map(|i| i.cas)) {
                    out.put_slice(b" c");
                    number(out, cas);
                }
            }
            MetaFlag::Ttl => {
                if let Some(exptime) = src.exptime.or(src.item.map(|i| i.exptime)) {
                    out.put_slice(b" t");
                    number(out, server.store().ttl(exptime));
                }
            }
            MetaFlag::ClientFlags | MetaFlag::Hit | MetaFlag::LastAccess | MetaFlag::Size => {
                let Some(item) = src.item else { continue };
                let (letter, value) = match flag {
                    MetaFlag::ClientFlags => (b'f', u64::from(item.flags)),
                    MetaFlag::Hit => (b'h', u64::from(item.fetched_before)),
                    MetaFlag::LastAccess => (b'l', u64::from(now.saturating_sub(item.last_access))),
                    _ => (b's', item.value.len() as u64),
                };
                out.put_u8(b' ');
                out.put_u8(letter);
                number(out, value);
            }
        }
    }
    out.put_slice(b"\r\n");
}

fn meta_get(server: &Server, mg: MetaGet, out: &mut BytesMut) {
    let counters = server.counters();
    counters.incr(Counter::CmdMeta);
    counters.incr(Counter::CmdGet);
    let Some(mut item) = server.store().get(&mg.key, mg.touch) else {
        counters.incr(Counter::GetMisses);
        if !mg.quiet {
            out.put_slice(b"EN");
            let only_tokens: Vec<MetaFlag> =
                mg.echo.into_iter().filter(|f| matches!(f, MetaFlag::Key | MetaFlag::Opaque(_))).collect();
            echo(server, &only_tokens, &EchoSource { key: &mg.key, item: None, cas: None, exptime: None }, out);
        }
        return;
    };
    counters.incr(Counter::GetHits);
    if let Some(touch) = mg.touch {
        item.exptime = server.store().clock().expiry(touch, server.store().clock().now());
    }
    if mg.value {
        out.put_slice(b"VA ");
        number(out, item.value.len());
    } else {
        out.put_slice(b"HD");
    }
    echo(server, &mg.echo, &EchoSource { key: &mg.key, item: Some(&item), cas: None, exptime: None }, out);
    if mg.value {
        out.put_slice(&item.value);
        out.put_slice(b"\r\n");
    }
}

fn meta_set(server: &Server, ms: MetaSet, out: &mut BytesMut) {
    let counters = server.counters();
    counters.incr(Counter::CmdMeta);
    counters.incr(Counter::CmdSet);
    let req = StoreRequest {
        mode: ms.mode,
        key: &ms.key,
        flags: ms.flags,
        exptime: ms.exptime,
        data: &ms.data,
        compare_cas: ms.compare_cas,
    };
    let outcome = server.store().store(req);
    let (code, cas) = match outcome {
        StoreOutcome::Stored(cas) if ms.quiet => {
            let _ = cas;
            return;
        }
        StoreOutcome::Stored(cas) => ("HD", Some(cas)),
        // memcached echoes `c0` when nothing was stored.
        StoreOutcome::NotStored => ("NS", Some(0)),
        StoreOutcome::Exists => ("EX", Some(0)),
        StoreOutcome::NotFound => ("NF", Some(0)),
        StoreOutcome::OutOfMemory => {
            line(out, "SERVER_ERROR out of memory storing object");
            return;
        }
    };
    out.put_slice(code.as_bytes());
    echo(server, &ms.echo, &EchoSource { key: &ms.key, item: None, cas, exptime: None }, out);
}

fn meta_delete(server: &Server, md: MetaDelete, out: &mut BytesMut) {
    let counters = server.counters();
    counters.incr(Counter::CmdMeta);
    let code = match server.store().delete(&md.key, md.compare_cas) {
        DeleteOutcome::Deleted => {
            counters.incr(Counter::DeleteHits);
            if md.quiet {
                return;
            }
            "HD"
        }
        DeleteOutcome::NotFound => {
            counters.incr(Counter::DeleteMisses);
            "NF"
        }
        DeleteOutcome::Exists => "EX",
    };
    out.put_slice(code.as_bytes());
    echo(server, &md.echo, &EchoSource { key: &md.key, item: None, cas: None, exptime: None }, out);
}

fn meta_arith(server: &Server, ma: MetaArith, out: &mut BytesMut) {
    server.counters().incr(Counter::CmdMeta);
    let incr = ma.mode == MetaArithMode::Incr;
    let req = ArithRequest {
        key: &ma.key,
        incr,
        delta: ma.delta,
        compare_cas: ma.compare_cas,
        vivify: ma.vivify.map(|ttl| (ma.initial, ttl)),
        touch: ma.touch,
    };
    let outcome = server.store().arith(req);
    count_arith(server, incr, &outcome);
    let src = |cas, exptime| EchoSource { key: &ma.key, item: None, cas, exptime };
    match outcome {
        ArithOutcome::Value { value, cas, exptime } => {
            let digits = itoa::Buffer::new().format(value).to_owned();
            if ma.value {
                out.put_slice(b"VA ");
                number(out, digits.len());
            } else if ma.quiet {
                return;
            } else {
                out.put_slice(b"HD");
            }
            echo(server, &ma.echo, &src(Some(cas), Some(exptime)), out);
            if ma.value {
                line(out, &digits);
            }
        }
        ArithOutcome::NotFound => {
            out.put_slice(b"NF");
            echo(server, &ma.echo, &src(None, None), out);
        }
        ArithOutcome::Exists => {
            out.put_slice(b"EX");
            echo(server, &ma.echo, &src(None, None), out);
        }
        ArithOutcome::NonNumeric => line(out, "CLIENT_ERROR cannot increment or decrement non-numeric value"),
    }
}

fn stat(out: &mut BytesMut, name: &str, value: impl std::fmt::Display) {
    use std::fmt::Write;
    let mut text = String::with_capacity(48);
    let _ = write!(text, "STAT {name} {value}\r\n");
    out.put_slice(text.as_bytes());
}

fn stats(server: &Server, group: StatsGroup, out: &mut BytesMut) {
    let counters = server.counters();
    let store = server.store();
    let config = store.config();
    match group {
        StatsGroup::Reset => {
            counters.reset();
            store.reset_stats();
            line(out, "RESET");
            return;
        }
        StatsGroup::Settings => {
            stat(out, "maxbytes", config.memory_limit_bytes);
            stat(out, "maxconns", server.settings().max_connections);
            stat(out, "tcpport", server.settings().port);
            stat(out, "num_threads", server.settings().threads);
            stat(out, "item_size_max", config.item_size_max);
            stat(out, "cas_enabled", "yes");
            stat(out, "evictions", "on");
            stat(out, "shards", config.shards);
        }
        StatsGroup::General => {
            let now = store.clock().now();
            let totals = store.stats();
            stat(out, "pid", std::process::id());
            stat(out, "uptime", now);
            stat(out, "time", store.clock().unix_time(now));
            stat(out, "version", PROTOCOL_VERSION);
            stat(out, "pointer_size", usize::BITS);
            stat(out, "max_connections", server.settings().max_connections);
            stat(out, "curr_connections", server.current_connections());
            for (name, counter) in [
                ("total_connections", Counter::TotalConnections),
                ("rejected_connections", Counter::RejectedConnections),
                ("cmd_get", Counter::CmdGet),
                ("cmd_set", Counter::CmdSet),
                ("cmd_flush", Counter::CmdFlush),
                ("cmd_touch", Counter::CmdTouch),
                ("cmd_meta", Counter::CmdMeta),
                ("get_hits", Counter::GetHits),
                ("get_misses", Counter::GetMisses),
                ("delete_misses", Counter::DeleteMisses),
                ("delete_hits", Counter::DeleteHits),
                ("incr_misses", Counter::IncrMisses),
                ("incr_hits", Counter::IncrHits),
                ("decr_misses", Counter::DecrMisses),
                ("decr_hits", Counter::DecrHits),
                ("cas_misses", Counter::CasMisses),
                ("cas_hits", Counter::CasHits),
                ("cas_badval", Counter::CasBadval),
                ("touch_hits", Counter::TouchHits),
                ("touch_misses", Counter::TouchMisses),
                ("bytes_read", Counter::BytesRead),
                ("bytes_written", Counter::BytesWritten),
                ("protocol_errors", Counter::ProtocolErrors),
            ] {
                stat(out, name, counters.get(counter));
            }
            stat(out, "limit_maxbytes", config.memory_limit_bytes);
            stat(out, "threads", server.settings().threads);
            stat(out, "bytes", totals.bytes);
            stat(out, "curr_items", totals.curr_items);
            stat(out, "total_items", totals.total_items);
            stat(out, "expired_unfetched", totals.expired_unfetched);
            stat(out, "evicted_unfetched", totals.evicted_unfetched);
            stat(out, "evictions", totals.evictions);
            stat(out, "reclaimed", totals.reclaimed);
        }
    }
    line(out, "END");
}
