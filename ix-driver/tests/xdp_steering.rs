//! The XDP backend at the driver level, on a veth pair between two network
//! namespaces: the program's verdicts on crafted frames, a queue that receives
//! only its address's frames (read-only: a write faults), and the set-up errors.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ix_driver::netns::{TestNetwork, spawn_in};
use ix_driver::pool::PoolConfig;
use ix_driver::xdp::{XDP_DROP, XDP_PASS};
use ix_driver::{DriverError, HugePages, NetQueue, PacketPool, XdpConfig, XdpDevice, XdpQueue, privilege};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/testnet.sh");
/// An address on the veth's subnet that the kernel does not have.
const DATAPLANE_ONLY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
const SERVER: Ipv4Addr = TestNetwork::SERVER_ADDR;
const CLIENT: Ipv4Addr = TestNetwork::CLIENT_ADDR;

fn privileged() -> bool {
    privilege::require("XDP on veth in network namespaces", privilege::netns_available())
}

fn network(tag: &str, queues: u16) -> TestNetwork {
    TestNetwork::up(SCRIPT, tag, queues).expect("test network")
}

fn config(iface: &str, options: &str) -> XdpConfig {
    format!("{iface}{options}").parse().expect("config")
}

/// Ethernet + IPv4 + 8 bytes of TCP/UDP ports and padding.
fn ipv4(dst: Ipv4Addr, protocol: u8, dst_port: u16, fragment_offset: u16, ihl: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0x08, 0x00]);
    f.extend_from_slice(&[0x40 | ihl, 0, 0, 48, 0, 0]);
    f.extend_from_slice(&fragment_offset.to_be_bytes());
    f.extend_from_slice(&[64, protocol, 0, 0]);
    f.extend_from_slice(&CLIENT.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dst_port.to_be_bytes());
    f.extend_from_slice(&[0; 16]);
    f
}

fn arp(operation: u8, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, operation]);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f.extend_from_slice(&[0; 18]);
    f
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
/// The verdict for a frame meant for the dataplane while no socket is bound
/// (the program's fallback), as opposed to `XDP_PASS` for the kernel's.
const STEERED: u32 = XDP_DROP;

#[test]
fn the_program_steers_only_the_dataplanes_frames() {
    if !privileged() {
        return;
    }
    let net = network("ixps", 1);
    let iface = net.server_if();
    spawn_in(&net.server_ns(), move || {
        let exclusive = XdpDevice::open(&config(&iface, ",mode=generic"), 1, DATAPLANE_ONLY).unwrap();
        let cases: &[(&str, Vec<u8>, u32)] = &[
            ("TCP to the dataplane", ipv4(DATAPLANE_ONLY, TCP, 80, 0, 5), STEERED),
            ("ICMP to the dataplane", ipv4(DATAPLANE_ONLY, ICMP, 0, 0, 5), STEERED),
            ("TCP to the kernel", ipv4(SERVER, TCP, 80, 0, 5), XDP_PASS),
            ("ARP request for the dataplane", arp(1, CLIENT, DATAPLANE_ONLY), STEERED),
            ("ARP reply to the dataplane", arp(2, CLIENT, DATAPLANE_ONLY), STEERED),
            ("ARP request for the kernel", arp(1, CLIENT, SERVER), XDP_PASS),
            ("a truncated IPv4 header", ipv4(DATAPLANE_ONLY, TCP, 80, 0, 5)[..30].to_vec(), XDP_PASS),
            ("a truncated ARP frame", arp(1, CLIENT, DATAPLANE_ONLY)[..40].to_vec(), XDP_PASS),
        ];
        for (what, frame, verdict) in cases {
            assert_eq!(exclusive.test_verdict(frame).unwrap(), *verdict, "exclusive address: {what}");
        }
        drop(exclusive);

        let shared = XdpDevice::open(&config(&iface, ",mode=generic,ports=7000+53"), 1, SERVER).unwrap();
        let cases: &[(&str, Vec<u8>, u32)] = &[
            ("TCP to a dataplane port", ipv4(SERVER, TCP, 7000, 0, 5), STEERED),
            ("UDP to a dataplane port", ipv4(SERVER, UDP, 53, 0, 5), STEERED),
            ("TCP to another port", ipv4(SERVER, TCP, 22, 0, 5), XDP_PASS),
            ("TCP to the dataplane's first own port", ipv4(SERVER, TCP, 61000, 0, 5), STEERED),
            ("UDP to the dataplane's last own port", ipv4(SERVER, UDP, 65535, 0, 5), STEERED),
            ("TCP just below the dataplane's own ports", ipv4(SERVER, TCP, 60999, 0, 5), XDP_PASS),
            ("ICMP to the shared address", ipv4(SERVER, ICMP, 0, 0, 5), XDP_PASS),
            ("a later fragment", ipv4(SERVER, TCP, 7000, 3, 5), XDP_PASS),
            ("an IPv4 header length below 20", ipv4(SERVER, TCP, 7000, 0, 4), XDP_PASS),
            ("TCP to a dataplane port, other address", ipv4(DATAPLANE_ONLY, TCP, 7000, 0, 5), XDP_PASS),
            ("ARP request for the shared address", arp(1, CLIENT, SERVER), XDP_PASS),
            ("ARP reply nobody waits for", arp(2, CLIENT, SERVER), XDP_PASS),
        ];
        for (what, frame, verdict) in cases {
            assert_eq!(shared.test_verdict(frame).unwrap(), *verdict, "shared address: {what}");
        }
    })
    .join()
    .unwrap();
}

fn pool() -> PacketPool {
    PacketPool::new(PoolConfig { frames: 1024, huge_pages: HugePages::Auto }).unwrap()
}

/// Reads the queue for `duration`, keeping every frame's bytes and the last frame.
fn collect(queue: &mut XdpQueue, duration: Duration) -> (Vec<Vec<u8>>, Option<ix_driver::PacketBuf>) {
    let mut frames = Vec::new();
    let mut last = None;
    let mut batch = Vec::new();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        queue.rx_burst(&mut batch, 64);
        for frame in batch.drain(..) {
            frames.push(frame.to_vec());
            last = Some(frame);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    (frames, last)
}

/// Forks a child that writes through `frame`'s bytes; returns the signal that
/// ended it, if one did.
fn write_in_child(frame: &ix_driver::PacketBuf) -> Option<i32> {
    let target = frame.as_ptr().cast_mut();
    // SAFETY: the child only performs one volatile write and `_exit`s; it calls
    // nothing that could deadlock on a lock another thread held at fork time.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: deliberately writes through a pointer to read-only memory in
        // a disposable child: the fault is what the test looks for.
        unsafe {
            target.write_volatile(0x55);
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked, into a live integer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status))
}

#[test]
fn a_queue_receives_only_its_addresss_frames_and_cannot_write_them() {
    if !privileged() {
        return;
    }
    let net = network("ixpq", 1);
    let iface = net.server_if();
    let server = spawn_in(&net.server_ns(), move || {
        let mut device = XdpDevice::open(&config(&iface, ",mode=native"), 1, DATAPLANE_ONLY).unwrap();
        let mut queue = XdpQueue::new(device.take_queue(0).unwrap(), pool()).unwrap();
        assert!(!queue.is_zero_copy(), "veth binds in copy mode only");
        let (frames, last) = collect(&mut queue, Duration::from_secs(3));
        // The write test runs here: frames belong to this thread's pool.
        let fault = last.as_ref().map(|frame| (write_in_child(frame), frame.to_vec()));
        (frames, fault)
    });
    std::thread::sleep(Duration::from_millis(300));
    let cli = net.client_ns();
    let kernel = net.exec(&cli, &["ping", "-c", "3", "-i", "0.2", "-W", "1", &SERVER.to_string()]).unwrap();
    let dataplane = net.exec(&cli, &["ping", "-c", "2", "-i", "0.3", "-W", "1", &DATAPLANE_ONLY.to_string()]).unwrap();
    let (frames, fault) = server.join().unwrap();
    assert!(kernel.status.success(), "the kernel answers pings while the dataplane runs: {kernel:?}");
    assert!(!dataplane.status.success(), "nothing answers for the dataplane in this test");
    assert!(!frames.is_empty(), "the client's ARP requests for {DATAPLANE_ONLY} reach the queue");
    for frame in &frames {
        let is_arp_for_us = frame[12..14] == [0x08, 0x06] && frame[38..42] == DATAPLANE_ONLY.octets();
        let is_ipv4_for_us = frame[12..14] == [0x08, 0x00] && frame[30..34] == DATAPLANE_ONLY.octets();
        assert!(is_arp_for_us || is_ipv4_for_us, "a frame for someone else reached the dataplane: {frame:02x?}");
    }
    let (signal, bytes_after) = fault.unwrap();
    assert_eq!(signal, Some(libc::SIGSEGV), "a write into a received frame faults");
    assert_eq!(&bytes_after, frames.last().unwrap(), "and changes nothing");
}

#[test]
fn set_up_errors_say_what_to_do() {
    if !privileged() {
        return;
    }
    let net = network("ixpe", 1);
    let iface = net.server_if();
    // A bridge has no native XDP; it goes away with the namespace.
    let bridge = net.exec(&net.server_ns(), &["ip", "link", "add", "ixbr0", "type", "bridge"]).unwrap();
    assert!(bridge.status.success(), "{bridge:?}");
    spawn_in(&net.server_ns(), move || {
        let missing = XdpDevice::open(&config("ixnosuch0", ""), 1, SERVER).unwrap_err();
        assert!(matches!(missing, DriverError::NoSuchInterface { .. }), "{missing}");

        let too_many = XdpDevice::open(&config(&iface, ",queues=2"), 2, SERVER).unwrap_err();
        assert!(matches!(too_many, DriverError::TooManyQueues { requested: 2, available: 1, .. }), "{too_many}");

        let no_native = XdpDevice::open(&config("ixbr0", ",mode=native"), 1, SERVER).unwrap_err();
        assert!(no_native.to_string().contains("mode=generic"), "{no_native}");

        let first = XdpDevice::open(&config(&iface, ""), 1, SERVER).unwrap();
        let second = XdpDevice::open(&config(&iface, ""), 1, SERVER).unwrap_err();
        assert!(second.to_string().contains("another XDP program is attached"), "{second}");
        drop(first);

        let mut device = XdpDevice::open(&config(&iface, ",bind=zerocopy"), 1, SERVER).unwrap();
        let zero_copy = XdpQueue::new(device.take_queue(0).unwrap(), pool()).unwrap_err();
        assert!(zero_copy.to_string().contains("bind=copy or bind=auto"), "{zero_copy}");
        assert!(device.take_queue(0).is_err(), "a queue is taken once");
    })
    .join()
    .unwrap();
}
