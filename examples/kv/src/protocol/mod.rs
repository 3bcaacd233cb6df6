//! The memcached text protocol as memcached 1.6 speaks it: the commands a client
//! can send ([`Command`]), the hostile-input decoder that frames them
//! ([`CommandDecoder`]), and the canned error replies.

mod admin;
mod base64;
mod decoder;
mod meta;
mod number;
mod text;

use bytes::Bytes;

pub use base64::{decode_base64, encode_base64};
pub use decoder::{CommandDecoder, DecoderLimits, ProtocolError};
pub use meta::{MetaArithMode, MetaOptions, MetaRequest, MetaSet, OPAQUE_MAX_BYTES};
pub use number::parse_counter_value;

/// Longest key memcached accepts (`KEY_MAX_LENGTH`).
pub const KEY_MAX_BYTES: usize = 250;
/// Buffered bytes without a newline after which a command line that is not a
/// `get`/`gets` closes the connection, as memcached does.
pub const LINE_MAX_BYTES: usize = 2048;
/// Bound on a `get`/`gets` line (memcached leaves these unbounded; this server
/// does not let one connection buffer more than this without a newline).
pub const GET_LINE_MAX_BYTES: usize = 256 * 1024;
/// Relative expiration times go up to 30 days; larger values are Unix times.
pub const REALTIME_MAXDELTA_SECS: i64 = 60 * 60 * 24 * 30;

/// How a storage command treats an existing item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// `set`: store unconditionally.
    Set,
    /// `add`: store only when the key is absent.
    Add,
    /// `replace`: store only when the key is present.
    Replace,
    /// `append`: add the data after the existing value (flags and expiry kept).
    Append,
    /// `prepend`: add the data before the existing value.
    Prepend,
    /// `cas`: store only when the item's CAS unique still matches.
    Cas,
}

/// A classic storage command with its data block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCommand {
    /// What to do with an existing item.
    pub mode: StoreMode,
    /// The key (validated: 1..=250 bytes, no spaces or control characters).
    pub key: Bytes,
    /// The 32-bit client flags.
    pub flags: u32,
    /// The expiration time as sent (relative, absolute or negative).
    pub exptime: i64,
    /// The data block, without its trailing `\r\n`.
    pub data: Bytes,
    /// The CAS unique to compare (only for [`StoreMode::Cas`]).
    pub cas: u64,
    /// Whether the client asked for no reply.
    pub noreply: bool,
}

/// Why a storage command's data was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreRejection {
    /// The item would exceed the item size limit; the data was swallowed.
    TooLarge,
    /// The data block did not end in `\r\n`.
    BadDataChunk,
}

/// Which statistics a `stats` command asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsGroup {
    /// `stats`: the general counters.
    General,
    /// `stats settings`.
    Settings,
    /// `stats reset`: zero the resettable counters.
    Reset,
    /// `stats items`: per size class item counts and LRU counters.
    Items,
    /// `stats slabs`: the size classes.
    Slabs,
    /// `stats sizes`: the item size histogram (off, as by default in memcached).
    Sizes,
    /// `stats conns`: the listeners and connections.
    Conns,
    /// `stats detail dump`: per-prefix counters (none are kept).
    DetailDump,
}

/// An administration command that is accepted; its setting is kept and
/// reported by `stats settings` (see `docs/kv.md` for which have an effect).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AdminCommand {
    /// `slabs automove <0|1|2>`.
    SlabsAutomove(u32),
    /// `slabs automove ratio <r>`.
    SlabsAutomoveRatio(f64),
    /// `lru tune <hot%> <warm%> <hot factor> <warm factor>`.
    LruTune {
        /// Percentage of a class's memory for the hot LRU.
        hot_pct: u32,
        /// Percentage for the warm LRU.
        warm_pct: u32,
        /// Hot age limit, relative to the cold tail's age.
        hot_factor: f64,
        /// Warm age limit, relative to the cold tail's age.
        warm_factor: f64,
    },
    /// `lru_crawler tocrawl <n>`.
    CrawlerToCrawl(u32),
    /// `lru_crawler sleep <µs>`.
    CrawlerSleep(u32),
    /// `cache_memlimit <MiB>`: a new memory limit.
    CacheMemlimit {
        /// The limit in MiB.
        mebibytes: u32,
    },
}

/// One decoded client command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `get`/`gets` (no touch) or `gat`/`gats` (touch with the expiration).
    Get {
        /// Keys in request order.
        keys: Vec<Bytes>,
        /// `gets`/`gats`: include the CAS unique.
        with_cas: bool,
        /// `gat`/`gats`: the new expiration time.
        touch: Option<i64>,
    },
    /// `set`, `add`, `replace`, `append`, `prepend`, `cas`.
    Store(StoreCommand),
    /// A storage command whose data block was refused.
    StoreRejected {
        /// The key.
        key: Bytes,
        /// Why.
        reason: StoreRejection,
        /// Whether the client asked for no reply.
        noreply: bool,
        /// A too-large item drops the key's old value (memcached does so for
        /// `set` and for `ms` in every mode).
        unlink_old: bool,
    },
    /// `delete <key>`.
    Delete {
        /// The key.
        key: Bytes,
        /// No reply wanted.
        noreply: bool,
    },
    /// `incr`/`decr <key> <delta>`.
    Arith {
        /// The key.
        key: Bytes,
        /// The unsigned 64-bit delta.
        delta: u64,
        /// `incr` (true) or `decr`.
        incr: bool,
        /// No reply wanted.
        noreply: bool,
    },
    /// `touch <key> <exptime>`.
    Touch {
        /// The key.
        key: Bytes,
        /// The new expiration time.
        exptime: i64,
        /// No reply wanted.
        noreply: bool,
    },
    /// `flush_all [delay]`.
    FlushAll {
        /// Seconds (or a Unix time) until every current item is invalid; 0
        /// now; `None` for a delay that is not a number (memcached counts the
        /// command, then refuses it).
        delay: Option<i64>,
        /// No reply wanted.
        noreply: bool,
    },
    /// `stats [group]`.
    Stats(StatsGroup),
    /// `version`.
    Version,
    /// `verbosity <level>` (kept for `stats settings`; logging goes through `tracing`).
    Verbosity {
        /// The level asked for.
        level: u32,
        /// No reply wanted.
        noreply: bool,
    },
    /// An accepted administration command (answers `OK`).
    Admin {
        /// What it sets.
        command: AdminCommand,
        /// No reply wanted.
        noreply: bool,
    },
    /// A command that only answers `OK` (`stats detail off`, `lru_crawler disable`).
    Ok,
    /// A line that looks like HTTP: memcached closes the connection without a word.
    HangUp,
    /// `quit`: close the connection.
    Quit,
    /// `mg`.
    MetaGet(MetaRequest),
    /// `ms` with its data block.
    MetaSet(MetaSet),
    /// `md`.
    MetaDelete(MetaRequest),
    /// `ma`.
    MetaArith(MetaRequest),
    /// `me`: an item's metadata.
    MetaDebug(MetaRequest),
    /// A meta command refused after its flags were read: the error is always
    /// answered (meta commands never silence errors).
    MetaInvalid(&'static str),
    /// `mn`: answers `MN`.
    MetaNoop,
    /// A line the protocol refuses: the reply is sent as is (it is one of the
    /// canned error lines) and the connection goes on.
    Invalid(ErrorReply),
    /// A refused line that ended in `noreply`: memcached keeps quiet even
    /// about the error; counted, not answered.
    InvalidQuiet(ErrorReply),
}

/// The error lines memcached answers with (each sent followed by `\r\n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReply {
    /// Unknown command or wrong number of tokens.
    Error,
    /// `CLIENT_ERROR bad command line format`.
    BadFormat,
    /// `CLIENT_ERROR bad data chunk`.
    BadDataChunk,
    /// `CLIENT_ERROR invalid exptime argument`.
    InvalidExptime,
    /// `CLIENT_ERROR invalid numeric delta argument`.
    InvalidDelta,
    /// `CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]`.
    DeleteUsage,
    /// `CLIENT_ERROR invalid flag` (meta commands).
    InvalidFlag,
    /// `CLIENT_ERROR usage: stats detail on|off|dump`.
    StatsDetailUsage,
    /// `CLIENT_ERROR bad token in command line format` (meta flag arguments).
    BadToken,
    /// `CLIENT_ERROR invalid or duplicate flag` (`ma` flag arguments).
    InvalidOrDuplicateFlag,
    /// `CLIENT_ERROR stats cachedump not allowed`.
    CachedumpNotAllowed,
    /// `CLIENT_ERROR stats detail not supported` (this server's own words).
    StatsDetailUnsupported,
    /// `CLIENT_ERROR slab reassignment disabled`.
    SlabReassignDisabled,
    /// `ERROR hot and warm pcts must not exceed 80`.
    LruPercentages,
    /// `ERROR hot/warm age factors must be greater than 0`.
    LruFactors,
    /// `CLIENT_ERROR lru crawler disabled`.
    CrawlerDisabled,
    /// `CLIENT_ERROR sleep must be one second or less`.
    CrawlerSleepTooLong,
    /// `ERROR failed to start lru crawler thread`.
    CrawlerStartFailed,
    /// `CLIENT_ERROR watch commands not allowed`.
    WatchNotAllowed,
    /// `MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m`.
    MemlimitTooSmall,
    /// `MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes`.
    MemlimitNotBytes,
    /// `ERROR: shutdown not enabled`.
    ShutdownNotEnabled,
}

impl ErrorReply {
    /// The reply line without its `\r\n`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReply::Error => "ERROR",
            ErrorReply::BadFormat => "CLIENT_ERROR bad command line format",
            ErrorReply::BadDataChunk => "CLIENT_ERROR bad data chunk",
            ErrorReply::InvalidExptime => "CLIENT_ERROR invalid exptime argument",
            ErrorReply::InvalidDelta => "CLIENT_ERROR invalid numeric delta argument",
            ErrorReply::DeleteUsage => "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]",
            ErrorReply::InvalidFlag => "CLIENT_ERROR invalid flag",
            ErrorReply::StatsDetailUsage => "CLIENT_ERROR usage: stats detail on|off|dump",
            ErrorReply::BadToken => "CLIENT_ERROR bad token in command line format",
            ErrorReply::InvalidOrDuplicateFlag => "CLIENT_ERROR invalid or duplicate flag",
            ErrorReply::CachedumpNotAllowed => "CLIENT_ERROR stats cachedump not allowed",
            ErrorReply::StatsDetailUnsupported => "CLIENT_ERROR stats detail not supported",
            ErrorReply::SlabReassignDisabled => "CLIENT_ERROR slab reassignment disabled",
            ErrorReply::LruPercentages => "ERROR hot and warm pcts must not exceed 80",
            ErrorReply::LruFactors => "ERROR hot/warm age factors must be greater than 0",
            ErrorReply::CrawlerDisabled => "CLIENT_ERROR lru crawler disabled",
            ErrorReply::CrawlerSleepTooLong => "CLIENT_ERROR sleep must be one second or less",
            ErrorReply::CrawlerStartFailed => "ERROR failed to start lru crawler thread",
            ErrorReply::WatchNotAllowed => "CLIENT_ERROR watch commands not allowed",
            ErrorReply::MemlimitTooSmall => "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m",
            ErrorReply::MemlimitNotBytes => "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes",
            ErrorReply::ShutdownNotEnabled => "ERROR: shutdown not enabled",
        }
    }
}

/// Whether `key` is a valid memcached key: 1..=250 bytes, no space and no
/// control character (memcached itself lets control characters through; this
/// server refuses them, as the issue asks).
pub fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= KEY_MAX_BYTES && key.iter().all(|&b| b > b' ' && b != 0x7f)
}
