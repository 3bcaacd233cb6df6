//! UDP sockets: a bound port, a bounded queue of received datagrams held as
//! views into their frames, and sending by copy into a fresh frame.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

use ix_driver::PacketBuf;

use crate::socket::{Readiness, SocketHandle};
use crate::stack::{SocketEntry, SocketError, SocketKind, Stack};
use crate::wire::{
    ETHERNET_HEADER_LEN, IPV4_HEADER_LEN, IpProtocol, UDP_HEADER_LEN, UdpPacket, UdpRepr, fill_udp_checksum,
};

/// A bound UDP port.
#[derive(Debug)]
pub struct UdpSocket {
    port: u16,
    queue: VecDeque<(PacketBuf, SocketAddrV4)>,
    limit: usize,
}

impl UdpSocket {
    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Stack {
    pub(crate) fn ingress_udp(
        &mut self,
        frame: PacketBuf,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        start: usize,
        end: usize,
        unicast: bool,
    ) {
        let parsed = UdpPacket::new_checked(&frame[start..end]).and_then(|p| {
            let repr = UdpRepr::parse(&p, src, dst, true)?;
            Ok((repr, usize::from(p.len())))
        });
        let (repr, udp_len) = match parsed {
            Ok(v) => v,
            Err(_) => {
                self.stats.udp.in_errors += 1;
                return;
            }
        };
        let Some(&handle) = self.udp_ports.get(&repr.dst_port) else {
            self.stats.udp.no_ports += 1;
            if unicast {
                self.send_port_unreachable(&frame);
            }
            return;
        };
        let payload = frame.slice(start + UDP_HEADER_LEN..start + udp_len);
        let from = SocketAddrV4::new(src, repr.src_port);
        let Some(SocketEntry { kind: SocketKind::Udp(socket), .. }) = self.entry_mut(handle) else {
            self.stats.udp.no_ports += 1;
            return;
        };
        if socket.queue.len() >= socket.limit {
            self.stats.udp.rcvbuf_errors += 1;
            return;
        }
        socket.queue.push_back((payload, from));
        self.stats.udp.in_datagrams += 1;
        self.notify(handle, Readiness::READABLE);
    }

    /// Binds a UDP socket to `port`.
    ///
    /// # Errors
    /// [`SocketError::AddrInUse`] when the port is taken.
    pub fn udp_bind(&mut self, port: u16) -> Result<SocketHandle, SocketError> {
        if port == 0 || self.udp_ports.contains_key(&port) {
            return Err(SocketError::AddrInUse(port));
        }
        let limit = self.config.udp_queue_datagrams;
        let socket = UdpSocket { port, queue: VecDeque::with_capacity(limit.min(1024)), limit };
        let handle = self.insert_socket(SocketKind::Udp(socket), None);
        self.udp_ports.insert(port, handle);
        Ok(handle)
    }

    /// Sends one datagram (copied into a frame).
    ///
    /// # Errors
    /// [`SocketError::MessageTooLong`] beyond the MTU, [`SocketError::NoBuffers`]
    /// when the pool is empty, [`SocketError::NoRoute`], and handle errors.
    pub fn udp_send_to(&mut self, handle: SocketHandle, dst: SocketAddrV4, data: &[u8]) -> Result<(), SocketError> {
        let port = match self.entry(handle) {
            Some(SocketEntry { kind: SocketKind::Udp(s), .. }) => s.port,
            Some(_) => return Err(SocketError::WrongKind("UDP socket")),
            None => return Err(SocketError::InvalidHandle),
        };
        let max = usize::from(self.config.mtu) - IPV4_HEADER_LEN - UDP_HEADER_LEN;
        if data.len() > max {
            return Err(SocketError::MessageTooLong(data.len()));
        }
        let mut frame = self.pool.alloc().map_err(|_| SocketError::NoBuffers)?;
        let buf = frame.append(UDP_HEADER_LEN + data.len()).map_err(|_| SocketError::MessageTooLong(data.len()))?;
        UdpRepr { src_port: port, dst_port: dst.port() }.emit(buf, data.len());
        buf[UDP_HEADER_LEN..].copy_from_slice(data);
        fill_udp_checksum(buf, self.config.addr, *dst.ip());
        if self.out().ipv4(*dst.ip(), IpProtocol::Udp, frame) {
            self.stats.udp.out_datagrams += 1;
            Ok(())
        } else {
            Err(SocketError::NoRoute)
        }
    }

    /// Takes the next received datagram and its sender, without copying.
    ///
    /// # Errors
    /// Handle errors.
    pub fn udp_recv_from(&mut self, handle: SocketHandle) -> Result<Option<(PacketBuf, SocketAddrV4)>, SocketError> {
        match self.entry_mut(handle) {
            Some(SocketEntry { kind: SocketKind::Udp(s), .. }) => Ok(s.queue.pop_front()),
            Some(_) => Err(SocketError::WrongKind("UDP socket")),
            None => Err(SocketError::InvalidHandle),
        }
    }
}

const _: () = assert!(ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN < 64);
