//! The `tap` backend against the real kernel: ARP both ways over a TAP device,
//! multi-queue transmit, receive drop counters, and device removal on close.

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ix_driver::privilege::{has_net_admin, require};
use ix_driver::queue::ETHERNET_HEADER_BYTES;
use ix_driver::{DriverError, HugePages, NetQueue, PacketBuf, PacketPool, PoolConfig, TapDevice, TapQueue};

/// Address of the kernel side of the TAP device (link-local, test-only).
const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 1);
/// Address the test answers for on the dataplane side.
const DATAPLANE_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 2);
/// How long to wait for the kernel to send or learn something.
const KERNEL_WAIT_MS: u64 = 3000;

const ETHERTYPE_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
/// Ethernet header plus an ARP packet for IPv4 over Ethernet.
const ARP_FRAME_BYTES: usize = ETHERNET_HEADER_BYTES + 28;

/// Deletes the link on drop if it is still there, so that a failing test (or a
/// device that outlived its descriptors) leaves nothing behind. Declare it
/// before the device so that it drops after it.
struct LinkGuard {
    name: String,
}

impl LinkGuard {
    /// A fresh interface name for this test in this process: `ixt` + tag + pid.
    fn new(tag: &str) -> Self {
        let name = format!("ixt{tag}{}", std::process::id());
        assert!(name.len() < 16, "interface name {name} too long");
        let guard = Self { name };
        guard.delete_if_present();
        guard
    }

    fn exists(&self) -> bool {
        Path::new("/sys/class/net").join(&self.name).exists()
    }

    fn delete_if_present(&self) {
        if self.exists() {
            let _ = Command::new("ip").args(["link", "delete", &self.name]).status();
        }
    }
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        self.delete_if_present();
    }
}

/// Runs `ip ARGS`, panicking with its error output when it fails.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip (package iproute2)");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pool(frames: u32) -> PacketPool {
    PacketPool::new(PoolConfig { frames, huge_pages: HugePages::Never }).expect("packet pool")
}

/// The start of every kernel test: `None` (the test returns) when TAP devices
/// cannot be made here; otherwise a fresh device with `queues` queues, named
/// after `tag`, and the guard that removes it.
fn privileged_tap(tag: &str, queues: u16) -> Option<(LinkGuard, TapDevice)> {
    if !require("TAP", has_net_admin()) {
        return None;
    }
    let guard = LinkGuard::new(tag);
    let device = TapDevice::open(&guard.name, queues).expect("open tap device");
    assert_eq!(device.name(), guard.name);
    Some((guard, device))
}

/// Gives the kernel side of `dev` the address `KERNEL_IP/24`.
fn add_kernel_address(dev: &str) {
    ip(&["addr", "add", &format!("{KERNEL_IP}/24"), "dev", dev]);
}

/// Makes the kernel send an IPv4 datagram of `payload_len` bytes towards
/// `DATAPLANE_IP` (starting ARP resolution if it has no neighbour entry).
fn kernel_sends_udp(payload_len: usize) {
    let socket = UdpSocket::bind((KERNEL_IP, 0)).expect("bind on the kernel side");
    socket.send_to(&vec![0x5a; payload_len], (DATAPLANE_IP, 9)).expect("send_to");
}

/// Receives from `queue` until a frame satisfies `wanted`, waiting on the
/// queue's descriptor; `None` when `KERNEL_WAIT_MS` pass first.
fn receive_until(queue: &mut TapQueue, wanted: impl Fn(&[u8]) -> bool) -> Option<PacketBuf> {
    let deadline = Instant::now() + Duration::from_millis(KERNEL_WAIT_MS);
    let mut batch = Vec::new();
    while Instant::now() < deadline {
        queue.rx_burst(&mut batch, 64);
        if let Some(found) = batch.drain(..).find(|frame| wanted(frame)) {
            return Some(found);
        }
        wait_readable(queue, Duration::from_millis(50));
    }
    None
}

fn wait_readable(queue: &TapQueue, timeout: Duration) {
    let fd = queue.wait_fd().expect("a TAP queue has a descriptor to wait on");
    let mut pollfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd that outlives the call.
    unsafe { libc::poll(&mut pollfd, 1, timeout.as_millis() as libc::c_int) };
}

fn be16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

fn ipv4_at(frame: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3])
}

/// Whether `frame` is an ARP request for `target`.
fn is_arp_request_for(frame: &[u8], target: Ipv4Addr) -> bool {
    frame.len() >= ARP_FRAME_BYTES
        && be16(frame, 12) == ETHERTYPE_ARP
        && be16(frame, 20) == ARP_REQUEST
        && ipv4_at(frame, 38) == target
}

/// An ARP reply frame: `sender_mac` has `sender_ip`, sent to `target_mac`.
fn arp_reply(sender_mac: [u8; 6], sender_ip: Ipv4Addr, target_mac: [u8; 6], target_ip: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ARP_FRAME_BYTES);
    frame.extend_from_slice(&target_mac);
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]); // Ethernet, IPv4, lengths
    frame.extend_from_slice(&ARP_REPLY.to_be_bytes());
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&sender_ip.octets());
    frame.extend_from_slice(&target_mac);
    frame.extend_from_slice(&target_ip.octets());
    frame
}

/// Copies `bytes` into a frame of `pool`, ready for `tx_burst`.
fn frame_in(pool: &PacketPool, bytes: &[u8]) -> PacketBuf {
    let mut frame = pool.alloc().expect("a free frame");
    frame.extend_from_slice(bytes).expect("frame room");
    frame.freeze()
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// The kernel's neighbour entry line for `ip` on `dev`, once it has a link-layer
/// address.
fn wait_for_neighbour(dev: &str, ip_addr: Ipv4Addr) -> Option<String> {
    let deadline = Instant::now() + Duration::from_millis(KERNEL_WAIT_MS);
    while Instant::now() < deadline {
        let table = ip(&["neigh", "show", "dev", dev]);
        let prefix = format!("{ip_addr} ");
        if let Some(line) = table.lines().find(|l| l.starts_with(&prefix) && l.contains("lladdr")) {
            return Some(line.to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Reads a counter of the kernel side, e.g. `rx_packets`.
fn kernel_counter(dev: &str, counter: &str) -> u64 {
    let path = format!("/sys/class/net/{dev}/statistics/{counter}");
    std::fs::read_to_string(&path).expect(&path).trim().parse().expect("a number")
}

#[test]
fn kernel_arp_request_arrives_and_our_reply_fills_its_neighbour_table() {
    let Some((guard, mut device)) = privileged_tap("arp", 1) else {
        return;
    };
    add_kernel_address(&guard.name);
    let mut queue = device.queue(0, pool(64)).expect("queue 0");
    assert_ne!(device.mac(), device.kernel_mac());
    assert_eq!(queue.mac(), device.mac());

    // (a) The kernel asks who has DATAPLANE_IP; the request reaches our queue.
    kernel_sends_udp(8);
    let request = receive_until(&mut queue, |f| is_arp_request_for(f, DATAPLANE_IP))
        .expect("the kernel's ARP request for 169.254.77.2 on the TAP queue");
    assert_eq!(&request[0..6], &[0xff; 6], "sent to broadcast");
    assert_eq!(&request[6..12], &device.kernel_mac(), "sent from the kernel side");
    assert_eq!(be16(&request, 14), 1, "hardware type Ethernet");
    assert_eq!(be16(&request, 16), 0x0800, "protocol type IPv4");
    assert_eq!(&request[22..28], &device.kernel_mac(), "sender hardware address");
    assert_eq!(ipv4_at(&request, 28), KERNEL_IP, "sender protocol address");
    let stats = queue.stats();
    assert!(stats.rx_packets >= 1 && stats.rx_bytes >= ARP_FRAME_BYTES as u64, "{stats:?}");

    // (b) Our reply teaches the kernel our MAC for DATAPLANE_IP.
    let reply = arp_reply(device.mac(), DATAPLANE_IP, device.kernel_mac(), KERNEL_IP);
    let mut batch = vec![frame_in(queue.pool(), &reply)];
    assert_eq!(queue.tx_burst(&mut batch), 1);
    assert!(batch.is_empty(), "a sent frame leaves the batch");
    assert_eq!(queue.stats().tx_packets, 1);
    assert_eq!(queue.stats().tx_bytes, ARP_FRAME_BYTES as u64);
    let entry = wait_for_neighbour(&guard.name, DATAPLANE_IP).expect("the kernel's neighbour table lists 169.254.77.2");
    assert!(entry.contains(&format!("lladdr {}", mac_text(device.mac()))), "{entry}");
}

#[test]
fn both_queues_of_a_multi_queue_device_transmit() {
    let Some((guard, mut device)) = privileged_tap("mq", 2) else {
        return;
    };
    assert_eq!(device.queue_count(), 2);
    let before = kernel_counter(&guard.name, "rx_packets");
    let reply = arp_reply(device.mac(), DATAPLANE_IP, device.kernel_mac(), KERNEL_IP);

    // Queue 1's descriptor moves to another thread, which builds its queue there.
    let fd = device.take_queue_fd(1).expect("queue 1");
    let thread_reply = reply.clone();
    let sent_by_thread = std::thread::spawn(move || {
        let mut queue = TapQueue::new(fd, pool(8));
        assert_eq!(queue.queue_index(), 1);
        let mut batch = vec![frame_in(queue.pool(), &thread_reply)];
        (queue.tx_burst(&mut batch), queue.stats().tx_packets)
    });
    let mut queue0 = device.queue(0, pool(8)).expect("queue 0");
    let mut batch = vec![frame_in(queue0.pool(), &reply)];
    assert_eq!(queue0.tx_burst(&mut batch), 1);
    assert_eq!(queue0.stats().tx_packets, 1);
    assert_eq!(sent_by_thread.join().expect("queue 1 thread"), (1, 1));
    assert_eq!(kernel_counter(&guard.name, "rx_packets") - before, 2, "the kernel got both");

    assert!(matches!(device.take_queue_fd(0), Err(DriverError::Config(_))), "taken twice");
    assert!(matches!(device.take_queue_fd(2), Err(DriverError::Config(_))), "no queue 2");
    assert!(device.set_mtu(1400).is_err(), "the MTU is fixed once queues are out");
}

#[test]
fn oversized_frames_and_an_empty_pool_are_counted_not_delivered() {
    let Some((guard, mut device)) = privileged_tap("rx", 1) else {
        return;
    };
    device.set_mtu(1280).expect("set the MTU while the queue is with the device");
    assert_eq!(device.mtu(), 1280);
    add_kernel_address(&guard.name);
    let (dataplane_ip, mac) = (DATAPLANE_IP.to_string(), mac_text(device.mac()));
    let neighbour = ["neigh", "replace", &dataplane_ip, "lladdr", &mac, "dev", &guard.name];
    ip(&[&neighbour[..], &["nud", "permanent"]].concat());
    let pool = pool(1);
    let mut queue = device.queue(0, pool.clone()).expect("queue 0");
    assert_eq!(queue.max_frame_len(), 1280 + ETHERNET_HEADER_BYTES);

    // The kernel's MTU is raised behind the queue's back: a 1400-byte IP packet
    // (a 1414-byte frame) is longer than the queue accepts.
    ip(&["link", "set", "dev", &guard.name, "mtu", "1500"]);
    kernel_sends_udp(1400 - 28);
    let mut batch = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(KERNEL_WAIT_MS);
    while queue.stats().rx_drops == 0 && Instant::now() < deadline {
        queue.rx_burst(&mut batch, 8);
        batch.retain(|frame| frame.len() > 1280 + ETHERNET_HEADER_BYTES);
        wait_readable(&queue, Duration::from_millis(50));
    }
    assert!(batch.is_empty(), "no oversized frame was delivered");
    assert!(queue.stats().rx_drops >= 1, "the oversized frame was counted: {:?}", queue.stats());

    // With the pool's only frame held, a waiting frame is counted as exhaustion.
    let held = pool.alloc().expect("the pool's only frame");
    kernel_sends_udp(100);
    let deadline = Instant::now() + Duration::from_millis(KERNEL_WAIT_MS);
    while queue.stats().pool_exhausted == 0 && Instant::now() < deadline {
        wait_readable(&queue, Duration::from_millis(50));
        assert_eq!(queue.rx_burst(&mut batch, 8), 0, "nothing received without a free frame");
    }
    assert!(queue.stats().pool_exhausted >= 1, "{:?}", queue.stats());
    drop(held);
    let datagram = receive_until(&mut queue, |f| f.len() == ETHERNET_HEADER_BYTES + 128)
        .expect("the waiting datagram once a frame is free");
    assert_eq!(be16(&datagram, 12), 0x0800);
}

#[test]
fn device_disappears_when_its_last_descriptor_closes() {
    let Some((guard, mut device)) = privileged_tap("rm", 2) else {
        return;
    };
    assert!(guard.exists());
    let fd = device.take_queue_fd(0).expect("queue 0");
    drop(device);
    assert!(guard.exists(), "a taken queue keeps the device");
    drop(fd);
    let deadline = Instant::now() + Duration::from_millis(KERNEL_WAIT_MS);
    while guard.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!guard.exists(), "the device is removed with its last descriptor");
}

#[test]
fn bad_device_names_are_refused_before_any_system_call() {
    for name in ["ixtap-name-longer-than-ifnamsiz", "", "ix/tap", "ix tap"] {
        match TapDevice::open(name, 1) {
            Err(DriverError::Config(message)) => {
                assert!(message.contains("interface name"), "{name:?}: {message}")
            }
            other => panic!("{name:?}: expected a configuration error, got {other:?}"),
        }
    }
    let too_long = TapDevice::open("sixteen-bytes-xx", 1).unwrap_err();
    assert!(too_long.to_string().contains("IFNAMSIZ"), "{too_long}");
    assert!(matches!(TapDevice::open("ixtap0", 0), Err(DriverError::Config(_))));
}
