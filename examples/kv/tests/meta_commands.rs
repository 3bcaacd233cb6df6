//! Meta command behaviour the differential test cannot compare with the
//! installed memcached 1.6.18: the explicit CAS flag `E` (memcached 1.6.27+),
//! and a named walk through invalidation and the recache tokens (`I`, `W`,
//! `X`, `Z`), which the random stream covers only by chance.

mod support;

use support::{RawClient, start_tokio};

fn reply(client: &mut RawClient, request: &str) -> String {
    String::from_utf8(client.exchange(request.as_bytes())).expect("ASCII reply")
}

#[test]
fn explicit_cas_sets_the_unique_of_a_changed_item() {
    let server = start_tokio(&[]);
    let mut c = RawClient::connect(server.addr);
    assert_eq!(reply(&mut c, "ms k 1 E500 c\r\na\r\n"), "HD c500\r\n");
    assert_eq!(reply(&mut c, "mg k c v\r\n"), "VA 1 c500\r\na\r\n");
    assert_eq!(reply(&mut c, "ms k 1 C499 E600\r\nb\r\n"), "EX\r\n", "a wrong compare stores nothing");
    assert_eq!(reply(&mut c, "ms k 1 C500 E600 c\r\nb\r\n"), "HD c600\r\n");
    assert_eq!(reply(&mut c, "gets k\r\n"), "VALUE k 0 1 600\r\nb\r\nEND\r\n");
    assert_eq!(reply(&mut c, "set n 0 0 1\r\n5\r\n"), "STORED\r\n");
    assert_eq!(reply(&mut c, "ma n E700 c v\r\n"), "VA 1 c700\r\n6\r\n");
    assert_eq!(reply(&mut c, "ma fresh N0 J9 E800 c v\r\n"), "VA 1 c800\r\n9\r\n", "a created counter");
    assert_eq!(reply(&mut c, "md k I E900\r\n"), "HD\r\n");
    assert_eq!(reply(&mut c, "mg k c\r\n"), "HD c900 X W\r\n", "the invalidated item carries the new unique");
    assert_eq!(reply(&mut c, "mg vivified N30 E1000 c\r\n"), "HD c1000 W\r\n");
    assert_eq!(reply(&mut c, "ms k 1 Ex\r\nb\r\n"), "CLIENT_ERROR bad token in command line format\r\n");
}

/// The replies are memcached 1.6.18's for the same lines (run by hand
/// against `memcached -o no_lru_maintainer`).
#[test]
fn invalidation_hands_out_one_recache_token() {
    let server = start_tokio(&[]);
    let mut c = RawClient::connect(server.addr);
    assert_eq!(reply(&mut c, "ms k 2 T100\r\nv1\r\n"), "HD\r\n");
    assert_eq!(reply(&mut c, "mg k v\r\n"), "VA 2\r\nv1\r\n", "a fresh item: no marks");
    assert_eq!(reply(&mut c, "md k I T30\r\n"), "HD\r\n");
    assert_eq!(reply(&mut c, "mg k t\r\n"), "HD t30 X W\r\n", "stale: the first reader wins");
    assert_eq!(reply(&mut c, "mg k\r\n"), "HD Z X\r\n", "later readers see the token is out");
    let cas: u64 = reply(&mut c, "mg k c\r\n")[4..].split(' ').next().unwrap().parse().unwrap();
    // A write with an older unique and I is kept, still stale, token kept.
    assert_eq!(reply(&mut c, &format!("ms k 2 I C{}\r\nv2\r\n", cas - 1)), "HD\r\n");
    assert_eq!(reply(&mut c, "mg k v\r\n"), "VA 2 Z X\r\nv2\r\n");
    assert_eq!(reply(&mut c, "set k 0 100 2\r\nv3\r\n"), "STORED\r\n");
    assert_eq!(reply(&mut c, "mg k v\r\n"), "VA 2\r\nv3\r\n", "a plain write clears the marks");
    assert_eq!(reply(&mut c, "mg k R200\r\n"), "HD W\r\n", "under 200 s left: recache win");
    assert_eq!(reply(&mut c, "mg k R200\r\n"), "HD Z\r\n");
    assert_eq!(reply(&mut c, "mg absent N30 s\r\n"), "HD s0 W\r\n", "vivify on miss wins too");
    assert_eq!(reply(&mut c, "mg absent N30 s\r\n"), "HD s0 Z\r\n");
}
