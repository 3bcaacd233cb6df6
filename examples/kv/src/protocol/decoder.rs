//! The hostile-input decoder: frames command lines and data blocks out of a
//! connection's read buffer, with memcached's limits, and never buffers more
//! than a bounded line or one declared (size-checked) data block.

use std::io;
use std::ops::Range;

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

use super::text::{LineOutcome, PendingData, parse_line, tokenize};
use super::{Command, ErrorReply, GET_LINE_MAX_BYTES, LINE_MAX_BYTES, StoreRejection};
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
        let Some(pos) = buf[self.scanned..].iter().position(|&b| b == b'\n') else {
            self.scanned = buf.len();
            let limit = if is_get_line(buf) { GET_LINE_MAX_BYTES } else { LINE_MAX_BYTES };
            return if buf.len() > limit { Err(ProtocolError::LineTooLong(limit)) } else { Ok(None) };
        };
        let end = self.scanned + pos;
        self.scanned = 0;
        let mut line = buf.split_to(end + 1).freeze();
        line.truncate(if end > 0 && line[end - 1] == b'\r' { end - 1 } else { end });
        tokenize(&line, &mut self.tokens);
        match parse_line(&line, &self.tokens) {
            LineOutcome::Command(cmd) => Ok(Some(cmd)),
            LineOutcome::Data(pending, len) => {
                if item_size(pending.key().len(), len) > self.limits.item_size_max {
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
            PendingData::Meta(_) => Command::Invalid(ErrorReply::BadDataChunk),
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
            Command::MetaSet(m)
        }
    }
}

fn rejected(pending: PendingData, reason: StoreRejection) -> Command {
    match pending {
        PendingData::Classic(c) => Command::StoreRejected { key: c.key, mode: c.mode, reason, noreply: c.noreply },
        PendingData::Meta(m) => Command::StoreRejected { key: m.key, mode: m.mode, reason, noreply: false },
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
