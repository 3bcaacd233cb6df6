//! Runs one decoded command against the store and writes memcached's exact
//! reply into the connection's output buffer (meta commands in `meta.rs`,
//! `stats` in `stats.rs`). No I/O and no runtime here.

use bytes::{BufMut, BytesMut};

mod meta;
mod stats;

use crate::protocol::{AdminCommand, Command, ErrorReply, StoreCommand, StoreMode, StoreRejection};
use crate::server::Server;
use crate::stats::Counter;
use crate::store::{ArithOutcome, ArithRequest, DeleteOutcome, DeleteRequest, StoreOutcome, StoreRequest};

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
        Command::StoreRejected { key, reason, noreply, unlink_old } => {
            counters.incr(Counter::ProtocolErrors);
            let reply = match reason {
                StoreRejection::TooLarge => {
                    counters.incr(Counter::StoreTooLarge);
                    // memcached drops the old value so that a failed set
                    // cannot leave stale data behind.
                    if unlink_old {
                        server.store().delete(&key, DeleteRequest::default());
                    }
                    "SERVER_ERROR object too large for cache"
                }
                StoreRejection::BadDataChunk => {
                    // memcached counts the write before it checks the chunk.
                    counters.incr(Counter::CmdSet);
                    ErrorReply::BadDataChunk.as_str()
                }
            };
            if !noreply {
                line(out, reply);
            }
        }
        Command::Delete { key, noreply } => {
            let reply = match server.store().delete(&key, DeleteRequest::default()) {
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
            let outcome = server.store().arith(ArithRequest::new(&key, incr, delta), |_| {});
            count_arith(server, incr, &outcome, false);
            if !noreply {
                match outcome {
                    ArithOutcome::Value { value, .. } => {
                        number(out, value);
                        out.put_slice(b"\r\n");
                    }
                    ArithOutcome::NotFound | ArithOutcome::Exists => line(out, "NOT_FOUND"),
                    ArithOutcome::NonNumeric => line(out, NON_NUMERIC),
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
            let reply = match delay {
                Some(delay) => {
                    server.store().flush_all(delay);
                    "OK"
                }
                None => {
                    counters.incr(Counter::ProtocolErrors);
                    ErrorReply::InvalidExptime.as_str()
                }
            };
            if !noreply {
                line(out, reply);
            }
        }
        Command::Stats(group) => stats::reply(server, group, out),
        Command::Version => {
            out.put_slice(b"VERSION ");
            line(out, PROTOCOL_VERSION);
        }
        Command::Verbosity { level, noreply } => {
            server.tune(|t| t.verbosity = level);
            if !noreply {
                line(out, "OK");
            }
        }
        Command::Admin { command, noreply } => {
            admin(server, command);
            if !noreply {
                line(out, "OK");
            }
        }
        Command::Ok => line(out, "OK"),
        Command::HangUp => {
            counters.incr(Counter::ProtocolErrors);
            return Flow::Close;
        }
        Command::Quit => return Flow::Close,
        Command::MetaGet(request) => meta::get(server, request, out),
        Command::MetaSet(request) => meta::set(server, request, out),
        Command::MetaDelete(request) => meta::delete(server, request, out),
        Command::MetaArith(request) => meta::arith(server, request, out),
        Command::MetaDebug(request) => meta::debug(server, request, out),
        Command::MetaNoop => line(out, "MN"),
        Command::MetaInvalid(reply) => {
            counters.incr(Counter::ProtocolErrors);
            line(out, reply);
        }
        Command::Invalid(reply) => {
            counters.incr(Counter::ProtocolErrors);
            line(out, reply.as_str());
        }
        Command::InvalidQuiet(_) => counters.incr(Counter::ProtocolErrors),
    }
    Flow::Continue
}

/// memcached's answer to arithmetic on a value that is not a number.
const NON_NUMERIC: &str = "CLIENT_ERROR cannot increment or decrement non-numeric value";

/// Applies an accepted administration command.
fn admin(server: &Server, command: AdminCommand) {
    match command {
        AdminCommand::SlabsAutomove(level) => server.tune(|t| t.slab_automove = level),
        AdminCommand::SlabsAutomoveRatio(ratio) => server.tune(|t| t.slab_automove_ratio = ratio),
        AdminCommand::LruTune { hot_pct, warm_pct, hot_factor, warm_factor } => server.tune(|t| {
            (t.hot_lru_pct, t.warm_lru_pct, t.hot_max_factor, t.warm_max_factor) =
                (hot_pct, warm_pct, hot_factor, warm_factor);
        }),
        AdminCommand::CrawlerToCrawl(items) => server.tune(|t| t.lru_crawler_tocrawl = items),
        AdminCommand::CrawlerSleep(micros) => server.tune(|t| t.lru_crawler_sleep = micros),
        AdminCommand::CacheMemlimit { mebibytes } => {
            server.store().set_memory_limit(mebibytes as usize * 1024 * 1024);
        }
    }
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
    // memcached counts `gat`/`gats` keys as touches only.
    if touch.is_some() {
        counters.add(Counter::CmdTouch, looked_up);
        counters.add(Counter::TouchHits, hits);
        counters.add(Counter::TouchMisses, misses);
    } else {
        counters.add(Counter::CmdGet, looked_up);
        counters.add(Counter::GetHits, hits);
        counters.add(Counter::GetMisses, misses);
    }
}

fn store_classic(server: &Server, cmd: StoreCommand, out: &mut BytesMut) {
    let counters = server.counters();
    counters.incr(Counter::CmdSet);
    let is_cas = cmd.mode == StoreMode::Cas;
    let req = StoreRequest {
        compare_cas: is_cas.then_some(cmd.cas),
        ..StoreRequest::new(cmd.mode, &cmd.key, cmd.flags, cmd.exptime, &cmd.data)
    };
    let outcome = server.store().store(req);
    count_store(server, &req, outcome);
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

/// Counts a write as memcached does: compare-and-swaps by outcome, and
/// items that cannot fit.
fn count_store(server: &Server, req: &StoreRequest<'_>, outcome: StoreOutcome) {
    let counters = server.counters();
    if req.is_compare_and_swap() {
        match outcome {
            StoreOutcome::NotFound => counters.incr(Counter::CasMisses),
            StoreOutcome::Exists => counters.incr(Counter::CasBadval),
            StoreOutcome::Stored(_) => counters.incr(Counter::CasHits),
            _ => {}
        }
    }
    if outcome == StoreOutcome::OutOfMemory {
        counters.incr(Counter::StoreNoMemory);
    }
}

/// Counts an arithmetic command as memcached does: a changed item is a hit,
/// a missing one a miss, a non-numeric value or a created item neither.
fn count_arith(server: &Server, incr: bool, outcome: &ArithOutcome, created: bool) {
    let counter = match (outcome, incr) {
        (ArithOutcome::Value { .. }, _) if created => return,
        (ArithOutcome::Value { .. }, true) => Counter::IncrHits,
        (ArithOutcome::Value { .. }, false) => Counter::DecrHits,
        (ArithOutcome::NotFound, true) => Counter::IncrMisses,
        (ArithOutcome::NotFound, false) => Counter::DecrMisses,
        (ArithOutcome::NonNumeric | ArithOutcome::Exists, _) => return,
    };
    server.counters().incr(counter);
}
