//! The meta commands (`mg`, `ms`, `md`, `ma`): a key and single-letter flags,
//! some with a token argument (`T30`, `Oopaque`, `C123`).

use std::ops::Range;

use bytes::Bytes;

use super::number::{parse_i32, parse_u32, parse_u64};
use super::text::{LineOutcome, PendingData};
use super::{Command, ErrorReply, StoreMode, valid_key};

/// A flag whose value is echoed in the reply, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaFlag {
    /// `c`: the CAS unique.
    Cas,
    /// `f`: the client flags.
    ClientFlags,
    /// `h`: whether the item was fetched before (`h0`/`h1`).
    Hit,
    /// `k`: the key.
    Key,
    /// `l`: seconds since the last access.
    LastAccess,
    /// `O<token>`: an opaque token, echoed.
    Opaque(Bytes),
    /// `s`: the value's size.
    Size,
    /// `t`: seconds to expiry, `-1` for never.
    Ttl,
}

/// `mg <key> <flags>*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaGet {
    /// The key.
    pub key: Bytes,
    /// Flags to echo, in request order.
    pub echo: Vec<MetaFlag>,
    /// `v`: return the value.
    pub value: bool,
    /// `q`: no `EN` on a miss.
    pub quiet: bool,
    /// `T<ttl>`: touch.
    pub touch: Option<i64>,
}

/// `ms <key> <datalen> <flags>*` and its data block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaSet {
    /// The key.
    pub key: Bytes,
    /// The data block (empty until it arrives).
    pub data: Bytes,
    /// Flags to echo (`c`, `k`, `O`).
    pub echo: Vec<MetaFlag>,
    /// `M<mode>`; default set.
    pub mode: StoreMode,
    /// `F<flags>`.
    pub flags: u32,
    /// `T<ttl>`; default 0 (never).
    pub exptime: i64,
    /// `C<cas>`: compare.
    pub compare_cas: Option<u64>,
    /// `q`: no `HD` on success.
    pub quiet: bool,
}

/// `md <key> <flags>*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaDelete {
    /// The key.
    pub key: Bytes,
    /// Flags to echo (`k`, `O`).
    pub echo: Vec<MetaFlag>,
    /// `C<cas>`: compare.
    pub compare_cas: Option<u64>,
    /// `q`: no `HD` on success.
    pub quiet: bool,
}

/// Direction of `ma`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaArithMode {
    /// `MI`, `M+` (default).
    Incr,
    /// `MD`, `M-`.
    Decr,
}

/// `ma <key> <flags>*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaArith {
    /// The key.
    pub key: Bytes,
    /// Flags to echo (`c`, `t`, `k`, `O`).
    pub echo: Vec<MetaFlag>,
    /// Direction.
    pub mode: MetaArithMode,
    /// `D<delta>`, default 1.
    pub delta: u64,
    /// `N<ttl>`: create a missing item with this expiration.
    pub vivify: Option<i64>,
    /// `J<initial>`, default 0: the value of a created item.
    pub initial: u64,
    /// `T<ttl>`: new expiration on success.
    pub touch: Option<i64>,
    /// `C<cas>`: compare.
    pub compare_cas: Option<u64>,
    /// `v`: return the new value.
    pub value: bool,
    /// `q`: no `HD` on success.
    pub quiet: bool,
}

/// The flags of one meta command line, before they are sorted per command.
struct Flags<'a> {
    line: &'a Bytes,
    tokens: &'a [Range<usize>],
}

impl<'a> Flags<'a> {
    /// Each flag token as (letter, argument).
    fn each(&self) -> impl Iterator<Item = (u8, Bytes)> + 'a {
        let line = self.line;
        self.tokens.iter().map(move |r| (line[r.start], line.slice(r.start + 1..r.end)))
    }
}

fn invalid(reply: ErrorReply) -> LineOutcome {
    LineOutcome::Command(Command::Invalid(reply))
}

/// A numeric flag argument or the reply that refuses it.
fn arg<T>(value: Option<T>, refusal: ErrorReply) -> Result<T, ErrorReply> {
    value.ok_or(refusal)
}

/// Parses `mg`/`ms`/`md`/`ma` (at least a key token is present).
pub(crate) fn parse(line: &Bytes, tokens: &[Range<usize>]) -> LineOutcome {
    let key = line.slice(tokens[1].clone());
    if !valid_key(&key) {
        return invalid(ErrorReply::BadFormat);
    }
    let result = match &line[tokens[0].clone()] {
        b"mg" => parse_get(key, Flags { line, tokens: &tokens[2..] }).map(Command::MetaGet).map(LineOutcome::Command),
        b"md" => parse_delete(key, Flags { line, tokens: &tokens[2..] })
            .map(|d| LineOutcome::Command(Command::MetaDelete(d))),
        b"ma" => {
            parse_arith(key, Flags { line, tokens: &tokens[2..] }).map(|a| LineOutcome::Command(Command::MetaArith(a)))
        }
        _ => parse_set(key, line, tokens),
    };
    result.unwrap_or_else(invalid)
}

fn parse_get(key: Bytes, flags: Flags<'_>) -> Result<MetaGet, ErrorReply> {
    let mut get = MetaGet { key, echo: Vec::new(), value: false, quiet: false, touch: None };
    for (letter, value) in flags.each() {
        match letter {
            b'c' => get.echo.push(MetaFlag::Cas),
            b'f' => get.echo.push(MetaFlag::ClientFlags),
            b'h' => get.echo.push(MetaFlag::Hit),
            b'k' => get.echo.push(MetaFlag::Key),
            b'l' => get.echo.push(MetaFlag::LastAccess),
            b'O' => get.echo.push(MetaFlag::Opaque(value)),
            b's' => get.echo.push(MetaFlag::Size),
            b't' => get.echo.push(MetaFlag::Ttl),
            b'v' => get.value = true,
            b'q' => get.quiet = true,
            b'T' => get.touch = Some(arg(parse_i32(&value), ErrorReply::BadToken)?),
            _ => return Err(ErrorReply::InvalidFlag),
        }
    }
    Ok(get)
}

/// `ms`: a refused flag after a valid length still swallows the data block,
/// as memcached does.
fn parse_set(key: Bytes, line: &Bytes, tokens: &[Range<usize>]) -> Result<LineOutcome, ErrorReply> {
    let len = tokens.get(2).and_then(|r| parse_i32(&line[r.clone()])).ok_or(ErrorReply::BadFormat)?;
    let len = usize::try_from(len).map_err(|_| ErrorReply::BadFormat)?;
    match parse_set_flags(key, line, &tokens[3..]) {
        Ok(set) => Ok(LineOutcome::Data(PendingData::Meta(set), len)),
        Err(reply) => Ok(LineOutcome::Refused(Command::Invalid(reply), len)),
    }
}

fn parse_set_flags(key: Bytes, line: &Bytes, tokens: &[Range<usize>]) -> Result<MetaSet, ErrorReply> {
    let mut set = MetaSet {
        key,
        data: Bytes::new(),
        echo: Vec::new(),
        mode: StoreMode::Set,
        flags: 0,
        exptime: 0,
        compare_cas: None,
        quiet: false,
    };
    for (letter, value) in (Flags { line, tokens }).each() {
        match letter {
            b'c' => set.echo.push(MetaFlag::Cas),
            b'k' => set.echo.push(MetaFlag::Key),
            b'O' => set.echo.push(MetaFlag::Opaque(value)),
            b'q' => set.quiet = true,
            b'F' => set.flags = arg(parse_u32(&value), ErrorReply::BadFormat)?,
            b'T' => set.exptime = arg(parse_i32(&value), ErrorReply::BadFormat)?,
            b'C' => set.compare_cas = Some(arg(parse_u64(&value), ErrorReply::BadFormat)?),
            b'M' => {
                set.mode = match value.first().map(u8::to_ascii_uppercase) {
                    Some(b'E') => StoreMode::Add,
                    Some(b'A') => StoreMode::Append,
                    Some(b'P') => StoreMode::Prepend,
                    Some(b'R') => StoreMode::Replace,
                    Some(b'S') => StoreMode::Set,
                    _ => return Err(ErrorReply::InvalidFlag),
                }
            }
            _ => return Err(ErrorReply::InvalidFlag),
        }
    }
    Ok(set)
}

fn parse_delete(key: Bytes, flags: Flags<'_>) -> Result<MetaDelete, ErrorReply> {
    let mut delete = MetaDelete { key, echo: Vec::new(), compare_cas: None, quiet: false };
    for (letter, value) in flags.each() {
        match letter {
            b'k' => delete.echo.push(MetaFlag::Key),
            b'O' => delete.echo.push(MetaFlag::Opaque(value)),
            b'q' => delete.quiet = true,
            b'C' => delete.compare_cas = Some(arg(parse_u64(&value), ErrorReply::BadToken)?),
            _ => return Err(ErrorReply::InvalidFlag),
        }
    }
    Ok(delete)
}

fn parse_arith(key: Bytes, flags: Flags<'_>) -> Result<MetaArith, ErrorReply> {
    let mut arith = MetaArith {
        key,
        echo: Vec::new(),
        mode: MetaArithMode::Incr,
        delta: 1,
        vivify: None,
        initial: 0,
        touch: None,
        compare_cas: None,
        value: false,
        quiet: false,
    };
    for (letter, value) in flags.each() {
        match letter {
            b'c' => arith.echo.push(MetaFlag::Cas),
            b't' => arith.echo.push(MetaFlag::Ttl),
            b'k' => arith.echo.push(MetaFlag::Key),
            b'O' => arith.echo.push(MetaFlag::Opaque(value)),
            b'v' => arith.value = true,
            b'q' => arith.quiet = true,
            b'D' => arith.delta = arg(parse_u64(&value), ErrorReply::InvalidOrDuplicateFlag)?,
            b'J' => arith.initial = arg(parse_u64(&value), ErrorReply::InvalidOrDuplicateFlag)?,
            b'N' => arith.vivify = Some(arg(parse_i32(&value), ErrorReply::InvalidOrDuplicateFlag)?),
            b'T' => arith.touch = Some(arg(parse_i32(&value), ErrorReply::InvalidOrDuplicateFlag)?),
            b'C' => arith.compare_cas = Some(arg(parse_u64(&value), ErrorReply::InvalidOrDuplicateFlag)?),
            b'M' => {
                arith.mode = match value.first() {
                    Some(b'I' | b'i' | b'+') => MetaArithMode::Incr,
                    Some(b'D' | b'd' | b'-') => MetaArithMode::Decr,
                    _ => return Err(ErrorReply::InvalidFlag),
                }
            }
            _ => return Err(ErrorReply::InvalidFlag),
        }
    }
    Ok(arith)
}
