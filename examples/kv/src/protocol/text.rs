//! One command line of the classic text protocol: tokens (split on spaces, as
//! memcached does) to a [`Command`], or to the header of a storage command whose
//! data block follows.

use std::ops::Range;

use bytes::Bytes;

use super::number::{parse_i32, parse_u32, parse_u64};
use super::{Command, ErrorReply, MetaSet, StatsGroup, StoreCommand, StoreMode, valid_key};
use super::{admin, meta};

/// What one line turned into.
#[derive(Debug)]
pub(crate) enum LineOutcome {
    /// A complete command.
    Command(Command),
    /// A storage command; `len` data bytes and `\r\n` follow.
    Data(PendingData, usize),
    /// A refused storage command whose `len` data bytes and `\r\n` are to be
    /// discarded after the reply.
    Refused(Command, usize),
}

/// A storage command waiting for its data block.
#[derive(Debug)]
pub(crate) enum PendingData {
    /// `set` and friends (its `data` is empty until the block arrives).
    Classic(StoreCommand),
    /// `ms` (its `data` is empty until the block arrives).
    Meta(Box<MetaSet>),
}

impl PendingData {
    pub(crate) fn key(&self) -> &Bytes {
        match self {
            PendingData::Classic(c) => &c.key,
            PendingData::Meta(m) => &m.request.key,
        }
    }

    /// The client flags the item would get (they count in its size).
    pub(crate) fn flags(&self) -> u32 {
        match self {
            PendingData::Classic(c) => c.flags,
            PendingData::Meta(m) => m.request.options.client_flags,
        }
    }
}

/// Splits `line` on spaces into `tokens` (ranges into `line`), skipping empty ones.
pub(crate) fn tokenize(line: &[u8], tokens: &mut Vec<Range<usize>>) {
    tokens.clear();
    // Each token runs from past the last space to the next one (memchr finds
    // them a word at a time rather than a byte at a time).
    let mut start = 0;
    for space in memchr::memchr_iter(b' ', line) {
        if space > start {
            tokens.push(start..space);
        }
        start = space + 1;
    }
    if start < line.len() {
        tokens.push(start..line.len());
    }
}

fn invalid(reply: ErrorReply) -> LineOutcome {
    LineOutcome::Command(Command::Invalid(reply))
}

/// Commands whose trailing `noreply` also silences their errors.
const NOREPLY_COMMANDS: [&[u8]; 13] = [
    b"set",
    b"add",
    b"replace",
    b"append",
    b"prepend",
    b"cas",
    b"delete",
    b"incr",
    b"decr",
    b"touch",
    b"flush_all",
    b"verbosity",
    b"gat",
];

/// memcached's tokenizer stops after this many tokens (`MAX_TOKENS` less its
/// terminal token) and leaves the rest of the line in one last token.
const TOKENS_MAX: usize = 23;

/// Parses one line (without its `\r\n`), already tokenized.
pub(crate) fn parse_line(line: &Bytes, tokens: &[Range<usize>]) -> LineOutcome {
    let outcome = parse_tokens(line, tokens);
    match outcome {
        // A wrong token count is refused before memcached looks for noreply.
        LineOutcome::Command(Command::Invalid(reply))
            if reply != ErrorReply::Error
                && tokens.len() > 2
                && &line[tokens[tokens.len() - 1].clone()] == b"noreply"
                && NOREPLY_COMMANDS.contains(&&line[tokens[0].clone()]) =>
        {
            LineOutcome::Command(Command::InvalidQuiet(reply))
        }
        other => other,
    }
}

/// Dispatches on the command word as memcached does: meta commands are any
/// two-letter word starting with `m`; a word no command starts with, whose
/// line ends in an `HTTP/` token, hangs up.
fn parse_tokens(line: &Bytes, tokens: &[Range<usize>]) -> LineOutcome {
    let Some(first) = tokens.first().filter(|t| t.len() >= 2) else {
        return invalid(ErrorReply::Error);
    };
    let tok = |i: usize| &line[tokens[i].clone()];
    let noreply_at = |i: usize| tokens.len() > i && tok(i) == b"noreply";
    let n = tokens.len();
    let word = &line[first.clone()];
    if word.len() == 2 && word[0] == b'm' {
        return match word[1] {
            b'n' => LineOutcome::Command(Command::MetaNoop),
            b'g' | b's' | b'd' | b'a' | b'e' => meta::parse(line, tokens),
            _ => invalid(ErrorReply::Error),
        };
    }
    let cmd = match word {
        b"get" if n >= 2 => return parse_get(line, tokens, false, false),
        b"bget" if n >= 2 => return parse_get(line, tokens, false, false),
        b"gets" if n >= 2 => return parse_get(line, tokens, true, false),
        b"gat" if n >= 2 => return parse_get(line, tokens, false, true),
        b"gats" if n >= 2 => return parse_get(line, tokens, true, true),
        b"set" => StoreMode::Set,
        b"add" => StoreMode::Add,
        b"replace" => StoreMode::Replace,
        b"append" => StoreMode::Append,
        b"prepend" => StoreMode::Prepend,
        b"cas" => StoreMode::Cas,
        b"delete" => return parse_delete(line, tokens),
        b"incr" | b"decr" if n == 3 || n == 4 => {
            let key = line.slice(tokens[1].clone());
            if !valid_key(&key) {
                return invalid(ErrorReply::BadFormat);
            }
            let Some(delta) = parse_u64(tok(2)) else { return invalid(ErrorReply::InvalidDelta) };
            let incr = tok(0) == b"incr";
            return LineOutcome::Command(Command::Arith { key, delta, incr, noreply: noreply_at(3) });
        }
        b"touch" if n == 3 || n == 4 => {
            let key = line.slice(tokens[1].clone());
            if !valid_key(&key) {
                return invalid(ErrorReply::BadFormat);
            }
            let Some(exptime) = parse_i32(tok(2)) else { return invalid(ErrorReply::InvalidExptime) };
            return LineOutcome::Command(Command::Touch { key, exptime, noreply: noreply_at(3) });
        }
        b"flush_all" if n <= 3 => {
            let noreply = n > 1 && noreply_at(n - 1);
            let delay = if n == 1 + usize::from(noreply) { Some(0) } else { parse_i32(tok(1)) };
            return LineOutcome::Command(Command::FlushAll { delay, noreply });
        }
        b"stats" => return parse_stats(line, tokens),
        // memcached ignores what follows these two words.
        b"version" => return LineOutcome::Command(Command::Version),
        b"quit" => return LineOutcome::Command(Command::Quit),
        b"verbosity" if n == 2 || n == 3 => {
            let noreply = noreply_at(n - 1);
            return match parse_u32(tok(1)) {
                Some(level) => LineOutcome::Command(Command::Verbosity { level, noreply }),
                None => invalid(ErrorReply::BadFormat),
            };
        }
        b"slabs" | b"lru" | b"lru_crawler" | b"watch" | b"cache_memlimit" | b"shutdown" => {
            return LineOutcome::Command(admin::parse(line, tokens));
        }
        _ if b"gsacidt".contains(&word[0]) || KNOWN_WORDS.contains(&word) => return invalid(ErrorReply::Error),
        _ => {
            let last = &line[tokens[n.min(TOKENS_MAX) - 1].clone()];
            let reply = if last.starts_with(b"HTTP/") { Command::HangUp } else { Command::Invalid(ErrorReply::Error) };
            return LineOutcome::Command(reply);
        }
    };
    parse_storage(line, tokens, cmd)
}

/// Words memcached dispatches before its HTTP check (with a wrong token count
/// they answer `ERROR`, never a hang-up).
const KNOWN_WORDS: [&[u8]; 5] = [b"replace", b"prepend", b"bget", b"flush_all", b"verbosity"];

fn parse_get(line: &Bytes, tokens: &[Range<usize>], with_cas: bool, touches: bool) -> LineOutcome {
    // `gat <exptime>` with no key is valid (an empty answer).
    let first_key = if touches { 2 } else { 1 };
    let touch = if touches {
        match parse_i32(&line[tokens[1].clone()]) {
            Some(t) => Some(t),
            None => return invalid(ErrorReply::InvalidExptime),
        }
    } else {
        None
    };
    let mut keys = Vec::with_capacity(tokens.len() - first_key);
    for range in &tokens[first_key..] {
        let key = line.slice(range.clone());
        if !valid_key(&key) {
            return invalid(ErrorReply::BadFormat);
        }
        keys.push(key);
    }
    LineOutcome::Command(Command::Get { keys, with_cas, touch })
}

fn parse_storage(line: &Bytes, tokens: &[Range<usize>], mode: StoreMode) -> LineOutcome {
    let with_cas = usize::from(mode == StoreMode::Cas);
    let n = tokens.len();
    if n != 5 + with_cas && n != 6 + with_cas {
        return invalid(ErrorReply::Error);
    }
    let tok = |i: usize| &line[tokens[i].clone()];
    let key = line.slice(tokens[1].clone());
    if !valid_key(&key) {
        return invalid(ErrorReply::BadFormat);
    }
    let (Some(flags), Some(exptime), Some(len)) = (parse_u32(tok(2)), parse_i32(tok(3)), parse_i32(tok(4))) else {
        return invalid(ErrorReply::BadFormat);
    };
    let Some(len) = data_length(len) else { return invalid(ErrorReply::BadFormat) };
    let cas = if with_cas == 1 {
        match parse_u64(tok(5)) {
            Some(c) => c,
            None => return invalid(ErrorReply::BadFormat),
        }
    } else {
        0
    };
    let noreply = n == 6 + with_cas && tok(5 + with_cas) == b"noreply";
    let header = StoreCommand { mode, key, flags, exptime, data: Bytes::new(), cas, noreply };
    LineOutcome::Data(PendingData::Classic(header), len)
}

/// A data block length memcached takes: 0 to INT_MAX-2 (it adds the `\r\n`).
pub(crate) fn data_length(len: i64) -> Option<usize> {
    usize::try_from(len).ok().filter(|&l| l <= i32::MAX as usize - 2)
}

fn parse_delete(line: &Bytes, tokens: &[Range<usize>]) -> LineOutcome {
    let n = tokens.len();
    if !(2..=4).contains(&n) {
        return invalid(ErrorReply::Error);
    }
    let key = line.slice(tokens[1].clone());
    if !valid_key(&key) {
        return invalid(ErrorReply::BadFormat);
    }
    let tok = |i: usize| &line[tokens[i].clone()];
    let noreply = n > 2 && tok(n - 1) == b"noreply";
    // memcached still accepts a legacy hold time of exactly "0".
    let valid = match n {
        2 => true,
        3 => tok(2) == b"0" || noreply,
        _ => tok(2) == b"0" && noreply,
    };
    if !valid {
        return invalid(ErrorReply::DeleteUsage);
    }
    LineOutcome::Command(Command::Delete { key, noreply })
}

fn parse_stats(line: &Bytes, tokens: &[Range<usize>]) -> LineOutcome {
    let tok = |i: usize| tokens.get(i).map(|r| &line[r.clone()]);
    let group = match tok(1) {
        None => StatsGroup::General,
        Some(b"settings") => StatsGroup::Settings,
        Some(b"reset") => StatsGroup::Reset,
        Some(b"items") => StatsGroup::Items,
        Some(b"slabs") => StatsGroup::Slabs,
        Some(b"sizes") => StatsGroup::Sizes,
        Some(b"conns") => StatsGroup::Conns,
        Some(b"detail") => match tok(2) {
            Some(b"off") => return LineOutcome::Command(Command::Ok),
            Some(b"dump") => StatsGroup::DetailDump,
            Some(b"on") => return invalid(ErrorReply::StatsDetailUnsupported),
            _ => return invalid(ErrorReply::StatsDetailUsage),
        },
        // This server keeps no item dump, as memcached run with `-X`.
        Some(b"cachedump") => return invalid(ErrorReply::CachedumpNotAllowed),
        Some(_) => return invalid(ErrorReply::Error),
    };
    LineOutcome::Command(Command::Stats(group))
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::tokenize;

    /// The definition: the non-empty pieces between spaces.
    fn pieces(line: &[u8]) -> Vec<&[u8]> {
        line.split(|&b| b == b' ').filter(|piece| !piece.is_empty()).collect()
    }

    fn tokens_of(line: &[u8]) -> Vec<&[u8]> {
        let mut tokens = Vec::new();
        tokenize(line, &mut tokens);
        tokens.into_iter().map(|range| &line[range]).collect()
    }

    #[test]
    fn tokens_are_the_non_empty_pieces_between_spaces() {
        for line in [&b""[..], b" ", b"   ", b"get", b"get k", b" get  k ", b"set k 0 0 5 noreply", b"a\tb c", b"  x"] {
            assert_eq!(tokens_of(line), pieces(line), "{:?}", String::from_utf8_lossy(line));
        }
        let mut rng = SmallRng::seed_from_u64(19);
        for _ in 0..2_000 {
            let len = rng.random_range(0..80);
            let line: Vec<u8> = (0..len).map(|_| if rng.random_bool(0.3) { b' ' } else { rng.random() }).collect();
            assert_eq!(tokens_of(&line), pieces(&line), "{line:?}");
        }
    }
}
