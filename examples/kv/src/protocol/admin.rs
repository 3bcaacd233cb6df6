//! The administration commands (`slabs`, `lru`, `lru_crawler`, `watch`,
//! `cache_memlimit`, `shutdown`): accepted or refused with memcached's words,
//! as memcached answers when run as this server is (no slab mover, no LRU
//! maintainer or crawler thread, no dumps, no `watch`, no `shutdown`).

use std::ops::Range;

use bytes::Bytes;

use super::number::{parse_f64, parse_u32};
use super::{AdminCommand, Command, ErrorReply};

/// Parses one administration line (its first token is one of the words above).
pub(crate) fn parse(line: &Bytes, tokens: &[Range<usize>]) -> Command {
    let tok = |i: usize| tokens.get(i).map_or(&b""[..], |r| &line[r.clone()]);
    let n = tokens.len();
    // These commands look for a final `noreply` before they answer (memcached's
    // `set_noreply_maybe`), so even their refusals are then silent.
    let noreply = n > 1 && tok(n - 1) == b"noreply";
    let refuse = |reply: ErrorReply| if noreply { Command::InvalidQuiet(reply) } else { Command::Invalid(reply) };
    let accept = |command: AdminCommand| Command::Admin { command, noreply };
    match tok(0) {
        b"slabs" if n == 4 && tok(1) == b"reassign" => Command::Invalid(ErrorReply::SlabReassignDisabled),
        b"slabs" if n >= 3 && tok(1) == b"automove" => {
            if tok(2) == b"ratio" {
                return match parse_f64(tok(3)).filter(|_| n >= 4) {
                    Some(ratio) => accept(AdminCommand::SlabsAutomoveRatio(ratio)),
                    None => refuse(ErrorReply::Error),
                };
            }
            match parse_u32(tok(2)) {
                Some(level @ 0..=2) => accept(AdminCommand::SlabsAutomove(level)),
                Some(_) => refuse(ErrorReply::Error),
                None => refuse(ErrorReply::BadFormat),
            }
        }
        b"lru" if n >= 2 => parse_lru(tok(1), &tokens[1..], line, noreply),
        b"lru_crawler" => parse_lru_crawler(tok(1), tok(2), n),
        // memcached run with `-W`.
        b"watch" => refuse(ErrorReply::WatchNotAllowed),
        b"cache_memlimit" if n == 2 || n == 3 => match parse_u32(tok(1)) {
            None => refuse(ErrorReply::Error),
            Some(0..8) => refuse(ErrorReply::MemlimitTooSmall),
            Some(1_000_000_001..) => refuse(ErrorReply::MemlimitNotBytes),
            Some(mebibytes) => accept(AdminCommand::CacheMemlimit { mebibytes }),
        },
        // memcached run without `-A`.
        b"shutdown" => Command::Invalid(ErrorReply::ShutdownNotEnabled),
        _ => Command::Invalid(ErrorReply::Error),
    }
}

fn parse_lru(sub: &[u8], args: &[Range<usize>], line: &Bytes, noreply: bool) -> Command {
    let tok = |i: usize| args.get(i).map_or(&b""[..], |r| &line[r.clone()]);
    let refuse = |reply: ErrorReply| if noreply { Command::InvalidQuiet(reply) } else { Command::Invalid(reply) };
    if sub != b"tune" || args.len() < 5 {
        // `mode` and `temp_ttl` need the LRU maintainer thread, which this
        // server does not have; memcached without it answers the same.
        return refuse(ErrorReply::Error);
    }
    let (Some(hot_pct), Some(warm_pct), Some(hot_factor), Some(warm_factor)) =
        (parse_u32(tok(1)), parse_u32(tok(2)), parse_f64(tok(3)), parse_f64(tok(4)))
    else {
        return refuse(ErrorReply::Error);
    };
    if u64::from(hot_pct) + u64::from(warm_pct) > 80 {
        return refuse(ErrorReply::LruPercentages);
    }
    if hot_factor <= 0.0 || warm_factor <= 0.0 {
        return refuse(ErrorReply::LruFactors);
    }
    Command::Admin { command: AdminCommand::LruTune { hot_pct, warm_pct, hot_factor, warm_factor }, noreply }
}

fn parse_lru_crawler(sub: &[u8], arg: &[u8], n: usize) -> Command {
    let ok = |command| Command::Admin { command, noreply: false };
    match (n, sub) {
        // There is no crawler to run or to dump with.
        (3, b"crawl" | b"metadump") => Command::Invalid(ErrorReply::CrawlerDisabled),
        (3, b"tocrawl") => {
            parse_u32(arg).map_or(Command::Invalid(ErrorReply::BadFormat), |v| ok(AdminCommand::CrawlerToCrawl(v)))
        }
        (3, b"sleep") => match parse_u32(arg) {
            None => Command::Invalid(ErrorReply::BadFormat),
            Some(1_000_001..) => Command::Invalid(ErrorReply::CrawlerSleepTooLong),
            Some(micros) => ok(AdminCommand::CrawlerSleep(micros)),
        },
        (2, b"disable") => Command::Ok,
        (2, b"enable") => Command::Invalid(ErrorReply::CrawlerStartFailed),
        _ => Command::Invalid(ErrorReply::Error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::text::tokenize;

    fn parsed(text: &str) -> Command {
        let line = Bytes::copy_from_slice(text.as_bytes());
        let mut tokens = Vec::new();
        tokenize(&line, &mut tokens);
        parse(&line, &tokens)
    }

    #[test]
    fn refusals_use_memcacheds_words() {
        assert_eq!(parsed("slabs automove x"), Command::Invalid(ErrorReply::BadFormat));
        assert_eq!(parsed("slabs automove 3"), Command::Invalid(ErrorReply::Error));
        assert_eq!(parsed("slabs automove 3 noreply"), Command::InvalidQuiet(ErrorReply::Error));
        assert_eq!(parsed("slabs reassign 1 2"), Command::Invalid(ErrorReply::SlabReassignDisabled));
        assert_eq!(parsed("lru tune 50 50 1 1"), Command::Invalid(ErrorReply::LruPercentages));
        assert_eq!(parsed("lru mode flat"), Command::Invalid(ErrorReply::Error));
        assert_eq!(parsed("lru_crawler sleep 2000000"), Command::Invalid(ErrorReply::CrawlerSleepTooLong));
        assert_eq!(parsed("cache_memlimit 7"), Command::Invalid(ErrorReply::MemlimitTooSmall));
        assert!(matches!(
            parsed("cache_memlimit 100"),
            Command::Admin { command: AdminCommand::CacheMemlimit { mebibytes: 100 }, .. }
        ));
    }
}
