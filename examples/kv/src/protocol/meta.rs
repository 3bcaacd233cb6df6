//! The meta commands (`mg`, `ms`, `md`, `ma`, `me`): a key (plain, or base64
//! with `b`) and single-letter flags, some with a token argument (`T30`,
//! `Oopaque`, `C123`), read with memcached's rules and its error words.

use std::ops::Range;

use bytes::Bytes;

use super::base64::decode_base64;
use super::number::{parse_i32, parse_u32, parse_u64};
use super::text::{LineOutcome, PendingData, data_length};
use super::{Command, ErrorReply, KEY_MAX_BYTES, StoreMode, valid_key};

/// memcached refuses a meta line with this many tokens or more (counting the
/// command and the key; its tokenizer stops counting at 24).
const META_TOKENS_MAX: usize = 20;
/// Longest opaque token (`O` included) memcached echoes.
pub const OPAQUE_MAX_BYTES: usize = 32;

const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";

/// What a meta command's flags ask for, besides the flags to echo.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetaOptions {
    /// `v`: return the value.
    pub value: bool,
    /// `q`: no reply on the nominal outcome (`EN` for `mg`, `HD` otherwise).
    pub quiet: bool,
    /// `u`: no LRU bump, no fetched mark.
    pub no_update: bool,
    /// `I`: invalidate (`md`: mark stale; `ms`: an older CAS stores stale).
    pub invalidate: bool,
    /// `N<ttl>`: create the item on a miss, with this expiration time.
    pub vivify: Option<i64>,
    /// `T<ttl>`: a new expiration time.
    pub touch: Option<i64>,
    /// `R<ttl>`: win the recache token when fewer seconds remain.
    pub recache: Option<i64>,
    /// `F<flags>` (`ms`).
    pub client_flags: u32,
    /// `C<cas>`: compare.
    pub compare_cas: Option<u64>,
    /// `E<cas>`: the CAS unique to give a changed item (memcached 1.6.27+).
    pub explicit_cas: Option<u64>,
    /// `M<mode>`: the mode letter (`ms`, `ma`).
    pub mode: Option<u8>,
    /// `D<delta>` (`ma`, default 1).
    pub delta: u64,
    /// `J<initial>` (`ma`, default 0).
    pub initial: u64,
    /// An `O` token longer than [`OPAQUE_MAX_BYTES`]: memcached answers an
    /// error, for `mg` and `ma` after the command ran.
    pub opaque_too_long: bool,
}

/// A meta command's key and flags.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaRequest {
    /// The key (decoded from base64 with `b`).
    pub key: Bytes,
    /// The key came in base64: echoes encode it again and add ` b`.
    pub key_binary: bool,
    /// Every flag as (letter, argument), in request order (echoes follow it).
    pub flags: Vec<(u8, Bytes)>,
    /// What the flags ask for.
    pub options: MetaOptions,
}

/// `ms <key> <datalen> <flags>*` and its data block.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaSet {
    /// Key and flags.
    pub request: MetaRequest,
    /// The mode (`M`; a compare-and-swap when `C` is given in set mode).
    pub mode: StoreMode,
    /// The data block (empty until it arrives).
    pub data: Bytes,
}

/// Direction of `ma`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaArithMode {
    /// `MI`, `M+` (default).
    Incr,
    /// `MD`, `M-`.
    Decr,
}

impl MetaRequest {
    /// The direction `ma` asked for (checked at parse time).
    pub fn arith_mode(&self) -> MetaArithMode {
        match self.options.mode {
            Some(b'D' | b'-') => MetaArithMode::Decr,
            _ => MetaArithMode::Incr,
        }
    }
}

fn invalid(reply: &'static str) -> LineOutcome {
    LineOutcome::Command(Command::MetaInvalid(reply))
}

/// Parses `mg`/`ms`/`md`/`ma`/`me` (the command word is two letters).
pub(crate) fn parse(line: &Bytes, tokens: &[Range<usize>]) -> LineOutcome {
    let tok = |i: usize| &line[tokens[i].clone()];
    let command = tok(0)[1];
    let n = tokens.len();
    if command == b'e' {
        return parse_debug(line, tokens);
    }
    if n < 2 {
        return LineOutcome::Command(Command::Invalid(ErrorReply::Error));
    }
    if tokens[1].len() > KEY_MAX_BYTES || (command == b's' && n == 2) {
        return invalid(BAD_FORMAT);
    }
    if n >= META_TOKENS_MAX {
        return invalid(if command == b'g' {
            "CLIENT_ERROR options flags are too long"
        } else {
            "CLIENT_ERROR options flags too long"
        });
    }
    match command {
        b'g' => match preparse(line, tokens, 2) {
            Ok(request) => LineOutcome::Command(Command::MetaGet(request)),
            Err(reply) => invalid(reply),
        },
        b's' => parse_set(line, tokens),
        b'd' => match preparse(line, tokens, 2) {
            Err(_) => invalid("CLIENT_ERROR invalid or duplicate flag"),
            Ok(request) if request.options.opaque_too_long => invalid("CLIENT_ERROR opaque token too long"),
            Ok(request) => LineOutcome::Command(Command::MetaDelete(request)),
        },
        b'a' => match preparse(line, tokens, 2) {
            Err(_) => invalid("CLIENT_ERROR invalid or duplicate flag"),
            Ok(request) if !matches!(request.options.mode, None | Some(b'I' | b'+' | b'D' | b'-')) => {
                invalid("CLIENT_ERROR invalid mode for ma M token")
            }
            Ok(request) => LineOutcome::Command(Command::MetaArith(request)),
        },
        _ => LineOutcome::Command(Command::Invalid(ErrorReply::Error)),
    }
}

/// `me <key> [b]`: memcached reads only a `b` right after the key.
fn parse_debug(line: &Bytes, tokens: &[Range<usize>]) -> LineOutcome {
    if tokens.len() < 2 || tokens[1].len() > KEY_MAX_BYTES {
        return invalid(BAD_FORMAT);
    }
    let key_binary = tokens.get(2).is_some_and(|r| &line[r.clone()] == b"b");
    match key_token(line.slice(tokens[1].clone()), key_binary) {
        Some(key) => LineOutcome::Command(Command::MetaDebug(MetaRequest {
            key,
            key_binary,
            flags: Vec::new(),
            options: MetaOptions::default(),
        })),
        None => invalid(BAD_FORMAT),
    }
}

/// The key a key token names: base64-decoded with `b` (any bytes), else as
/// sent (this server refuses control characters in plain keys).
fn key_token(token: Bytes, binary: bool) -> Option<Bytes> {
    if binary {
        return decode_base64(&token).map(Bytes::from);
    }
    valid_key(&token).then_some(token)
}

/// memcached's flag pass (`_meta_flag_preparse`): a repeated or unknown flag
/// stops it at once; a bad argument is remembered and reading goes on (the
/// last such error is the one answered).
fn preparse(line: &Bytes, tokens: &[Range<usize>], first_flag: usize) -> Result<MetaRequest, &'static str> {
    let mut seen = [false; 127];
    let mut failure: Option<&'static str> = None;
    let mut options = MetaOptions { delta: 1, ..MetaOptions::default() };
    let mut flags = Vec::with_capacity(tokens.len().saturating_sub(first_flag));
    let key_text = line.slice(tokens[1].clone());
    let mut key = valid_key(&key_text).then(|| key_text.clone());
    let mut key_binary = false;
    for range in &tokens[first_flag..] {
        let letter = line[range.start];
        let arg = line.slice(range.start + 1..range.end);
        if letter >= 127 || std::mem::replace(&mut seen[usize::from(letter)], true) {
            return Err("CLIENT_ERROR duplicate flag");
        }
        let mut fail = |reply: &'static str| failure = Some(reply);
        match letter {
            b'b' => {
                key_binary = true;
                key = decode_base64(&key_text).map(Bytes::from);
                if key.is_none() {
                    fail("CLIENT_ERROR error decoding key");
                }
            }
            b'N' => match parse_i32(&arg) {
                Some(ttl) => options.vivify = Some(ttl),
                None => fail(BAD_TOKEN),
            },
            b'T' => match parse_i32(&arg) {
                Some(ttl) => options.touch = Some(ttl),
                None => fail(BAD_TOKEN),
            },
            b'R' => match parse_i32(&arg) {
                Some(ttl) => options.recache = Some(ttl),
                None => fail(BAD_TOKEN),
            },
            b'O' => options.opaque_too_long |= range.len() > OPAQUE_MAX_BYTES,
            b'l' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'h' => {}
            b'v' => options.value = true,
            b'u' => options.no_update = true,
            b'q' => options.quiet = true,
            b'I' => options.invalidate = true,
            // memcached leaves its default error for a bad `F`.
            b'F' => match parse_u32(&arg) {
                Some(f) => options.client_flags = f,
                None => {
                    failure.get_or_insert(BAD_FORMAT);
                }
            },
            b'C' => match parse_u64(&arg) {
                Some(cas) => options.compare_cas = Some(cas),
                None => fail(BAD_TOKEN),
            },
            b'E' => match parse_u64(&arg) {
                Some(cas) => options.explicit_cas = Some(cas),
                None => fail(BAD_TOKEN),
            },
            b'M' if arg.len() == 1 => options.mode = Some(arg[0]),
            b'M' => fail("CLIENT_ERROR incorrect length for M token"),
            b'J' => match parse_u64(&arg) {
                Some(v) => options.initial = v,
                None => fail("CLIENT_ERROR invalid numeric initial value"),
            },
            b'D' => match parse_u64(&arg) {
                Some(v) => options.delta = v,
                None => fail("CLIENT_ERROR invalid numeric delta value"),
            },
            _ => return Err("CLIENT_ERROR invalid flag"),
        }
        flags.push((letter, arg));
    }
    match (key, failure) {
        (_, Some(reply)) => Err(reply),
        (None, None) => Err(BAD_FORMAT),
        (Some(key), None) => Ok(MetaRequest { key, key_binary, flags, options }),
    }
}

/// `ms`: a refused flag after a valid length still swallows the data block,
/// as memcached does; a bad length does not.
fn parse_set(line: &Bytes, tokens: &[Range<usize>]) -> LineOutcome {
    let Some(len) = parse_i32(&line[tokens[2].clone()]).and_then(data_length) else {
        return invalid(BAD_FORMAT);
    };
    let refused = |reply| LineOutcome::Refused(Command::MetaInvalid(reply), len);
    let request = match preparse(line, tokens, 3) {
        Ok(request) => request,
        Err(reply) => return refused(reply),
    };
    let compare = request.options.compare_cas.is_some();
    let mode = match request.options.mode {
        None | Some(b'S') if compare => StoreMode::Cas,
        None | Some(b'S') => StoreMode::Set,
        Some(b'E') => StoreMode::Add,
        Some(b'A') => StoreMode::Append,
        Some(b'P') => StoreMode::Prepend,
        Some(b'R') => StoreMode::Replace,
        Some(_) => return refused("CLIENT_ERROR invalid mode for ms M token"),
    };
    if request.options.opaque_too_long {
        return refused("CLIENT_ERROR opaque token too long");
    }
    LineOutcome::Data(PendingData::Meta(Box::new(MetaSet { request, mode, data: Bytes::new() })), len)
}
