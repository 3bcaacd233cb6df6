//! The hostile-input decoder: frames command lines and data blocks out of a
//! connection's read buffer, with memcached's limits, and never buffers more
//! than a bounded line or one declared (size-checked) data block.

use std::io;
use std::ops::Range;

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

use super::text::{LineOutcome, PendingData, parse_line, tokenize};
use super::{Command, ErrorReply, GET_LINE_MAX_BYTES, LINE_MAX_BYTES, StoreMode, StoreRejection};
use crate::store::item_size;

/// Why a connection must close.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// No newline within the line limit (memcached closes such connections too).
    #[error("command line longer than {0} bytes without a newline")]
    LineTooLong(usize),
    /// The connection failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What the decoder accepts.
#[derive(Debug, Clone, Copy)]
pub struct DecoderLimits {
    /// Largest item (key, value and per-item overhead) in bytes, memcached's `-I`.
    pub item_size_max: usize,
}

#[derive(Debug)]
enum State {
    /// Waiting for a command line.
    Line,
    /// Waiting for `len` data bytes and `\r\n`.
    Data { pending: PendingData, len: usize },
    /// Discarding the data block of a refused command.
    Swallow { remaining: usize },
}

/// Frames [`Command`]s out of a byte stream (a `tokio_util` codec decoder).
#[derive(Debug)]
pub struct CommandDecoder {
    limits: DecoderLimits,
    state: State,
    /// Bytes of the buffer already searched for a newline.
    scanned: usize,
    tokens: Vec<Range<usize>>,
}

impl CommandDecoder {
    /// A decoder with these limits.
    pub fn new(limits: DecoderLimits) -> Self {
        Self { limits, state: State::Line, scanned: 0, tokens: Vec::with_capacity(8) }
    }

    /// Whether the decoder is in the middle of a command (a data block).
    pub fn mid_command(&self) -> bool {
        !matches!(self.state, State::Line)
    }

    fn decode_line(&mut self, buf: &mut BytesMut) -> Result<Option<Command>, ProtocolError> {
        let Some(pos) = memchr::memchr(b'\n', &buf[self.scanned..]) else {
            self.scanned = buf.len();
            let limit = if is_get_line(buf) { GET_LINE_MAX_BYTES } else { LINE_MAX_BYTES };
            return if buf.len() > limit { Err(ProtocolError::LineTooLong(limit)) } else { Ok(None) };
        };
        let end = self.scanned + pos;
        self.scanned = 0;
        let mut line = buf.split_to(end + 1).freeze();
        // memcached strips the `\r` only when something precedes it, and its
        // C string ends at the first NUL.
        line.truncate(if end > 1 && line[end - 1] == b'\r' { end - 1 } else { end });
        if let Some(nul) = memchr::memchr(0, &line) {
            line.truncate(nul);
        }
        tokenize(&line, &mut self.tokens);
        match parse_line(&line, &self.tokens) {
            LineOutcome::Command(cmd) => Ok(Some(cmd)),
            LineOutcome::Data(pending, len) => {
                if item_size(pending.key().len(), len, pending.flags()) > self.limits.item_size_max {
                    self.state = State::Swallow { remaining: len + 2 };
                    return Ok(Some(rejected(pending, StoreRejection::TooLarge)));
                }
                self.state = State::Data { pending, len };
                Ok(None)
            }
            LineOutcome::Refused(cmd, len) => {
                self.state = State::Swallow { remaining: len + 2 };
                Ok(Some(cmd))
            }
        }
    }
}

/// memcached lets only `get`/`gets` lines (after up to 100 spaces) run long.
fn is_get_line(buf: &[u8]) -> bool {
    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
    spaces <= 100 && (buf[spaces..].starts_with(b"get ") || buf[spaces..].starts_with(b"gets "))
}

/// The command a finished data block makes (`buf` holds at least `len + 2` bytes).
fn complete_data(pending: PendingData, len: usize, buf: &mut BytesMut) -> Command {
    let block = buf.split_to(len + 2).freeze();
    if &block[len..] != b"\r\n" {
        return match pending {
            PendingData::Meta(_) => Command::MetaInvalid(ErrorReply::BadDataChunk.as_str()),
            classic => rejected(classic, StoreRejection::BadDataChunk),
        };
    }
    let data = block.slice(..len);
    match pending {
        PendingData::Classic(mut c) => {
            c.data = data;
            Command::Store(c)
        }
        PendingData::Meta(mut m) => {
            m.data = data;
            Command::MetaSet(*m)
        }
    }
}

fn rejected(pending: PendingData, reason: StoreRejection) -> Command {
    match pending {
        PendingData::Classic(c) => {
            Command::StoreRejected { key: c.key, reason, noreply: c.noreply, unlink_old: c.mode == StoreMode::Set }
        }
        // A refused `ms` always answers, and drops the old value in any mode.
        PendingData::Meta(m) => {
            Command::StoreRejected { key: m.request.key.clone(), reason, noreply: false, unlink_old: true }
        }
    }
}

impl Decoder for CommandDecoder {
    type Item = Command;
    type Error = ProtocolError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Command>, ProtocolError> {
        loop {
            match std::mem::replace(&mut self.state, State::Line) {
                State::Line => {
                    if let Some(cmd) = self.decode_line(buf)? {
                        return Ok(Some(cmd));
                    }
                    if matches!(self.state, State::Line) {
                        return Ok(None);
                    }
                }
                State::Swallow { remaining } => {
                    let n = remaining.min(buf.len());
                    buf.advance(n);
                    if remaining > n {
                        self.state = State::Swallow { remaining: remaining - n };
                        return Ok(None);
                    }
                }
                State::Data { pending, len } => {
                    // The block is not reserved up front: a client that declares
                    // a large block and stalls holds only what it sent.
                    if buf.len() < len + 2 {
                        self.state = State::Data { pending, len };
                        return Ok(None);
                    }
                    return Ok(Some(complete_data(pending, len, buf)));
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Command>, ProtocolError> {
        // A command cut short by the peer's close is dropped, not an error.
        self.decode(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> CommandDecoder {
        CommandDecoder::new(DecoderLimits { item_size_max: 1024 * 1024 })
    }

    /// Feeds `input` one byte at a time and collects every command.
    fn byte_by_byte(input: &[u8]) -> Vec<Command> {
        let (mut d, mut buf, mut out) = (decoder(), BytesMut::new(), Vec::new());
        for &b in input {
            buf.extend_from_slice(&[b]);
            while let Some(cmd) = d.decode(&mut buf).unwrap() {
                out.push(cmd);
            }
        }
        out
    }

    #[test]
    fn commands_split_anywhere_decode_the_same() {
        let input = b"set a 1 0 3 noreply\r\nabc\r\nget a b\r\ngets a\r\nms m 2 T5 c\r\nhi\r\nmn\r\n";
        let cmds = byte_by_byte(input);
        assert_eq!(cmds.len(), 5);
        match &cmds[0] {
            Command::Store(s) => {
                assert_eq!(
                    (s.mode, &s.key[..], s.flags, &s.data[..], s.noreply),
                    (StoreMode::Set, &b"a"[..], 1, &b"abc"[..], true)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&cmds[1], Command::Get { keys, with_cas: false, touch: None } if keys.len() == 2));
        assert!(matches!(&cmds[3], Command::MetaSet(m) if &m.data[..] == b"hi" && m.request.options.touch == Some(5)));
        assert_eq!(cmds[4], Command::MetaNoop);
    }

    #[test]
    fn too_large_blocks_are_swallowed_not_buffered() {
        let mut d = CommandDecoder::new(DecoderLimits { item_size_max: 1024 });
        let mut buf = BytesMut::from(&b"set k 0 0 5000\r\n"[..]);
        assert!(matches!(
            d.decode(&mut buf).unwrap(),
            Some(Command::StoreRejected { reason: StoreRejection::TooLarge, .. })
        ));
        for _ in 0..5 {
            buf.extend_from_slice(&[b'x'; 1000]);
            assert!(d.decode(&mut buf).unwrap().is_none());
            assert!(buf.is_empty(), "swallowed data is dropped as it arrives");
        }
        buf.extend_from_slice(b"\r\nmn\r\n");
        assert_eq!(d.decode(&mut buf).unwrap(), Some(Command::MetaNoop));
    }

    #[test]
    fn overlong_lines_are_an_error_and_get_lines_may_be_longer() {
        let mut buf = BytesMut::from(&[b'a'; LINE_MAX_BYTES + 1][..]);
        assert!(matches!(decoder().decode(&mut buf), Err(ProtocolError::LineTooLong(_))));
        let mut buf = BytesMut::from(&b"get "[..]);
        buf.extend_from_slice(&[b'k'; LINE_MAX_BYTES * 4]);
        assert!(decoder().decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut d = decoder();
        let mut buf = BytesMut::new();
        for _ in 0..20_000 {
            let len = (x % 64) as usize;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly protocol-ish bytes, so that commands and data blocks happen.
                let alphabet =
                    b"set get ms mg me ma md mn stats slabs lru b I E N R q v HTTP/ 0 1 5 noreply \r\n\r\nabc\x00\xff";
                buf.extend_from_slice(&[alphabet[(x % alphabet.len() as u64) as usize]]);
            }
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(_) => {
                        d = decoder();
                        buf.clear();
                        break;
                    }
                }
            }
            assert!(buf.len() <= GET_LINE_MAX_BYTES + 64);
        }
    }
}
