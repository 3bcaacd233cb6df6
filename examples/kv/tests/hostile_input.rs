//! Bad input against `ix-kv` on tokio: overlong lines, binary garbage, data
//! lengths that lie, a client that stalls mid-command, 10k connections, and the
//! connection limit. Each ends in the protocol's error or a close; the server
//! keeps serving and no client sees another's data.

mod support;

use std::net::TcpStream;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{RawClient, start_tokio};

const CONNECTIONS: usize = 10_000;

fn set_and_check(addr: std::net::SocketAddrV4, key: &str, value: &str) {
    let mut c = RawClient::connect(addr);
    assert_eq!(c.exchange(format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()).as_bytes()), b"STORED\r\n");
    let want = format!("VALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len());
    assert_eq!(c.exchange(format!("get {key}\r\n").as_bytes()), want.as_bytes());
}

#[test]
fn overlong_lines_close_only_their_connection() {
    let server = start_tokio(&[]);
    set_and_check(server.addr, "owner", "mine");
    let mut bad = RawClient::connect(server.addr);
    bad.send(&vec![b'x'; 3000]);
    assert!(bad.closed_by_peer(), "a 3000-byte line without a newline closes the connection");
    // A get line may run long (as in memcached), up to the server's bound.
    let mut long_get = RawClient::connect(server.addr);
    let keys: Vec<String> = (0..200).map(|i| format!("key{i:04}_{}", "k".repeat(40))).collect();
    assert_eq!(long_get.exchange(format!("get {}\r\n", keys.join(" ")).as_bytes()), b"END\r\n");
    let mut huge_get = RawClient::connect(server.addr);
    huge_get.send(b"get ");
    huge_get.send(&vec![b'k'; 300 * 1024]);
    assert!(huge_get.closed_by_peer(), "a get line beyond 256 KiB closes the connection");
    set_and_check(server.addr, "owner", "mine");
}

#[test]
fn garbage_gets_errors_and_leaves_other_clients_alone() {
    let server = start_tokio(&[]);
    set_and_check(server.addr, "victim", "untouched");
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..20 {
        let mut bad = RawClient::connect(server.addr);
        bad.stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut junk: Vec<u8> = (0..rng.random_range(100..20_000)).map(|_| rng.random()).collect();
        // Keep lines short enough to be parsed as (bad) commands most rounds.
        if round % 2 == 0 {
            for i in (0..junk.len()).step_by(200) {
                junk[i] = b'\n';
            }
        }
        bad.send(&junk);
        let _ = bad.read_until(b"\r\n");
    }
    set_and_check(server.addr, "victim", "untouched");
    let mut c = RawClient::connect(server.addr);
    assert_eq!(c.exchange(b"get victim\r\n"), b"VALUE victim 0 9\r\nuntouched\r\nEND\r\n");
}

#[test]
fn data_lengths_that_lie() {
    let server = start_tokio(&[]);
    let mut c = RawClient::connect(server.addr);
    // Longer than declared: the block does not end in \r\n, the rest is a line.
    assert_eq!(c.exchange(b"set k 0 0 2\r\nabcdef\r\n"), b"CLIENT_ERROR bad data chunk\r\nERROR\r\n");
    // Shorter than declared: the next command is read as data, as in memcached.
    assert_eq!(c.exchange(b"set k 0 0 10\r\nabc\r\nget k\r\n"), b"STORED\r\n");
    assert_eq!(c.exchange(b"get k\r\n"), b"VALUE k 0 10\r\nabc\r\nget k\r\nEND\r\n");
    // A declared length beyond the item limit is answered at once and the
    // data swallowed without being stored.
    let mut big = b"set huge 0 0 2000000\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'z', 2_000_000));
    big.extend_from_slice(b"\r\n");
    assert_eq!(c.exchange(&big), b"SERVER_ERROR object too large for cache\r\n");
    assert_eq!(c.exchange(b"get huge\r\n"), b"END\r\n");
    assert_eq!(c.exchange(b"set neg 0 0 -5\r\n"), b"CLIENT_ERROR bad command line format\r\n");
}

#[test]
fn a_client_stalled_mid_command_blocks_nobody() {
    let server = start_tokio(&[]);
    let mut stalled = RawClient::connect(server.addr);
    stalled.send(b"set slow 0 0 100\r\nabc");
    let mut stalled_line = RawClient::connect(server.addr);
    stalled_line.send(b"get sl");
    for i in 0..50 {
        set_and_check(server.addr, &format!("busy{i}"), "value");
    }
    // The stalled command completes when the rest arrives.
    stalled.send(&[b'x'; 97]);
    stalled.send(b"\r\n");
    assert_eq!(stalled.read_until(b"\r\n"), b"STORED\r\n");
    stalled_line.send(b"ow\r\n");
    let reply = stalled_line.read_until(b"END\r\n");
    assert!(reply.starts_with(b"VALUE slow 0 100\r\nabc"), "{}", support::show(&reply));
}

#[test]
fn ten_thousand_connections() {
    let server = start_tokio(&["-c", "20000"]);
    set_and_check(server.addr, "shared", "v");
    let mut conns: Vec<TcpStream> = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let c = TcpStream::connect(server.addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        conns.push(c);
    }
    // Every connection asks for its own key plus the shared one; every reply
    // holds exactly its own answer.
    for (i, c) in conns.iter_mut().enumerate() {
        std::io::Write::write_all(
            c,
            format!("set own{i} 0 0 {}\r\n{i}\r\nget own{i} shared\r\n", i.to_string().len()).as_bytes(),
        )
        .unwrap();
    }
    for (i, c) in conns.into_iter().enumerate() {
        let mut client = RawClient { stream: c };
        let want =
            format!("STORED\r\nVALUE own{i} 0 {}\r\n{i}\r\nVALUE shared 0 1\r\nv\r\nEND\r\n", i.to_string().len());
        assert_eq!(client.read_until(b"END\r\n"), want.as_bytes(), "connection {i}");
    }
    set_and_check(server.addr, "after", "ok");
}

#[test]
fn connections_over_the_limit_are_told_and_closed() {
    let server = start_tokio(&["-c", "4"]);
    let held: Vec<RawClient> = (0..4).map(|_| RawClient::connect(server.addr)).collect();
    // Give the server time to count them.
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = RawClient::connect(server.addr);
    assert_eq!(extra.read_until(b"\r\n"), b"ERROR Too many open connections\r\n");
    assert!(extra.closed_by_peer());
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    set_and_check(server.addr, "again", "fine");
}
