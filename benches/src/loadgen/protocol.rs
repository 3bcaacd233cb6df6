//! What a load-generator connection needs from a protocol: write the next
//! request, then recognise its complete response at the front of a buffer.

use crate::loadgen::http::HttpClient;
use crate::loadgen::memcache::MemcacheClient;

/// A response that could not be understood. The connection that read it is
/// closed (its byte stream can no longer be trusted) and the error is counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The bytes break the protocol's grammar.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// A length, a line or a header block is over the generator's bound.
    #[error("response too large: {what} over {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The bound, in bytes.
        limit: usize,
    },
    /// Bytes arrived that answer no request (with one request in flight, only
    /// one response may come).
    #[error("unsolicited bytes after a complete response")]
    Unsolicited,
}

/// How a complete response went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A success (HTTP 2xx, memcached `STORED` or a `VALUE`).
    Success,
    /// A memcached `get` that found nothing (`END` alone): a valid answer.
    Miss,
    /// A well-formed error answer (HTTP non-2xx, memcached `ERROR`,
    /// `CLIENT_ERROR`, `SERVER_ERROR`, `NOT_STORED`).
    ErrorReply,
}

/// The result of looking at the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// The response is the first `len` bytes.
    Complete {
        /// Its length in bytes.
        len: usize,
        /// How it went.
        outcome: Outcome,
        /// The server will close the connection after it (HTTP
        /// `Connection: close`): the client reconnects.
        close: bool,
    },
}

/// One connection's protocol state (enum dispatch: the generator's loop is
/// generic over the stream, not over the protocol).
#[derive(Debug)]
pub enum ProtocolClient {
    /// HTTP/1.1 keep-alive.
    Http(HttpClient),
    /// memcached text protocol.
    Memcache(MemcacheClient),
}

impl ProtocolClient {
    /// Appends the next request to `out`.
    pub fn write_request(&mut self, out: &mut Vec<u8>) {
        match self {
            ProtocolClient::Http(c) => c.write_request(out),
            ProtocolClient::Memcache(c) => c.write_request(out),
        }
    }

    /// Looks for the complete response to the last request at the front of `buf`.
    ///
    /// # Errors
    /// [`ProtocolError`] when the bytes cannot be that response.
    pub fn parse_response(&self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        match self {
            ProtocolClient::Http(c) => c.parse_response(buf),
            ProtocolClient::Memcache(c) => c.parse_response(buf),
        }
    }
}

/// The position of the first CRLF in `buf` at or after `from`, if any.
pub(crate) fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    rest.windows(2).position(|w| w == b"\r\n").map(|p| from + p)
}

/// Parses a decimal number made of ASCII digits only (no sign, no spaces),
/// refusing overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if d.is_ascii_digit() { acc.checked_mul(10)?.checked_add(u64::from(d - b'0')) } else { None }
    })
}

/// Calls `f` on 100,000 prefixes of `valid` with one to three random bytes
/// replaced (the parsers' hostile-input tests).
#[cfg(test)]
pub(crate) fn for_each_mutation(valid: &[u8], seed: u64, mut f: impl FnMut(&[u8])) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    for _ in 0..100_000 {
        let mut r = valid.to_vec();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..r.len());
            r[i] = rng.random();
        }
        let cut = rng.random_range(0..=r.len());
        f(&r[..cut]);
    }
}
