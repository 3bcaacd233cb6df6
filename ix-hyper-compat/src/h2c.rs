//! HTTP/2 over cleartext by upgrade (RFC 7540 §3.2, "h2c"): recognising the
//! upgrade request, and an IO that hands that request to the HTTP/2 connection
//! as its stream 1, right after the client's connection preface.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper::rt::ReadBufCursor;

use crate::replay::poll_read_into_vec;

/// What an HTTP/2 client sends first (RFC 7540 §3.5).
pub(crate) const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The answer that accepts an h2c upgrade.
pub(crate) const SWITCHING_PROTOCOLS: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";

/// HTTP/2 frame header length, and the frame types and flags used here.
const FRAME_HEADER_BYTES: usize = 9;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_SETTINGS: u8 = 0x4;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
/// The largest frame payload a peer may send before settings say otherwise.
const FRAME_PAYLOAD_MAX_BYTES: usize = 16_384;

/// Headers that belong to the HTTP/1.1 connection, not to the request
/// (RFC 7540 §8.1.2.2), plus `host`, which becomes `:authority`.
const CONNECTION_HEADERS: [&str; 7] =
    ["connection", "upgrade", "http2-settings", "keep-alive", "proxy-connection", "transfer-encoding", "host"];

/// Whether a comma-separated header value lists `token` (case-insensitive).
fn lists_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The HTTP/2 HEADERS frame (stream 1, end of stream) that carries `req`, when
/// `req` is an h2c upgrade this server takes: HTTP/1.1, origin-form target,
/// `Upgrade: h2c`, one well-formed `HTTP2-Settings`, `Connection` naming both,
/// a `Host`, and no body. Anything else is served as HTTP/1.1 (RFC 7540 lets a
/// server ignore an upgrade).
///
/// The settings carried in `HTTP2-Settings` are checked for form but not
/// applied: the client repeats its settings in the SETTINGS frame of its
/// preface, which the HTTP/2 connection applies.
pub(crate) fn upgrade_frame(req: &httparse::Request<'_, '_>) -> Option<Vec<u8>> {
    let (method, path) = (req.method?, req.path?);
    if req.version != Some(1) || !path.starts_with('/') || method == "CONNECT" {
        return None;
    }
    let header = |name: &'static str| headers_named(req.headers, name);
    let single = |name: &'static str| {
        let mut values = header(name);
        match (values.next(), values.next()) {
            (Some(h), None) => Some(h.value),
            _ => None,
        }
    };
    let settings = single("http2-settings")?;
    let settings_ok = settings.len() <= FRAME_PAYLOAD_MAX_BYTES
        && settings.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let upgrade_ok = header("upgrade").any(|h| lists_token(h.value, "h2c"));
    let connection_ok = header("connection").any(|h| lists_token(h.value, "upgrade"))
        && header("connection").any(|h| lists_token(h.value, "http2-settings"));
    let no_body =
        header("transfer-encoding").next().is_none() && header("content-length").all(|h| h.value.trim_ascii() == b"0");
    let host = single("host")?;
    if !(settings_ok && upgrade_ok && connection_ok && no_body) {
        return None;
    }
    let mut block = Vec::with_capacity(256);
    for (name, value) in
        [(":method", method.as_bytes()), (":scheme", b"http"), (":authority", host), (":path", path.as_bytes())]
    {
        put_literal(&mut block, name.as_bytes(), value);
    }
    let listed_by_connection =
        |name: &str| headers_named(req.headers, "connection").any(|h| lists_token(h.value, name));
    for h in req.headers.iter() {
        let hop_by_hop = CONNECTION_HEADERS.iter().any(|c| h.name.eq_ignore_ascii_case(c));
        let te_other_than_trailers = h.name.eq_ignore_ascii_case("te") && !h.value.eq_ignore_ascii_case(b"trailers");
        if hop_by_hop || te_other_than_trailers || listed_by_connection(h.name) {
            continue;
        }
        put_literal(&mut block, h.name.to_ascii_lowercase().as_bytes(), h.value);
    }
    if block.len() > FRAME_PAYLOAD_MAX_BYTES {
        return None;
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + block.len());
    frame.extend_from_slice(&(block.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(&[FRAME_HEADERS, FLAG_END_STREAM | FLAG_END_HEADERS]);
    frame.extend_from_slice(&1u32.to_be_bytes());
    frame.extend_from_slice(&block);
    Some(frame)
}

/// The headers of `headers` named `name` (case-insensitive).
fn headers_named<'a, 'b>(
    headers: &'a [httparse::Header<'b>],
    name: &'a str,
) -> impl Iterator<Item = &'a httparse::Header<'b>> {
    headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name))
}

/// HPACK "literal header field without indexing, new name" (RFC 7541 §6.2.2)
/// with plain (not Huffman) strings: it leaves the decoder's dynamic table as
/// it was, so the client's own header compression stays in step.
fn put_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    put_string(out, name);
    put_string(out, value);
}

/// An HPACK string literal: a 7-bit-prefix length (RFC 7541 §5.1), then the bytes.
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    const PREFIX_MAX: usize = 127;
    let mut len = bytes.len();
    if len < PREFIX_MAX {
        out.push(len as u8);
    } else {
        out.push(PREFIX_MAX as u8);
        len -= PREFIX_MAX;
        while len >= 128 {
            out.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(bytes);
}

/// An IO after a `101 Switching Protocols`: it reads the client's preface and
/// first SETTINGS frame, inserts the upgraded request's HEADERS frame after
/// them, then reads on. Input that is not a well-formed preface passes
/// through unchanged, for the HTTP/2 connection to reject.
#[derive(Debug)]
pub(crate) struct H2cIo<I> {
    io: I,
    state: InjectState,
}

#[derive(Debug)]
enum InjectState {
    /// Reading the preface and the SETTINGS frame.
    Collecting { read: Vec<u8>, request: Vec<u8> },
    /// Handing out what was collected, with the request inserted.
    Replaying { bytes: Vec<u8>, at: usize },
    /// Reading straight from the IO.
    Through,
}

impl<I> H2cIo<I> {
    /// `request` is the frame from [`upgrade_frame`].
    pub(crate) fn new(io: I, request: Vec<u8>) -> Self {
        H2cIo { io, state: InjectState::Collecting { read: Vec::with_capacity(64), request } }
    }
}

/// How many bytes the preface and its SETTINGS frame take, once `read` shows
/// it; `Err(())` when `read` is not a preface followed by SETTINGS.
fn preface_len(read: &[u8]) -> Result<Option<usize>, ()> {
    let magic = read.len().min(H2_PREFACE.len());
    if read[..magic] != H2_PREFACE[..magic] {
        return Err(());
    }
    let header_end = H2_PREFACE.len() + FRAME_HEADER_BYTES;
    if read.len() < header_end {
        return Ok(None);
    }
    let header = &read[H2_PREFACE.len()..header_end];
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    if header[3] != FRAME_SETTINGS || len > FRAME_PAYLOAD_MAX_BYTES {
        return Err(());
    }
    Ok(Some(header_end + len))
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for H2cIo<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                InjectState::Collecting { read, request } => {
                    let (needed, inject) = match preface_len(read) {
                        Ok(Some(total)) if read.len() >= total => (total, true),
                        Ok(Some(total)) => (total, false),
                        Ok(None) => (H2_PREFACE.len() + FRAME_HEADER_BYTES, false),
                        Err(()) => (0, false),
                    };
                    if needed == 0 || inject {
                        let mut bytes = std::mem::take(read);
                        if inject {
                            bytes.splice(needed..needed, std::mem::take(request));
                        }
                        this.state = InjectState::Replaying { bytes, at: 0 };
                        continue;
                    }
                    let want = needed - read.len();
                    if ready!(poll_read_into_vec(&mut this.io, cx, read, want))? == 0 {
                        // End of stream inside the preface: hand over what came.
                        let bytes = std::mem::take(read);
                        this.state = InjectState::Replaying { bytes, at: 0 };
                    }
                }
                InjectState::Replaying { bytes, at } => {
                    if *at == bytes.len() {
                        this.state = InjectState::Through;
                        continue;
                    }
                    let n = (bytes.len() - *at).min(buf.remaining());
                    buf.put_slice(&bytes[*at..*at + n]);
                    *at += n;
                    return Poll::Ready(Ok(()));
                }
                InjectState::Through => return Pin::new(&mut this.io).poll_read(cx, buf),
            }
        }
    }
}

crate::forward_write_to_io!(H2cIo);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<'h, 'b>(raw: &'b [u8], headers: &'h mut [httparse::Header<'b>]) -> httparse::Request<'h, 'b> {
        let mut req = httparse::Request::new(headers);
        assert!(req.parse(raw).unwrap().is_complete());
        req
    }

    const CURL_UPGRADE: &[u8] =
        b"GET /bytes/5 HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\
Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n";

    #[test]
    fn curl_style_upgrade_becomes_a_headers_frame_on_stream_1() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let frame = upgrade_frame(&parse(CURL_UPGRADE, &mut headers)).expect("an upgrade");
        let len = u32::from_be_bytes([0, frame[0], frame[1], frame[2]]) as usize;
        assert_eq!(len, frame.len() - FRAME_HEADER_BYTES);
        assert_eq!(frame[3], FRAME_HEADERS);
        assert_eq!(frame[4], FLAG_END_STREAM | FLAG_END_HEADERS);
        assert_eq!(&frame[5..9], &[0, 0, 0, 1]);
        let block = &frame[9..];
        // First field: literal, new name ":method" (7 bytes), value "GET".
        assert_eq!(&block[..13], b"\x00\x07:method\x03GET");
        let text = String::from_utf8_lossy(block);
        assert!(text.contains(":authority") && text.contains("10.0.0.1:8080") && text.contains("/bytes/5"));
        assert!(text.contains("user-agent") && text.contains("accept"));
        assert!(!text.to_ascii_lowercase().contains("http2-settings") && !text.contains("upgrade"));
    }

    #[test]
    fn requests_that_are_not_clean_upgrades_stay_http1() {
        let cases: [&[u8]; 5] = [
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: websocket\r\nHTTP2-Settings: AAMA\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AA=MA\r\n\r\n",
        ];
        for raw in cases {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            assert!(upgrade_frame(&parse(raw, &mut headers)).is_none(), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn long_strings_use_the_continued_length_encoding() {
        let mut out = Vec::new();
        put_string(&mut out, &[b'a'; 300]);
        // 300 = 127 + 173; 173 = 0b1_0101101 -> 0xad then 0x01.
        assert_eq!(&out[..3], &[0x7f, 0xad, 0x01]);
        assert_eq!(out.len(), 3 + 300);
    }

    #[test]
    fn preface_length_is_found_and_garbage_is_refused() {
        let mut bytes = H2_PREFACE.to_vec();
        assert_eq!(preface_len(&bytes[..10]), Ok(None));
        bytes.extend_from_slice(&[0, 0, 6, FRAME_SETTINGS, 0, 0, 0, 0, 0]);
        assert_eq!(preface_len(&bytes), Ok(Some(24 + 9 + 6)));
        assert_eq!(preface_len(b"GET / HTTP/1.1\r\n"), Err(()));
        let mut wrong_type = H2_PREFACE.to_vec();
        wrong_type.extend_from_slice(&[0, 0, 0, FRAME_HEADERS, 0, 0, 0, 0, 1]);
        assert_eq!(preface_len(&wrong_type), Err(()));
    }
}
