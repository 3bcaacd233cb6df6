//! HTTP/1.1 keep-alive GET requests and a strict parser of their responses
//! (status line, headers, Content-Length or chunked body); bad input is an error.

use crate::loadgen::protocol::{Outcome, Parsed, ProtocolError, find_crlf, parse_decimal};

/// Largest status line plus headers accepted, in bytes.
pub const HEAD_MAX_BYTES: usize = 16 * 1024;
/// Largest body accepted, in bytes.
pub const BODY_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Largest chunk-size line (with extensions) accepted, in bytes.
const CHUNK_LINE_MAX_BYTES: usize = 1024;

/// Sends `GET path` with a `Host` header, keeping the connection alive.
#[derive(Debug, Clone)]
pub struct HttpClient {
    request: Vec<u8>,
}

impl HttpClient {
    /// A client for `GET path` on `host` (the `Host` header's value).
    pub fn new(host: &str, path: &str) -> Self {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ixload\r\n\r\n").into_bytes();
        Self { request }
    }

    /// Appends the request.
    pub fn write_request(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.request);
    }

    /// Looks for one complete response at the front of `buf`.
    ///
    /// # Errors
    /// A malformed status line or header, an unsupported framing (no length on
    /// a response that has a body, both Content-Length and Transfer-Encoding, a
    /// coding other than chunked), a 1xx response, or an oversized part.
    pub fn parse_response(&self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        let Some(head_len) = find_head_end(buf)? else { return Ok(Parsed::Incomplete) };
        let head = parse_head(&buf[..head_len])?;
        let outcome = if (200..300).contains(&head.status) { Outcome::Success } else { Outcome::ErrorReply };
        let body_len = match head.framing {
            Framing::Empty => Some(0),
            Framing::Length(n) => (buf.len() - head_len >= n).then_some(n),
            Framing::Chunked => chunked_len(&buf[head_len..])?,
        };
        Ok(match body_len {
            Some(n) => Parsed::Complete { len: head_len + n, outcome, close: head.close },
            None => Parsed::Incomplete,
        })
    }
}

/// The end of the header block (after its blank line), if it has arrived.
fn find_head_end(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    let window = &buf[..buf.len().min(HEAD_MAX_BYTES)];
    match window.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => Ok(Some(p + 4)),
        None if buf.len() >= HEAD_MAX_BYTES => {
            Err(ProtocolError::TooLarge { what: "header block", limit: HEAD_MAX_BYTES })
        }
        None => Ok(None),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Framing {
    /// No body (204, 304).
    Empty,
    Length(usize),
    Chunked,
}

#[derive(Debug)]
struct Head {
    status: u16,
    framing: Framing,
    close: bool,
}

/// Parses the status line and headers (`head` ends with the blank line).
fn parse_head(head: &[u8]) -> Result<Head, ProtocolError> {
    let mut lines = head[..head.len() - 4].split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().ok_or(ProtocolError::Malformed("empty response"))?;
    let (status, http10) = parse_status_line(status_line)?;
    if (100..200).contains(&status) {
        return Err(ProtocolError::Malformed("unexpected 1xx response to a GET"));
    }
    let (mut length, mut chunked, mut transfer_encoding) = (None, false, false);
    let mut close = http10;
    for line in lines {
        let (name, value) = split_header(line)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_decimal(value).ok_or(ProtocolError::Malformed("bad Content-Length"))?;
            if length.is_some_and(|m| m != n) {
                return Err(ProtocolError::Malformed("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
            chunked = ends_with_chunked(value)?;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        }
    }
    let framing = match (status, length, transfer_encoding) {
        (204 | 304, _, _) => Framing::Empty,
        (_, Some(_), true) => return Err(ProtocolError::Malformed("both Content-Length and Transfer-Encoding")),
        (_, Some(n), false) if n > BODY_MAX_BYTES as u64 => {
            return Err(ProtocolError::TooLarge { what: "Content-Length", limit: BODY_MAX_BYTES });
        }
        (_, Some(n), false) => Framing::Length(n as usize),
        (_, None, true) if chunked => Framing::Chunked,
        (_, None, true) => return Err(ProtocolError::Malformed("a transfer coding other than chunked")),
        (_, None, false) => return Err(ProtocolError::Malformed("no Content-Length on a keep-alive response")),
    };
    Ok(Head { status, framing, close })
}

/// `HTTP/1.1 200 OK` → (200, false); HTTP/1.0 → (status, true).
fn parse_status_line(line: &[u8]) -> Result<(u16, bool), ProtocolError> {
    let http10 = match line.get(..9) {
        Some(b"HTTP/1.1 ") => false,
        Some(b"HTTP/1.0 ") => true,
        _ => return Err(ProtocolError::Malformed("status line is not HTTP/1.x")),
    };
    let code = line.get(9..12).ok_or(ProtocolError::Malformed("short status line"))?;
    if line.get(12).is_some_and(|&b| b != b' ') {
        return Err(ProtocolError::Malformed("status code is not three digits"));
    }
    let status = parse_decimal(code).filter(|s| (100..600).contains(s) && code.len() == 3);
    let status = status.ok_or(ProtocolError::Malformed("bad status code"))?;
    Ok((status as u16, http10))
}

/// `Name: value` → (name, trimmed value); refuses folding and bad names.
fn split_header(line: &[u8]) -> Result<(&[u8], &[u8]), ProtocolError> {
    let colon = line.iter().position(|&b| b == b':').ok_or(ProtocolError::Malformed("header without a colon"))?;
    let name = &line[..colon];
    let is_token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if name.is_empty() || !name.iter().all(is_token) {
        return Err(ProtocolError::Malformed("bad header name (or obsolete line folding)"));
    }
    let value = line[colon + 1..].trim_ascii();
    if value.iter().any(|&b| b == b'\r' || b == 0) {
        return Err(ProtocolError::Malformed("control byte in a header value"));
    }
    Ok((name, value))
}

/// Whether the last transfer coding listed is `chunked` (RFC 9112 §6.1).
fn ends_with_chunked(value: &[u8]) -> Result<bool, ProtocolError> {
    let last = value.rsplit(|&b| b == b',').next().map(<[u8]>::trim_ascii).unwrap_or_default();
    if last.is_empty() {
        return Err(ProtocolError::Malformed("empty Transfer-Encoding"));
    }
    Ok(last.eq_ignore_ascii_case(b"chunked"))
}

/// The length of a complete chunked body at the front of `body`, trailers and
/// final CRLF included, or `None` if it has not all arrived.
fn chunked_len(body: &[u8]) -> Result<Option<usize>, ProtocolError> {
    let mut at = 0usize;
    let mut data_total = 0usize;
    loop {
        let Some(line_end) = find_crlf(body, at) else {
            return if body.len() - at > CHUNK_LINE_MAX_BYTES {
                Err(ProtocolError::TooLarge { what: "chunk-size line", limit: CHUNK_LINE_MAX_BYTES })
            } else {
                Ok(None)
            };
        };
        if line_end - at > CHUNK_LINE_MAX_BYTES {
            return Err(ProtocolError::TooLarge { what: "chunk-size line", limit: CHUNK_LINE_MAX_BYTES });
        }
        let line = &body[at..line_end];
        let size_part = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii_end();
        let size = parse_hex(size_part).ok_or(ProtocolError::Malformed("bad chunk size"))?;
        at = line_end + 2;
        if size == 0 {
            return trailers_end(body, at);
        }
        data_total = data_total.saturating_add(size);
        if data_total > BODY_MAX_BYTES {
            return Err(ProtocolError::TooLarge { what: "chunked body", limit: BODY_MAX_BYTES });
        }
        let data_end = at + size;
        if body.len() < data_end + 2 {
            return Ok(None);
        }
        if &body[data_end..data_end + 2] != b"\r\n" {
            return Err(ProtocolError::Malformed("chunk data not followed by CRLF"));
        }
        at = data_end + 2;
    }
}

/// Skips trailer fields up to the blank line that ends a chunked body.
fn trailers_end(body: &[u8], mut at: usize) -> Result<Option<usize>, ProtocolError> {
    loop {
        let Some(line_end) = find_crlf(body, at) else {
            return if body.len() - at > HEAD_MAX_BYTES {
                Err(ProtocolError::TooLarge { what: "trailer", limit: HEAD_MAX_BYTES })
            } else {
                Ok(None)
            };
        };
        if line_end == at {
            return Ok(Some(at + 2));
        }
        split_header(&body[at..line_end])?;
        at = line_end + 2;
    }
}

/// Hexadecimal digits only, at most 15 of them (no overflow).
fn parse_hex(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    digits.iter().try_fold(0usize, |acc, &d| Some(acc * 16 + (d as char).to_digit(16)? as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Parsed, ProtocolError> {
        HttpClient::new("h", "/").parse_response(bytes)
    }

    fn complete(len: usize, outcome: Outcome, close: bool) -> Result<Parsed, ProtocolError> {
        Ok(Parsed::Complete { len, outcome, close })
    }

    #[test]
    fn writes_a_keep_alive_get() {
        let mut out = Vec::new();
        HttpClient::new("10.0.0.1:80", "/bytes/5").write_request(&mut out);
        assert_eq!(out, b"GET /bytes/5 HTTP/1.1\r\nHost: 10.0.0.1:80\r\nUser-Agent: ixload\r\n\r\n");
    }

    #[test]
    fn content_length_response_completes_only_when_whole() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!";
        for cut in 0..r.len() {
            assert_eq!(parse(&r[..cut]), Ok(Parsed::Incomplete), "cut at {cut}");
        }
        assert_eq!(parse(r), complete(r.len(), Outcome::Success, false));
        let mut two = r.to_vec();
        two.extend_from_slice(r);
        assert_eq!(parse(&two), complete(r.len(), Outcome::Success, false));
    }

    #[test]
    fn chunked_response_with_extensions_and_trailers() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nHello\r\n8\r\n, world!\r\n0\r\nX-T: 1\r\n\r\n";
        for cut in 0..r.len() {
            assert_eq!(parse(&r[..cut]), Ok(Parsed::Incomplete), "cut at {cut}");
        }
        assert_eq!(parse(r), complete(r.len(), Outcome::Success, false));
    }

    #[test]
    fn status_and_connection_handling() {
        let r = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        assert_eq!(parse(r), complete(r.len(), Outcome::ErrorReply, true));
        let r = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse(r), complete(r.len(), Outcome::Success, true));
        let r = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n";
        assert_eq!(parse(r), complete(r.len(), Outcome::Success, false));
        let r = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse(r), complete(r.len(), Outcome::Success, false));
    }

    #[test]
    fn malformed_responses_are_errors() {
        let bad: &[&[u8]] = &[
            b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"garbage\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 20x OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n folded: x\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        ];
        for r in bad {
            assert!(parse(r).is_err(), "accepted {:?}", String::from_utf8_lossy(r));
        }
    }

    #[test]
    fn oversized_heads_and_chunk_lines_are_refused_not_buffered_forever() {
        let mut r = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        r.resize(HEAD_MAX_BYTES + 10, b'a');
        assert!(matches!(parse(&r), Err(ProtocolError::TooLarge { .. })));
        let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
        r.resize(r.len() + CHUNK_LINE_MAX_BYTES + 10, b'a');
        assert!(matches!(parse(&r), Err(ProtocolError::TooLarge { .. })));
    }

    #[test]
    fn random_bytes_never_panic() {
        let valid = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHello\r\n0\r\n\r\n";
        crate::loadgen::protocol::for_each_mutation(valid, 5, |r| {
            let _ = parse(r);
        });
    }
}
