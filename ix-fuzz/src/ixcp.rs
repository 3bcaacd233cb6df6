//! The control plane's admission protocol (`ix_driver::ixcp`): the bytes an unprivileged dataplane, or anyone
//! who can reach the daemon's socket, sends to the root daemon. Decoding must give a message or a
//! `ProtocolError`; whatever decodes must encode back to the very bytes it came from (the encoding is
//! canonical: fixed fields, length-prefixed UTF-8 names, counts within their limits), but for a refusal, whose
//! message is read with lossy UTF-8 and cut to 512 bytes when encoded; and the refusal the daemon answers an
//! error with must encode and decode to itself.

use ix_driver::ixcp::{Message, REFUSAL_MESSAGE_BYTES_MAX, Refusal};

/// One message as the daemon (or a dataplane) receives it.
///
/// # Panics
/// When decoding panics, when a decoded message does not encode back to its bytes (a refusal: to itself, its
/// message cut), or when the refusal for an error does not survive its own round trip.
pub fn message(data: &[u8]) {
    match Message::decode(data) {
        Ok(Message::Refusal(refusal)) => {
            let bytes = Message::Refusal(refusal.clone()).encode();
            let expected = Refusal { message: cut(&refusal.message).to_owned(), ..refusal };
            assert_eq!(Message::decode(&bytes), Ok(Message::Refusal(expected)));
        }
        Ok(message) => {
            let bytes = message.encode();
            assert_eq!(bytes, data, "{message:?} encodes to other bytes");
        }
        Err(error) => {
            let answer = Message::Refusal(error.refusal());
            assert_eq!(Message::decode(&answer.encode()), Ok(answer));
        }
    }
}

/// `message` cut to at most [`REFUSAL_MESSAGE_BYTES_MAX`] bytes on a character boundary (written again here
/// on purpose: the harness's expectation, not the encoder's code).
fn cut(message: &str) -> &str {
    let mut end = message.len().min(REFUSAL_MESSAGE_BYTES_MAX);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}
