//! The XDP program that steers the dataplane's frames to its AF_XDP sockets,
//! as a readable listing of hand-assembled eBPF instructions, with the small
//! assembler (named jump targets) that encodes it.
//!
//! # What it does
//! ```text
//! config = CONFIG[0]                       ; our IPv4 address, port filter on/off
//! if frame is IPv4 and destination == our address:
//!     if no port filter: redirect
//!     if first fragment, TCP or UDP, destination port in EPHEMERAL or PORTS: redirect
//! if frame is ARP and target == our address:
//!     if no port filter: redirect            ; the address is the dataplane's alone
//!     if reply and ARP_PENDING[sender] is a deadline not passed: redirect
//! else pass to the kernel
//! redirect = bpf_redirect_map(XSKS, rx_queue_index, XDP_DROP when the queue has no socket)
//! ```
//! Everything else (other addresses, ICMP and other ports on a shared address,
//! VLAN tags, IPv6, ARP requests on a shared address) passes to the kernel.

use super::bpf::Insn;

/// `XDP_DROP`: the verdict when the queue's socket is missing.
pub const XDP_DROP: u32 = 1;
/// `XDP_PASS`: the frame goes to the kernel's stack.
pub const XDP_PASS: u32 = 2;
/// `XDP_REDIRECT`: the frame went to an AF_XDP socket.
pub const XDP_REDIRECT: u32 = 4;

/// Byte offsets in an Ethernet + IPv4 (or ARP) frame the program reads.
mod offset {
    pub(super) const ETHERTYPE: i16 = 12;
    pub(super) const IPV4_FRAGMENT: i16 = 20;
    pub(super) const IPV4_PROTOCOL: i16 = 23;
    pub(super) const IPV4_DESTINATION: i16 = 30;
    pub(super) const IPV4_VERSION_IHL: i16 = 14;
    pub(super) const L4_DESTINATION_PORT: i16 = 2;
    pub(super) const ARP_OPERATION: i16 = 20;
    pub(super) const ARP_SENDER_IP: i16 = 28;
    pub(super) const ARP_TARGET_IP: i16 = 38;
    /// `struct xdp_md`: data, data_end, ..., rx_queue_index.
    pub(super) const CTX_DATA: i16 = 0;
    pub(super) const CTX_DATA_END: i16 = 4;
    pub(super) const CTX_RX_QUEUE: i16 = 16;
}

/// Frame lengths the program checks before reading, as the instructions'
/// 32-bit immediates (14 fits).
const ETHERNET_HEADER_BYTES: i32 = crate::queue::ETHERNET_HEADER_BYTES as i32;
const ETHERNET_IPV4_BYTES: i32 = ETHERNET_HEADER_BYTES + 20;
const ETHERNET_ARP_BYTES: i32 = ETHERNET_HEADER_BYTES + 28;

/// EtherTypes and ARP operation as a little-endian load of their network-order
/// bytes sees them.
const ETHERTYPE_IPV4_AS_LOADED: i32 = 0x0008;
const ETHERTYPE_ARP_AS_LOADED: i32 = 0x0608;
const ARP_REPLY_AS_LOADED: i32 = 0x0200;
const IPPROTO_TCP: i32 = 6;
const IPPROTO_UDP: i32 = 17;

/// Helper function numbers (linux/bpf.h).
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_KTIME_GET_NS: i32 = 5;
const HELPER_REDIRECT_MAP: i32 = 51;

/// The maps the program refers to, by descriptor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProgramMaps {
    /// Array of one `ProgramConfig`.
    pub(crate) config: i32,
    /// Hash: destination port (u32, host order) → anything.
    pub(crate) ports: i32,
    /// LRU hash: ARP sender IPv4 (network order) → deadline (u64, CLOCK_MONOTONIC ns).
    pub(crate) arp_pending: i32,
    /// XSKMAP indexed by receive queue.
    pub(crate) xsks: i32,
}

/// Bytes of the config map's value.
pub(crate) const CONFIG_VALUE_BYTES: u32 = 16;

/// The value in the config map: the dataplane's IPv4 address (network byte
/// order), whether a port filter applies (1) or the address is its own (0),
/// and, with a filter, the first and last local port of the dataplane's own
/// outgoing connections (host order), whose replies it takes as well.
pub(crate) fn config_value(
    addr: std::net::Ipv4Addr,
    port_filter: bool,
    ephemeral: std::ops::RangeInclusive<u16>,
) -> [u8; CONFIG_VALUE_BYTES as usize] {
    let mut value = [0u8; CONFIG_VALUE_BYTES as usize];
    value[..4].copy_from_slice(&addr.octets());
    value[4..8].copy_from_slice(&u32::from(port_filter).to_ne_bytes());
    value[8..12].copy_from_slice(&u32::from(*ephemeral.start()).to_ne_bytes());
    value[12..].copy_from_slice(&u32::from(*ephemeral.end()).to_ne_bytes());
    value
}

/// The steering program, ready to load.
pub(crate) fn steering_program(maps: ProgramMaps) -> Vec<Insn> {
    use Reg::*;
    use offset::*;
    let mut a = Asm::default();
    // Registers kept across helper calls: R6 context, R7 data, R8 data_end,
    // R9 the config value.
    a.mov64_reg(R6, R1);
    a.store_imm32(R10, -4, 0); // key 0 of CONFIG
    a.mov64_reg(R2, R10);
    a.add64_imm(R2, -4);
    a.load_map_fd(R1, maps.config);
    a.call(HELPER_MAP_LOOKUP_ELEM);
    a.jump_if_imm(Jump::Eq, R0, 0, "pass");
    a.mov64_reg(R9, R0);
    a.load32(R7, R6, CTX_DATA);
    a.load32(R8, R6, CTX_DATA_END);
    a.jump_if_frame_shorter(ETHERNET_HEADER_BYTES, "pass");
    a.load16(R1, R7, ETHERTYPE);
    a.jump_if_imm(Jump::Eq, R1, ETHERTYPE_ARP_AS_LOADED, "arp");
    a.jump_if_imm(Jump::Ne, R1, ETHERTYPE_IPV4_AS_LOADED, "pass");

    // IPv4: to our address?
    a.jump_if_frame_shorter(ETHERNET_IPV4_BYTES, "pass");
    a.load32(R1, R7, IPV4_DESTINATION);
    a.load32(R2, R9, 0);
    a.jump_if_reg(Jump::Ne, R1, R2, "pass");
    a.load32(R1, R9, 4);
    a.jump_if_imm(Jump::Eq, R1, 0, "redirect"); // the address is ours alone
    a.jump_to_l4_header_or("pass"); // R2: the TCP or UDP header
    a.load16(R1, R2, L4_DESTINATION_PORT);
    a.swap_from_network16(R1); // host order, as the loader wrote the keys
    a.load32(R2, R9, 8); // replies to the dataplane's own connections
    a.jump_if_reg(Jump::Lt, R1, R2, "port_set");
    a.load32(R2, R9, 12);
    a.jump_if_reg(Jump::Gt, R1, R2, "port_set");
    a.jump("redirect");
    a.label("port_set");
    a.store32(R10, -8, R1);
    a.mov64_reg(R2, R10);
    a.add64_imm(R2, -8);
    a.load_map_fd(R1, maps.ports);
    a.call(HELPER_MAP_LOOKUP_ELEM);
    a.jump_if_imm(Jump::Eq, R0, 0, "pass");
    a.jump("redirect");

    // ARP: about our address?
    a.label("arp");
    a.jump_if_frame_shorter(ETHERNET_ARP_BYTES, "pass");
    a.load32(R1, R7, ARP_TARGET_IP);
    a.load32(R2, R9, 0);
    a.jump_if_reg(Jump::Ne, R1, R2, "pass");
    a.load32(R1, R9, 4);
    a.jump_if_imm(Jump::Eq, R1, 0, "redirect"); // the address is ours alone
    // Shared address: the kernel answers requests; the dataplane gets only the
    // replies to requests it sent, while they are pending.
    a.load16(R1, R7, ARP_OPERATION);
    a.jump_if_imm(Jump::Ne, R1, ARP_REPLY_AS_LOADED, "pass");
    a.load32(R1, R7, ARP_SENDER_IP);
    a.store32(R10, -8, R1);
    a.mov64_reg(R2, R10);
    a.add64_imm(R2, -8);
    a.load_map_fd(R1, maps.arp_pending);
    a.call(HELPER_MAP_LOOKUP_ELEM);
    a.jump_if_imm(Jump::Eq, R0, 0, "pass");
    a.load64(R7, R0, 0); // the request's deadline
    a.call(HELPER_KTIME_GET_NS);
    a.jump_if_reg(Jump::Gt, R0, R7, "pass");

    a.label("redirect");
    a.load32(R2, R6, CTX_RX_QUEUE);
    a.load_map_fd(R1, maps.xsks);
    a.mov64_imm(R3, XDP_DROP as i32); // the verdict when the queue has no socket
    a.call(HELPER_REDIRECT_MAP);
    a.exit();

    a.label("pass");
    a.mov64_imm(R0, XDP_PASS as i32);
    a.exit();
    a.finish()
}

/// Byte offsets `ixcp`'s programs read beyond those of the steering program.
mod ixcp_offset {
    pub(super) const IPV4_SOURCE: i16 = 26;
    pub(super) const L4_SOURCE_PORT: i16 = 0;
}

/// An IPv4 address as a 32-bit load of its network-order bytes sees it.
fn address_as_loaded(addr: std::net::Ipv4Addr) -> i32 {
    i32::from_ne_bytes(addr.octets())
}

/// `ixcp`'s program on a managed interface: a TCP or UDP frame (first
/// fragment) whose (destination address, destination port) is in `steer`
/// goes to the dataplane's virtual port, `ports[steer value]`; everything
/// else passes to the kernel (ARP, ICMP, other ports and addresses).
///
/// `steer` keys are 8 bytes: the address as in the frame, then the port in
/// host order as a `u32`; values are `u32` indexes into the device map.
pub(crate) fn ixcp_demux_program(steer: i32, ports: i32) -> Vec<Insn> {
    use Reg::*;
    use offset::*;
    let mut a = Asm::default();
    a.load32(R7, R1, CTX_DATA);
    a.load32(R8, R1, CTX_DATA_END);
    a.jump_if_frame_shorter(ETHERNET_IPV4_BYTES, "pass");
    a.load16(R1, R7, ETHERTYPE);
    a.jump_if_imm(Jump::Ne, R1, ETHERTYPE_IPV4_AS_LOADED, "pass");
    a.jump_to_l4_header_or("pass"); // R2: the TCP or UDP header
    a.load16(R1, R2, L4_DESTINATION_PORT);
    a.swap_from_network16(R1);
    a.store32(R10, -4, R1);
    a.load32(R1, R7, IPV4_DESTINATION);
    a.store32(R10, -8, R1);
    a.mov64_reg(R2, R10);
    a.add64_imm(R2, -8);
    a.load_map_fd(R1, steer);
    a.call(HELPER_MAP_LOOKUP_ELEM);
    a.jump_if_imm(Jump::Eq, R0, 0, "pass");
    a.load32(R2, R0, 0);
    a.load_map_fd(R1, ports);
    a.mov64_imm(R3, XDP_DROP as i32); // the verdict while the port is being removed
    a.call(HELPER_REDIRECT_MAP);
    a.exit();
    a.label("pass");
    a.mov64_imm(R0, XDP_PASS as i32);
    a.exit();
    a.finish()
}

/// `ixcp`'s program on the dataplane's side of its virtual port: every frame
/// goes to the AF_XDP socket of the queue it arrived on.
pub(crate) fn ixcp_port_rx_program(xsks: i32) -> Vec<Insn> {
    use Reg::*;
    let mut a = Asm::default();
    a.load32(R2, R1, offset::CTX_RX_QUEUE);
    a.load_map_fd(R1, xsks);
    a.mov64_imm(R3, XDP_DROP as i32);
    a.call(HELPER_REDIRECT_MAP);
    a.exit();
    a.finish()
}

/// `ixcp`'s program on the kernel's side of a dataplane's virtual port: what
/// the dataplane transmits goes out of the managed interface (`out[0]`) only
/// when it is sent as the dataplane: an ARP frame whose sender is `addr`, or
/// a TCP or UDP frame (first fragment) from `addr` and a source port in
/// `source_ports` (`u32` keys in host order). Anything else is dropped.
pub(crate) fn ixcp_port_tx_program(addr: std::net::Ipv4Addr, source_ports: i32, out: i32) -> Vec<Insn> {
    use Reg::*;
    use offset::*;
    let mut a = Asm::default();
    a.load32(R7, R1, CTX_DATA);
    a.load32(R8, R1, CTX_DATA_END);
    a.jump_if_frame_shorter(ETHERNET_HEADER_BYTES, "drop");
    a.load16(R1, R7, ETHERTYPE);
    a.jump_if_imm(Jump::Eq, R1, ETHERTYPE_ARP_AS_LOADED, "arp");
    a.jump_if_imm(Jump::Ne, R1, ETHERTYPE_IPV4_AS_LOADED, "drop");
    a.jump_if_frame_shorter(ETHERNET_IPV4_BYTES, "drop");
    a.load32(R1, R7, ixcp_offset::IPV4_SOURCE);
    a.jump_if_imm(Jump::Ne, R1, address_as_loaded(addr), "drop");
    a.jump_to_l4_header_or("drop");
    a.load16(R1, R2, ixcp_offset::L4_SOURCE_PORT);
    a.swap_from_network16(R1);
    a.store32(R10, -4, R1);
    a.mov64_reg(R2, R10);
    a.add64_imm(R2, -4);
    a.load_map_fd(R1, source_ports);
    a.call(HELPER_MAP_LOOKUP_ELEM);
    a.jump_if_imm(Jump::Eq, R0, 0, "drop");
    a.jump("out");
    a.label("arp");
    a.jump_if_frame_shorter(ETHERNET_ARP_BYTES, "drop");
    a.load32(R1, R7, ARP_SENDER_IP);
    a.jump_if_imm(Jump::Ne, R1, address_as_loaded(addr), "drop");
    a.label("out");
    a.mov64_imm(R2, 0);
    a.load_map_fd(R1, out);
    a.mov64_imm(R3, XDP_DROP as i32);
    a.call(HELPER_REDIRECT_MAP);
    a.exit();
    a.label("drop");
    a.mov64_imm(R0, XDP_DROP as i32);
    a.exit();
    a.finish()
}

/// eBPF registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R6 = 6,
    R7,
    R8,
    R9,
    R10,
}

/// Conditional jumps used (the BPF_JMP operation codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Jump {
    Eq = 0x10,
    Gt = 0x20,
    Ne = 0x50,
    Lt = 0xa0,
}

/// Instruction classes, sizes, modes and operations (linux/bpf_common.h, bpf.h).
mod op {
    pub(super) const LD: u8 = 0x00;
    pub(super) const LDX: u8 = 0x01;
    pub(super) const ST: u8 = 0x02;
    pub(super) const STX: u8 = 0x03;
    pub(super) const ALU: u8 = 0x04;
    pub(super) const JMP: u8 = 0x05;
    pub(super) const ALU64: u8 = 0x07;
    pub(super) const W: u8 = 0x00;
    pub(super) const H: u8 = 0x08;
    pub(super) const B: u8 = 0x10;
    pub(super) const DW: u8 = 0x18;
    pub(super) const IMM: u8 = 0x00;
    pub(super) const MEM: u8 = 0x60;
    pub(super) const K: u8 = 0x00;
    pub(super) const X: u8 = 0x08;
    pub(super) const ADD: u8 = 0x00;
    pub(super) const AND: u8 = 0x50;
    pub(super) const LSH: u8 = 0x60;
    pub(super) const MOV: u8 = 0xb0;
    pub(super) const END: u8 = 0xd0;
    pub(super) const TO_BE: u8 = 0x08;
    pub(super) const JA: u8 = 0x00;
    pub(super) const CALL: u8 = 0x80;
    pub(super) const EXIT: u8 = 0x90;
    /// `BPF_PSEUDO_MAP_FD` in the source register of a 64-bit immediate load.
    pub(super) const PSEUDO_MAP_FD: u8 = 1;
}

/// A tiny assembler: instructions in order, jumps to named labels resolved by
/// [`Asm::finish`].
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<(&'static str, usize)>,
    /// (instruction index, target label) of each jump.
    fixups: Vec<(usize, &'static str)>,
}

impl Asm {
    fn emit(&mut self, code: u8, dst: Reg, src: Reg, off: i16, imm: i32) {
        self.insns.push(Insn { code, regs: (src as u8) << 4 | dst as u8, off, imm });
    }

    fn label(&mut self, name: &'static str) {
        assert!(self.labels.iter().all(|(n, _)| *n != name), "label {name} defined twice");
        self.labels.push((name, self.insns.len()));
    }

    fn mov64_reg(&mut self, dst: Reg, src: Reg) {
        self.emit(op::ALU64 | op::MOV | op::X, dst, src, 0, 0);
    }

    fn mov64_imm(&mut self, dst: Reg, imm: i32) {
        self.emit(op::ALU64 | op::MOV | op::K, dst, Reg::R0, 0, imm);
    }

    fn add64_imm(&mut self, dst: Reg, imm: i32) {
        self.emit(op::ALU64 | op::ADD | op::K, dst, Reg::R0, 0, imm);
    }

    fn add64_reg(&mut self, dst: Reg, src: Reg) {
        self.emit(op::ALU64 | op::ADD | op::X, dst, src, 0, 0);
    }

    fn and64_imm(&mut self, dst: Reg, imm: i32) {
        self.emit(op::ALU64 | op::AND | op::K, dst, Reg::R0, 0, imm);
    }

    fn lsh64_imm(&mut self, dst: Reg, imm: i32) {
        self.emit(op::ALU64 | op::LSH | op::K, dst, Reg::R0, 0, imm);
    }

    /// Converts the low 16 bits of `dst` from big-endian (network) order to
    /// host order and clears the rest.
    fn swap_from_network16(&mut self, dst: Reg) {
        self.emit(op::ALU | op::END | op::TO_BE, dst, Reg::R0, 0, 16);
    }

    fn load(&mut self, size: u8, dst: Reg, src: Reg, off: i16) {
        self.emit(op::LDX | op::MEM | size, dst, src, off, 0);
    }

    fn load8(&mut self, dst: Reg, src: Reg, off: i16) {
        self.load(op::B, dst, src, off);
    }

    fn load16(&mut self, dst: Reg, src: Reg, off: i16) {
        self.load(op::H, dst, src, off);
    }

    fn load32(&mut self, dst: Reg, src: Reg, off: i16) {
        self.load(op::W, dst, src, off);
    }

    fn load64(&mut self, dst: Reg, src: Reg, off: i16) {
        self.load(op::DW, dst, src, off);
    }

    fn store32(&mut self, dst: Reg, off: i16, src: Reg) {
        self.emit(op::STX | op::MEM | op::W, dst, src, off, 0);
    }

    fn store_imm32(&mut self, dst: Reg, off: i16, imm: i32) {
        self.emit(op::ST | op::MEM | op::W, dst, Reg::R0, off, imm);
    }

    /// A 64-bit immediate load of a map reference (two instruction slots).
    fn load_map_fd(&mut self, dst: Reg, map_fd: i32) {
        self.insns.push(Insn {
            code: op::LD | op::DW | op::IMM,
            regs: op::PSEUDO_MAP_FD << 4 | dst as u8,
            off: 0,
            imm: map_fd,
        });
        self.insns.push(Insn { code: 0, regs: 0, off: 0, imm: 0 });
    }

    fn call(&mut self, helper: i32) {
        self.emit(op::JMP | op::CALL, Reg::R0, Reg::R0, 0, helper);
    }

    fn exit(&mut self) {
        self.emit(op::JMP | op::EXIT, Reg::R0, Reg::R0, 0, 0);
    }

    fn jump(&mut self, target: &'static str) {
        self.fixups.push((self.insns.len(), target));
        self.emit(op::JMP | op::JA, Reg::R0, Reg::R0, 0, 0);
    }

    fn jump_if_imm(&mut self, cond: Jump, dst: Reg, imm: i32, target: &'static str) {
        self.fixups.push((self.insns.len(), target));
        self.emit(op::JMP | cond as u8 | op::K, dst, Reg::R0, 0, imm);
    }

    fn jump_if_reg(&mut self, cond: Jump, dst: Reg, src: Reg, target: &'static str) {
        self.fixups.push((self.insns.len(), target));
        self.emit(op::JMP | cond as u8 | op::X, dst, src, 0, 0);
    }

    /// For an IPv4 frame at R7 (whose 20-byte header fits before R8): jumps
    /// to `otherwise` unless it is TCP or UDP, not a later fragment, with
    /// the first 4 bytes of its transport header inside the frame; leaves the
    /// transport header's address in R2. Uses R1 and R3.
    fn jump_to_l4_header_or(&mut self, otherwise: &'static str) {
        use Reg::*;
        self.load16(R1, R7, offset::IPV4_FRAGMENT);
        self.swap_from_network16(R1);
        self.and64_imm(R1, 0x1fff);
        self.jump_if_imm(Jump::Ne, R1, 0, otherwise); // a later fragment shows no ports
        self.load8(R1, R7, offset::IPV4_PROTOCOL);
        // TCP skips the UDP test that follows.
        self.emit(op::JMP | Jump::Eq as u8 | op::K, R1, R0, 1, IPPROTO_TCP);
        self.jump_if_imm(Jump::Ne, R1, IPPROTO_UDP, otherwise);
        self.load8(R1, R7, offset::IPV4_VERSION_IHL);
        self.and64_imm(R1, 0x0f);
        self.lsh64_imm(R1, 2); // header length in bytes
        self.jump_if_imm(Jump::Lt, R1, 20, otherwise);
        self.mov64_reg(R2, R7);
        self.add64_imm(R2, ETHERNET_HEADER_BYTES);
        self.add64_reg(R2, R1);
        self.mov64_reg(R3, R2);
        self.add64_imm(R3, 4);
        self.jump_if_reg(Jump::Gt, R3, R8, otherwise);
    }

    /// Jumps to `target` unless `bytes` of frame follow data (R7) before
    /// data_end (R8); uses R1. The check the verifier needs before each read.
    fn jump_if_frame_shorter(&mut self, bytes: i32, target: &'static str) {
        self.mov64_reg(Reg::R1, Reg::R7);
        self.add64_imm(Reg::R1, bytes);
        self.jump_if_reg(Jump::Gt, Reg::R1, Reg::R8, target);
    }

    /// Resolves the jumps and returns the program.
    ///
    /// # Panics
    /// On a jump to an undefined label (a bug in the listing).
    fn finish(mut self) -> Vec<Insn> {
        for &(at, target) in &self.fixups {
            let to = self
                .labels
                .iter()
                .find(|(name, _)| *name == target)
                .map(|&(_, index)| index)
                .unwrap_or_else(|| panic!("jump to undefined label {target}"));
            self.insns[at].off = i16::try_from(to as isize - at as isize - 1).expect("jump within 32k instructions");
        }
        self.insns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program() -> Vec<Insn> {
        steering_program(ProgramMaps { config: 3, ports: 4, arp_pending: 5, xsks: 6 })
    }

    #[test]
    fn every_jump_lands_inside_the_program_and_it_ends_in_exit() {
        for insns in [
            program(),
            ixcp_demux_program(3, 4),
            ixcp_port_rx_program(3),
            ixcp_port_tx_program(std::net::Ipv4Addr::new(10, 0, 0, 1), 3, 4),
        ] {
            jumps_land_inside(&insns);
        }
    }

    fn jumps_land_inside(insns: &[Insn]) {
        let last = insns.last().unwrap();
        assert_eq!(last.code, op::JMP | op::EXIT);
        for (i, insn) in insns.iter().enumerate() {
            let class = insn.code & 0x07;
            let operation = insn.code & 0xf0;
            if class == op::JMP && operation != op::CALL && operation != op::EXIT {
                let target = i as isize + 1 + insn.off as isize;
                assert!((0..insns.len() as isize).contains(&target), "jump at {i} to {target}");
                assert!(insns[target as usize].code != 0, "jump at {i} into the middle of a wide load");
            }
        }
    }

    #[test]
    fn map_references_carry_their_descriptors() {
        let fds: Vec<i32> = program()
            .iter()
            .filter(|i| i.code == op::LD | op::DW | op::IMM)
            .inspect(|i| assert_eq!(i.regs >> 4, op::PSEUDO_MAP_FD))
            .map(|i| i.imm)
            .collect();
        assert_eq!(fds, vec![3, 4, 5, 6]);
    }

    #[test]
    fn config_value_is_the_address_in_network_order_then_the_filter_flag_then_the_port_range() {
        let value = config_value(std::net::Ipv4Addr::new(10, 77, 0, 1), true, 61000..=65535);
        assert_eq!(&value[..4], &[10, 77, 0, 1]);
        assert_eq!(u32::from_ne_bytes(value[4..8].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(value[8..12].try_into().unwrap()), 61000);
        assert_eq!(u32::from_ne_bytes(value[12..].try_into().unwrap()), 65535);
    }

    #[test]
    #[should_panic(expected = "undefined label")]
    fn a_jump_to_nowhere_is_caught() {
        let mut a = Asm::default();
        a.jump("nowhere");
        a.finish();
    }
}

/// `ixcp`'s programs loaded in the kernel and run on crafted frames
/// (`BPF_PROG_TEST_RUN`): needs CAP_BPF (root); skipped outside CI without it.
#[cfg(test)]
mod ixcp_verdicts {
    use std::net::Ipv4Addr;
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::privilege;
    use crate::xdp::bpf::{BpfMap, BpfProgram, MapType};

    const OURS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const GRANTED_PORT: u16 = 80;
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const ICMP: u8 = 1;
    const LICENSE: &std::ffi::CStr = c"MIT OR Apache-2.0";

    fn privileged() -> bool {
        privilege::require("loading XDP programs", privilege::has_net_admin())
    }

    /// Ethernet + a 20-byte IPv4 header + 8 bytes of transport header.
    fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, (src_port, dst_port): (u16, u16), fragment: u16) -> Vec<u8> {
        let mut f = [[0xff; 6], [2, 0, 0, 0, 0, 9]].concat();
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0]);
        f.extend_from_slice(&fragment.to_be_bytes());
        f.extend_from_slice(&[64, protocol, 0, 0]);
        [f, src.octets().to_vec(), dst.octets().to_vec()]
            .concat()
            .into_iter()
            .chain([src_port.to_be_bytes(), dst_port.to_be_bytes(), [0; 2], [0; 2]].concat())
            .collect()
    }

    /// Ethernet + an ARP packet with `sender` and `target` addresses.
    fn arp(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
        let head = [[0xff; 6], [2, 0, 0, 0, 0, 9]].concat();
        let body = [
            &[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1][..],
            &[2, 0, 0, 0, 0, 9],
            &sender.octets(),
            &[0; 6],
            &target.octets(),
        ]
        .concat();
        [head, body].concat()
    }

    fn verdict(program: &BpfProgram, frame: &[u8]) -> u32 {
        program.test_run(frame).expect("BPF_PROG_TEST_RUN")
    }

    #[test]
    fn the_demux_takes_only_granted_address_and_port_pairs() {
        if !privileged() {
            return;
        }
        let steer = BpfMap::create(MapType::Hash, "t_steer", 8, 4, 4).unwrap();
        let mut key = OURS.octets().to_vec();
        key.extend_from_slice(&u32::from(GRANTED_PORT).to_ne_bytes());
        steer.update(&key, &3u32.to_ne_bytes()).unwrap();
        // No device in slot 3: a steered frame gets the fallback verdict, XDP_DROP.
        let ports = BpfMap::create(MapType::DevMap, "t_ports", 4, 4, 8).unwrap();
        let insns = ixcp_demux_program(steer.fd().as_raw_fd(), ports.fd().as_raw_fd());
        let program = BpfProgram::load_xdp("t_demux", &insns, LICENSE).unwrap();
        let steered = XDP_DROP;
        let to =
            |dst, protocol, port, fragment| verdict(&program, &ipv4(OTHER, dst, protocol, (40000, port), fragment));
        assert_eq!(to(OURS, TCP, GRANTED_PORT, 0), steered);
        assert_eq!(to(OURS, UDP, GRANTED_PORT, 0), steered);
        assert_eq!(to(OURS, TCP, GRANTED_PORT, 0x4000), steered, "don't-fragment is not a fragment");
        assert_eq!(to(OURS, TCP, GRANTED_PORT + 1, 0), XDP_PASS, "another port is the kernel's");
        assert_eq!(to(OTHER, TCP, GRANTED_PORT, 0), XDP_PASS, "another address is the kernel's");
        assert_eq!(to(OURS, ICMP, GRANTED_PORT, 0), XDP_PASS, "ICMP is the kernel's");
        assert_eq!(to(OURS, TCP, GRANTED_PORT, 5), XDP_PASS, "a later fragment has no ports");
        assert_eq!(verdict(&program, &arp(OTHER, OURS)), XDP_PASS, "ARP is the kernel's");
        let whole = ipv4(OTHER, OURS, TCP, (40000, GRANTED_PORT), 0);
        for len in [14, 33, 35] {
            assert_eq!(verdict(&program, &whole[..len]), XDP_PASS, "{len} bytes");
        }
        let mut options = whole.clone();
        options[14] = 0x44; // a header length under 20 bytes
        assert_eq!(verdict(&program, &options), XDP_PASS);
    }

    #[test]
    fn the_port_lets_out_only_what_the_dataplane_may_send() {
        if !privileged() {
            return;
        }
        let source_ports = BpfMap::create(MapType::Hash, "t_src_ports", 4, 4, 4).unwrap();
        source_ports.update(&u32::from(GRANTED_PORT).to_ne_bytes(), &1u32.to_ne_bytes()).unwrap();
        let out = BpfMap::create(MapType::DevMap, "t_out", 4, 4, 1).unwrap();
        out.update(&0u32.to_ne_bytes(), &1u32.to_ne_bytes()).unwrap(); // the loopback device
        let insns = ixcp_port_tx_program(OURS, source_ports.fd().as_raw_fd(), out.fd().as_raw_fd());
        let program = BpfProgram::load_xdp("t_tx", &insns, LICENSE).unwrap();
        let from = |src, protocol, port| verdict(&program, &ipv4(src, OTHER, protocol, (port, 40000), 0));
        assert_eq!(from(OURS, TCP, GRANTED_PORT), XDP_REDIRECT);
        assert_eq!(from(OURS, UDP, GRANTED_PORT), XDP_REDIRECT);
        assert_eq!(verdict(&program, &arp(OURS, OTHER)), XDP_REDIRECT, "its own ARP requests");
        assert_eq!(from(OURS, TCP, GRANTED_PORT + 1), XDP_DROP, "a port not granted");
        assert_eq!(from(OTHER, TCP, GRANTED_PORT), XDP_DROP, "another source address");
        assert_eq!(from(OURS, ICMP, GRANTED_PORT), XDP_DROP, "ICMP is the kernel's to send");
        assert_eq!(verdict(&program, &arp(OTHER, OURS)), XDP_DROP, "ARP as someone else");
        let mut ipv6 = ipv4(OURS, OTHER, TCP, (GRANTED_PORT, 40000), 0);
        ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(verdict(&program, &ipv6), XDP_DROP);
        let ours = ipv4(OURS, OTHER, TCP, (GRANTED_PORT, 40000), 0);
        assert_eq!(verdict(&program, &ours[..20]), XDP_DROP, "an IPv4 header cut short");
    }
}
