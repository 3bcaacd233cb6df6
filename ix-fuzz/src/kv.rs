//! The memcached text and meta protocol of `examples/kv`: hostile bytes, cut into the chunks a connection's
//! reads would give, go through the connection's decoder and every decoded command runs against a store,
//! as `command_loop` does. (ix-kv speaks no binary protocol.)

use bytes::BytesMut;
use ix_kv::handler::{Flow, execute};
use ix_kv::protocol::{Command, CommandDecoder, DecoderLimits, GET_LINE_MAX_BYTES};
use ix_kv::store::Clock;
use ix_kv::{Server, Settings, Store, StoreConfig};
use tokio_util::codec::Decoder;

use crate::input::{FuzzInput, cut_into_reads};

/// The store's memory: small enough that an input of libFuzzer's longest (8 KiB, `max_len` in
/// `scripts/fuzz.sh`) fills it, so that eviction runs, and a value of a few KiB is refused as out of memory.
/// (The 2 MiB it was before, 512 KiB per shard, no input could fill: eviction never ran.)
const MEMORY_LIMIT_BYTES: usize = 8 * 1024;
/// One shard: which shard a key lands in depends on a hasher seeded at random per store, so with several
/// shards whether an input evicts would vary from run to run.
const SHARDS: usize = 1;
/// The item limit (small, so that "too large" and swallowed blocks happen).
const ITEM_SIZE_MAX_BYTES: usize = 16 * 1024;
/// Most bytes one read hands the decoder.
const READ_CHUNK_MAX_BYTES: usize = 4096;

fn server() -> std::sync::Arc<Server> {
    let store =
        StoreConfig { memory_limit_bytes: MEMORY_LIMIT_BYTES, item_size_max: ITEM_SIZE_MAX_BYTES, shards: SHARDS };
    let settings = Settings { port: 11211, listen_ip: None, max_connections: 16, threads: 1, store };
    Server::with_store(settings, Store::with_clock(store, Clock::manual()))
}

fn decoder() -> CommandDecoder {
    CommandDecoder::new(DecoderLimits { item_size_max: ITEM_SIZE_MAX_BYTES })
}

/// What a decoder made of a byte stream: the commands, and whether it ended in the protocol's error.
fn decode_all(chunks: &[&[u8]], mut each: impl FnMut(&Command) -> Flow, buffered_max: usize) -> (Vec<Command>, bool) {
    let (mut decoder, mut buf, mut commands) = (decoder(), BytesMut::new(), Vec::new());
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(command)) => {
                    let flow = each(&command);
                    commands.push(command);
                    if flow == Flow::Close {
                        return (commands, false);
                    }
                }
                Ok(None) => break,
                Err(_) => return (commands, true),
            }
        }
        assert!(buf.len() <= buffered_max, "the decoder buffers {} bytes", buf.len());
    }
    (commands, false)
}

/// Input: a byte choosing the read sizes, then the stream. Invariants: nothing panics; the decoder never holds
/// more than a bounded line or one declared block; the store stays within its memory limit; and the commands
/// do not depend on how the stream was cut (when neither cut ends in the protocol's error).
///
/// # Panics
/// When an invariant breaks.
pub fn run(data: &[u8]) {
    let mut input = FuzzInput::new(data);
    let cut = input.u8();
    let stream = input.take_rest();
    let chunks: Vec<&[u8]> =
        cut_into_reads(stream, cut, 16, READ_CHUNK_MAX_BYTES).into_iter().map(|(read, _)| read).collect();
    let server = server();
    let mut out = BytesMut::new();
    let buffered_max = GET_LINE_MAX_BYTES.max(ITEM_SIZE_MAX_BYTES + 2) + READ_CHUNK_MAX_BYTES;
    let mut limit_max = server.store().memory_limit_bytes();
    let (cut_commands, cut_failed) = decode_all(
        &chunks,
        |command| {
            let flow = execute(&server, command.clone(), &mut out);
            out.clear();
            limit_max = limit_max.max(server.store().memory_limit_bytes());
            let held = server.store().stats().bytes;
            assert!(held <= limit_max as u64, "the store holds {held} bytes over its limit {limit_max}");
            flow
        },
        buffered_max,
    );
    let (whole_commands, whole_failed) = decode_all(&[stream], |_| Flow::Continue, usize::MAX);
    if !cut_failed && !whole_failed {
        let n = cut_commands.len().min(whole_commands.len());
        assert_eq!(cut_commands[..n], whole_commands[..n], "the commands depend on how the stream was cut");
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// The longest input libFuzzer makes for this target (`max_len` in `scripts/fuzz.sh`).
    const INPUT_MAX_BYTES: usize = 8192;

    #[test]
    fn small_sets_within_the_input_limit_make_the_store_evict() {
        let mut stream = Vec::new();
        for n in 0.. {
            let mut command = Vec::new();
            write!(command, "set k{n} 0 0 1\r\nx\r\n").expect("writes to a Vec");
            if stream.len() + command.len() > INPUT_MAX_BYTES {
                break;
            }
            stream.extend_from_slice(&command);
        }
        let server = server();
        let mut out = BytesMut::new();
        let (commands, failed) =
            decode_all(&[&stream], |command| execute(&server, command.clone(), &mut out), usize::MAX);
        assert!(!failed && commands.iter().all(|c| matches!(c, Command::Store(_))), "every line is a set");
        let stats = server.store().stats();
        assert!(
            stats.evictions > 0,
            "{} sets, {} items held, {} bytes: no eviction",
            commands.len(),
            stats.curr_items,
            stats.bytes
        );
    }
}
