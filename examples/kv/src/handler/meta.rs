//! The meta commands' replies: status code, then the flags echoed in request
//! order, as memcached 1.6 writes them (`W`/`X`/`Z` after the flags).

use bytes::{BufMut, Bytes, BytesMut};

use super::{NON_NUMERIC, count_arith, count_store, line, number};
use crate::protocol::{MetaArithMode, MetaRequest, MetaSet, OPAQUE_MAX_BYTES, encode_base64};
use crate::server::Server;
use crate::stats::Counter;
use crate::store::{
    ArithOutcome, ArithRequest, DeleteOutcome, DeleteRequest, MetaGetRequest, MetaItem, StoreOutcome, StoreRequest,
};

const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long";

/// ` k<key>`, the key in base64 followed by ` b` when it came that way.
fn echo_key(out: &mut BytesMut, key: &[u8], binary: bool) {
    out.put_slice(b" k");
    if binary {
        out.put_slice(&encode_base64(key));
        out.put_slice(b" b");
    } else {
        out.put_slice(key);
    }
}

/// The flags every outcome echoes (opaque tokens and the key), and `c` with
/// the unique given (`ms` echoes the stored item's, or 0).
fn echo_request(out: &mut BytesMut, request: &MetaRequest, cas: Option<u64>) {
    for (letter, arg) in &request.flags {
        match (letter, cas) {
            (b'O', _) => {
                out.put_slice(b" O");
                out.put_slice(arg);
            }
            (b'k', _) => echo_key(out, &request.key, request.key_binary),
            (b'c', Some(cas)) => {
                out.put_slice(b" c");
                number(out, cas);
            }
            _ => {}
        }
    }
}

fn ttl(out: &mut BytesMut, item: &MetaItem<'_>) {
    out.put_slice(b" t");
    number(out, item.ttl());
}

/// `mg`: reads (and maybe creates, touches, marks) the item; the reply's
/// flags follow the request's order, and `T`, `N` and `R` act where they
/// stand (a `t` before a `T` reports the old time, as in memcached).
pub(super) fn get(server: &Server, request: MetaRequest, out: &mut BytesMut) {
    let counters = server.counters();
    let options = &request.options;
    // Flags that make memcached hold the item and bump it only after a
    // successful reply.
    let locked = request.flags.iter().any(|(l, _)| matches!(l, b'N' | b'T' | b'R' | b'l' | b'h'));
    let store_request = MetaGetRequest {
        no_update: options.no_update || (options.opaque_too_long && locked),
        vivify: options.vivify.is_some(),
        touch: options.touch.is_some(),
        explicit_cas: options.explicit_cas,
    };
    let mut header = BytesMut::new();
    let value = server.store().meta_get(&request.key, store_request, |item| {
        if options.value {
            header.put_slice(b"VA ");
            number(&mut header, item.value().len());
        } else {
            header.put_slice(b"HD");
        }
        let mut won = false;
        for (letter, arg) in &request.flags {
            match letter {
                b'T' => item.set_expiry(options.touch.unwrap_or(0)),
                b'N' if item.created() => {
                    item.set_expiry(options.vivify.unwrap_or(0));
                    won = true;
                }
                b'R' => {
                    let recache_at = item.expiry_of(options.recache.unwrap_or(0));
                    won |= !item.token_sent() && !item.created() && item.exptime() != 0 && item.exptime() < recache_at;
                }
                b's' => {
                    header.put_slice(b" s");
                    number(&mut header, item.value().len());
                }
                b't' => ttl(&mut header, item),
                b'c' => {
                    header.put_slice(b" c");
                    number(&mut header, item.cas());
                }
                b'f' => {
                    header.put_slice(b" f");
                    number(&mut header, item.flags());
                }
                b'l' => {
                    header.put_slice(b" l");
                    number(&mut header, item.idle_secs());
                }
                b'h' => header.put_slice(if item.fetched() { b" h1" } else { b" h0" }),
                // memcached stops at an overlong opaque: no marks after it.
                b'O' if arg.len() + 1 > OPAQUE_MAX_BYTES => return None,
                b'O' => {
                    header.put_slice(b" O");
                    header.put_slice(arg);
                }
                b'k' => echo_key(&mut header, item.key(), item.key_binary()),
                _ => {}
            }
        }
        // Z before X and W, and never W with Z.
        if item.token_sent() {
            header.put_slice(b" Z");
        }
        if item.stale() {
            header.put_slice(b" X");
            won |= !item.token_sent();
        }
        if won {
            header.put_slice(b" W");
            item.send_token();
        }
        header.put_slice(b"\r\n");
        Some(options.value.then(|| item.value().clone()))
    });
    let Some(value) = value else {
        // memcached counts a miss as a get even with `T`.
        counters.incr(Counter::CmdGet);
        counters.incr(Counter::GetMisses);
        if options.opaque_too_long {
            line(out, OPAQUE_TOO_LONG);
        } else if !options.quiet {
            out.put_slice(b"EN");
            echo_request(out, &request, None);
            out.put_slice(b"\r\n");
        }
        return;
    };
    let Some(value) = value.filter(|_| !options.opaque_too_long) else {
        line(out, OPAQUE_TOO_LONG);
        return;
    };
    let (command, hit) = match options.touch {
        Some(_) => (Counter::CmdTouch, Counter::TouchHits),
        None => (Counter::CmdGet, Counter::GetHits),
    };
    counters.incr(command);
    counters.incr(hit);
    out.put_slice(&header);
    if let Some(value) = value {
        out.put_slice(&value);
        out.put_slice(b"\r\n");
    }
}

/// `ms`: `HD` (silenced by `q`), `NS`, `EX` or `NF`, then `O`, `k` and `c`
/// in request order (`c0` when nothing was stored).
pub(super) fn set(server: &Server, ms: MetaSet, out: &mut BytesMut) {
    server.counters().incr(Counter::CmdSet);
    let MetaSet { request, mode, data } = ms;
    let options = &request.options;
    let req = StoreRequest {
        compare_cas: options.compare_cas,
        key_binary: request.key_binary,
        invalidate: options.invalidate,
        explicit_cas: options.explicit_cas,
        ..StoreRequest::new(mode, &request.key, options.client_flags, options.touch.unwrap_or(0), &data)
    };
    let outcome = server.store().store(req);
    count_store(server, &req, outcome);
    let (code, cas) = match outcome {
        StoreOutcome::Stored(_) if options.quiet => return,
        StoreOutcome::Stored(cas) => ("HD", cas),
        StoreOutcome::NotStored => ("NS", 0),
        StoreOutcome::Exists => ("EX", 0),
        StoreOutcome::NotFound => ("NF", 0),
        StoreOutcome::OutOfMemory => {
            line(out, "SERVER_ERROR out of memory storing object");
            return;
        }
    };
    out.put_slice(code.as_bytes());
    echo_request(out, &request, Some(cas));
    out.put_slice(b"\r\n");
}

/// `md`: removes the item, or with `I` marks it stale.
pub(super) fn delete(server: &Server, request: MetaRequest, out: &mut BytesMut) {
    let counters = server.counters();
    let options = &request.options;
    let req = DeleteRequest {
        compare_cas: options.compare_cas,
        invalidate: options.invalidate,
        touch: options.touch,
        explicit_cas: options.explicit_cas,
    };
    let code: &[u8] = match server.store().delete(&request.key, req) {
        DeleteOutcome::Deleted => {
            if !options.invalidate {
                counters.incr(Counter::DeleteHits);
            }
            if options.quiet {
                return;
            }
            b"HD"
        }
        DeleteOutcome::NotFound => {
            counters.incr(Counter::DeleteMisses);
            b"NF"
        }
        // memcached counts a CAS mismatch as a miss too.
        DeleteOutcome::Exists => {
            counters.incr(Counter::DeleteMisses);
            b"EX"
        }
    };
    out.put_slice(code);
    echo_request(out, &request, None);
    out.put_slice(b"\r\n");
}

/// `ma`: the arithmetic, then `HD` or `VA` with `c`, `t`, `O`, `k` in
/// request order (`T` and `N` act where they stand).
pub(super) fn arith(server: &Server, request: MetaRequest, out: &mut BytesMut) {
    let options = &request.options;
    let incr = request.arith_mode() == MetaArithMode::Incr;
    let req = ArithRequest {
        compare_cas: options.compare_cas,
        vivify: options.vivify.map(|_| options.initial),
        explicit_cas: options.explicit_cas,
        ..ArithRequest::new(&request.key, incr, options.delta)
    };
    let mut header = BytesMut::new();
    let mut created = false;
    let outcome = server.store().arith(req, |item| {
        created = item.created();
        let digits = Bytes::copy_from_slice(item.value().trim_ascii_end());
        if options.value {
            header.put_slice(b"VA ");
            number(&mut header, digits.len());
        } else {
            header.put_slice(b"HD");
        }
        for (letter, arg) in &request.flags {
            match letter {
                b'c' => {
                    header.put_slice(b" c");
                    number(&mut header, item.cas());
                }
                b't' => ttl(&mut header, item),
                b'T' => item.set_expiry(options.touch.unwrap_or(0)),
                b'N' if item.created() => item.set_expiry(options.vivify.unwrap_or(0)),
                b'O' => {
                    header.put_slice(b" O");
                    header.put_slice(arg);
                }
                b'k' => echo_key(&mut header, &request.key, request.key_binary),
                _ => {}
            }
        }
        header.put_slice(b"\r\n");
        if options.value {
            header.put_slice(&digits);
            header.put_slice(b"\r\n");
        }
    });
    count_arith(server, incr, &outcome, created);
    if options.opaque_too_long && outcome != ArithOutcome::NonNumeric {
        line(out, OPAQUE_TOO_LONG);
        return;
    }
    match outcome {
        ArithOutcome::Value { .. } if options.quiet && !created => {}
        ArithOutcome::Value { .. } => out.put_slice(&header),
        ArithOutcome::NotFound | ArithOutcome::Exists => {
            out.put_slice(if outcome == ArithOutcome::NotFound { b"NF" } else { b"EX" });
            echo_request(out, &request, None);
            out.put_slice(b"\r\n");
        }
        ArithOutcome::NonNumeric => line(out, NON_NUMERIC),
    }
}

/// `me`: memcached's debug line (its `exp` is the current time minus the
/// expiry, so it is negative for a live item, as in memcached 1.6.18).
pub(super) fn debug(server: &Server, request: MetaRequest, out: &mut BytesMut) {
    server.counters().incr(Counter::CmdMeta);
    let found = server.store().meta_debug(&request.key, |item| {
        out.put_slice(b"ME ");
        if item.key_binary() {
            out.put_slice(&encode_base64(item.key()));
        } else {
            out.put_slice(item.key());
        }
        out.put_slice(b" exp=");
        number(out, if item.exptime() == 0 { -1 } else { -item.ttl() });
        out.put_slice(b" la=");
        number(out, item.idle_secs());
        out.put_slice(b" cas=");
        number(out, item.cas());
        out.put_slice(if item.fetched() { b" fetch=yes" } else { b" fetch=no" });
        out.put_slice(b" cls=");
        number(out, item.class());
        out.put_slice(b" size=");
        number(out, item.total_size());
        out.put_slice(b"\r\n");
    });
    if found.is_none() {
        line(out, "EN");
    }
}
