//! TCP segment arrival at the stack: checksum and header checks, the flow table,
//! listeners (with SYN cookies once the half-open queue is full), and RSTs for
//! segments that belong to nothing (RFC 9293 §3.10.7.1).

use std::net::{Ipv4Addr, SocketAddrV4};

use ix_driver::PacketBuf;

use super::FourTuple;
use super::conn::{Conn, PeerSynOptions, State};
use super::syncookie::{CookieTsOptions, decode_ts_options};
use crate::socket::SocketHandle;
use crate::stack::{SocketEntry, SocketKind, Stack, live_entry};
use crate::time::Instant;
use crate::wire::{IpProtocol, TcpFlags, TcpOptions, TcpPacket, TcpRepr, WireError};

impl Stack {
    pub(crate) fn ingress_tcp(
        &mut self,
        frame: PacketBuf,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        start: usize,
        end: usize,
        now: Instant,
    ) {
        self.stats.tcp.in_segs += 1;
        let repr = match TcpPacket::new_checked(&frame[start..end]).and_then(|p| TcpRepr::parse(&p, src, dst, true)) {
            Ok(repr) => repr,
            Err(WireError::BadChecksum) => {
                self.stats.tcp.in_csum_errors += 1;
                return;
            }
            Err(_) => {
                self.stats.tcp.in_errs += 1;
                return;
            }
        };
        if repr.src_port == 0 || repr.dst_port == 0 || src.is_broadcast() || src.is_multicast() {
            self.stats.tcp.in_errs += 1;
            return;
        }
        let payload_start = start + repr.payload_offset;
        let tuple =
            FourTuple { local: SocketAddrV4::new(dst, repr.dst_port), remote: SocketAddrV4::new(src, repr.src_port) };

        if let Some(handle) = self.flows.get(&tuple) {
            // One look at the connection says whether the rare cases below
            // can apply: a new SYN in TIME-WAIT, or the handshake of a
            // connection not yet accepted.
            let (time_wait, handshake) = match self.entry(handle) {
                Some(SocketEntry { kind: SocketKind::Tcp(conn), parent, .. }) => {
                    (conn.state() == State::TimeWait, conn.state() == State::SynReceived && parent.is_some())
                }
                _ => (false, false),
            };
            if time_wait && self.time_wait_reuse(handle, &repr) {
                self.reclaim(handle);
            } else if handshake && self.cookie_supersedes(handle, &tuple, &repr, now) {
                self.drop_half_open(handle);
            } else {
                self.stats.tcp.in_to_conn += 1;
                // The frame itself becomes the payload's view: no second
                // handle on it to take and drop.
                let payload = (payload_start < end).then(|| {
                    let mut payload = frame;
                    payload.truncate(end);
                    payload.advance(payload_start);
                    payload
                });
                self.segment_to_conn(handle, &repr, payload, handshake, now);
                return;
            }
        }
        let payload = (payload_start < end).then(|| frame.slice(payload_start..end));
        if let Some((directory, core)) = &self.config.directory {
            if let Some(owner) = directory.owner(&tuple).filter(|owner| owner != core) {
                self.stats.tcp.handed_over += 1;
                drop(payload);
                self.handover.push((owner, frame));
                return;
            }
        }
        match self.listeners.get(&repr.dst_port).copied() {
            Some(listener) => {
                self.stats.tcp.in_to_listener += 1;
                self.segment_to_listener(listener, tuple, &repr, payload, now);
            }
            None => {
                self.stats.tcp.in_no_listener += 1;
                self.stats.tcp.no_socket += 1;
                self.reset_for(&tuple, &repr, payload.as_ref().map_or(0, |p| p.len()));
            }
        }
    }

    /// Hands a segment to its connection; `handshake` says whether it is a
    /// passive connection in SYN-RECEIVED, whose listener's accept queue may
    /// have no room for it.
    #[inline]
    fn segment_to_conn(
        &mut self,
        handle: SocketHandle,
        repr: &TcpRepr,
        payload: Option<PacketBuf>,
        handshake: bool,
        now: Instant,
    ) {
        if handshake && self.accept_queue_full_for(handle, repr) {
            // As Linux does (tcp_abort_on_overflow off): the handshake's last
            // ACK is dropped, the connection stays half-open, and the peer's
            // next segment completes it once the application made room.
            self.stats.tcp.listen_overflows += 1;
            return;
        }
        let Some(entry) = live_entry(&mut self.sockets, handle) else { return };
        let SocketKind::Tcp(conn) = &mut entry.kind else { return };
        let before = conn.state();
        let bad_ack_before = self.stats.tcp.bad_ack;
        let payload_len = payload.as_ref().map_or(0, |p| p.len());
        conn.on_segment(repr, payload, now, &mut self.stats.tcp);
        // Nobody can read what arrives once the handle is released (RFC 1122
        // §4.2.2.13): reset rather than pin its frames until TIME-WAIT ends.
        if entry.released && conn.recv_queued() > 0 {
            conn.abort();
            self.stats.tcp.abort_on_data += 1;
        }
        // An unacceptable ACK in SYN-SENT or SYN-RECEIVED gets a RST (RFC 9293
        // §3.10.7.3 / §3.10.7.4) and leaves the connection as it was.
        let answer_rst = self.stats.tcp.bad_ack != bad_ack_before
            && matches!(before, State::SynSent | State::SynReceived)
            && !repr.flags.contains(TcpFlags::RST);
        if answer_rst {
            let tuple = *conn.tuple();
            self.reset_for(&tuple, repr, payload_len);
            self.after_conn(handle);
            return;
        }
        // The entry in hand is brought up to date at once (`after_conn`'s
        // work without a second look-up).
        if let Some(rest) = entry.settle(handle, &mut self.timers, &mut self.dirty, &mut self.events) {
            self.settle_rest(handle, rest);
        }
    }

    /// Whether `seg` acknowledges a SYN cookie we sent for the tuple of a
    /// half-open connection: the peer's SYN was answered with a cookie, then
    /// its retransmission, once the backlog had room, made the connection with
    /// another ISN, and the peer took the cookie SYN-ACK. The cookie wins.
    fn cookie_supersedes(&self, handle: SocketHandle, tuple: &FourTuple, seg: &TcpRepr, now: Instant) -> bool {
        let handshake_ack = seg.flags.contains(TcpFlags::ACK) && !seg.flags.intersects(TcpFlags::SYN | TcpFlags::RST);
        handshake_ack
            && matches!(self.entry(handle), Some(SocketEntry { kind: SocketKind::Tcp(conn), parent: Some(_), .. })
                if conn.state() == State::SynReceived)
            && self.cookies.validate(now, *tuple, seg.seq.wrapping_sub(1), seg.ack.wrapping_sub(1)).is_some()
    }

    /// Forgets a half-open connection nobody has seen (no RST: the peer is
    /// on the cookie's sequence numbers).
    fn drop_half_open(&mut self, handle: SocketHandle) {
        if let Some(SocketEntry { parent: Some(listener), .. }) = self.entry(handle) {
            let listener = *listener;
            if let Some(SocketEntry { kind: SocketKind::Listener(l), .. }) = self.entry_mut(listener) {
                l.half_open = l.half_open.saturating_sub(1);
            }
        }
        self.reclaim(handle);
    }

    /// Whether `seg` would complete the handshake of a passive connection
    /// whose listener's accept queue has no room.
    fn accept_queue_full_for(&self, handle: SocketHandle, seg: &TcpRepr) -> bool {
        let Some(SocketEntry { kind: SocketKind::Tcp(conn), parent: Some(listener), .. }) = self.entry(handle) else {
            return false;
        };
        if conn.state() != State::SynReceived || !seg.flags.contains(TcpFlags::ACK) || seg.flags.contains(TcpFlags::RST)
        {
            return false;
        }
        matches!(self.entry(*listener), Some(SocketEntry { kind: SocketKind::Listener(l), .. })
            if l.accept_queue.len() >= l.backlog)
    }

    /// RFC 6191 in spirit: a new SYN for a 4-tuple in TIME-WAIT whose sequence
    /// number is past the old connection's may start a new connection.
    fn time_wait_reuse(&self, handle: SocketHandle, repr: &TcpRepr) -> bool {
        let Ok(conn) = self.conn(handle) else { return false };
        conn.state() == State::TimeWait
            && repr.flags.contains(TcpFlags::SYN)
            && !repr.flags.contains(TcpFlags::ACK)
            && conn.accepts_new_syn(repr)
    }

    fn segment_to_listener(
        &mut self,
        listener: SocketHandle,
        tuple: FourTuple,
        repr: &TcpRepr,
        payload: Option<PacketBuf>,
        now: Instant,
    ) {
        let flags = repr.flags;
        if flags.contains(TcpFlags::RST) {
            return;
        }
        if flags.contains(TcpFlags::ACK) {
            if !flags.contains(TcpFlags::SYN) && self.try_syn_cookie(listener, tuple, repr, payload, now) {
                return;
            }
            self.stats.tcp.no_socket += 1;
            self.reset_for(&tuple, repr, 0);
            return;
        }
        if !flags.contains(TcpFlags::SYN) {
            return;
        }
        let Some(SocketEntry { kind: SocketKind::Listener(l), .. }) = self.entry(listener) else { return };
        let (backlog, queued, half_open) = (l.backlog, l.accept_queue.len(), l.half_open);
        if queued >= backlog {
            self.stats.tcp.listen_overflows += 1;
            return;
        }
        if half_open >= backlog || self.tcp_connections >= self.config.max_connections {
            if self.tcp_connections >= self.config.max_connections {
                self.stats.tcp.conn_limit_reached += 1;
            }
            self.send_syn_cookie(tuple, repr, now);
            return;
        }
        if !self.claim_flow(tuple) {
            // Another core took the same SYN from its queue first: the peer's
            // retransmission will be handed over to it.
            self.stats.tcp.handover_races += 1;
            return;
        }
        let iss = self.initial_sequence(&tuple, now);
        let ts_offset = self.ts_offset(&tuple);
        let conn = Conn::accept_syn(&self.config.tcp, tuple, repr, iss, now, ts_offset);
        let handle = self.insert_passive(conn, listener);
        self.after_conn(handle);
    }

    /// Adds a connection `listener` accepted (from a SYN or a SYN cookie) to
    /// the socket and flow tables, counted half-open: `after_conn` moves it to
    /// the accept queue once established and lowers the count.
    fn insert_passive(&mut self, conn: Conn, listener: SocketHandle) -> SocketHandle {
        let tuple = *conn.tuple();
        let handle = self.insert_socket(SocketKind::Tcp(Box::new(conn)), Some(listener));
        self.flows.insert(tuple, handle);
        self.tcp_connections += 1;
        self.stats.tcp.passive_opens += 1;
        if let Some(SocketEntry { kind: SocketKind::Listener(l), .. }) = self.entry_mut(listener) {
            l.half_open += 1;
        }
        handle
    }

    /// Answers a SYN statelessly: the ISN encodes what the connection needs.
    fn send_syn_cookie(&mut self, tuple: FourTuple, syn: &TcpRepr, now: Instant) {
        let cfg = &self.config.tcp;
        let peer_mss = syn.options.mss.unwrap_or(536).min(cfg.mss);
        let (isn, mss) = self.cookies.generate(now, tuple, syn.seq, peer_mss);
        let mut options = TcpOptions { mss: Some(mss), ..TcpOptions::default() };
        // The cookie keeps the peer's shift (ours follows from the config).
        let peer_wscale = syn.options.window_scale.filter(|_| cfg.window_scaling);
        let sack = cfg.sack && syn.options.sack_permitted;
        if let (true, Some((ts_val, _))) = (cfg.timestamps, syn.options.timestamps) {
            // Without timestamps the cookie cannot carry window scale and SACK;
            // with them, our TSval's low bits do (as Linux does).
            let ts_now = (now.as_millis() as u32).wrapping_add(self.ts_offset(&tuple));
            let encoded = super::syncookie::encode_ts_options(
                ts_now,
                CookieTsOptions { window_scale: peer_wscale, sack_permitted: sack },
            );
            options.timestamps = Some((encoded, ts_val));
            options.window_scale = peer_wscale.map(|_| window_shift(cfg.recv_buffer_bytes));
            options.sack_permitted = sack;
        }
        let repr = TcpRepr {
            src_port: tuple.local.port(),
            dst_port: tuple.remote.port(),
            seq: isn,
            ack: syn.seq.wrapping_add(1),
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: cfg.recv_buffer_bytes.min(65_535) as u16,
            urgent: 0,
            options,
            payload_offset: 0,
        };
        if self.send_tcp_control(&tuple, &repr) {
            self.stats.tcp.syncookies_sent += 1;
        }
    }

    /// The third segment of a handshake answered with a cookie: rebuild the
    /// connection if the cookie holds.
    fn try_syn_cookie(
        &mut self,
        listener: SocketHandle,
        tuple: FourTuple,
        ack: &TcpRepr,
        payload: Option<PacketBuf>,
        now: Instant,
    ) -> bool {
        let client_isn = ack.seq.wrapping_sub(1);
        let cookie = ack.ack.wrapping_sub(1);
        let Some(mss) = self.cookies.validate(now, tuple, client_isn, cookie) else {
            self.stats.tcp.syncookies_failed += 1;
            return false;
        };
        let room = match self.entry(listener) {
            Some(SocketEntry { kind: SocketKind::Listener(l), .. }) => l.accept_queue.len() < l.backlog,
            _ => false,
        };
        if !room || self.tcp_connections >= self.config.max_connections {
            self.stats.tcp.listen_overflows += 1;
            return true; // dropped; the peer retransmits or times out
        }
        let mut peer = PeerSynOptions { mss: Some(mss), ..PeerSynOptions::default() };
        if let Some((ts_val, ts_ecr)) = ack.options.timestamps {
            let opts = decode_ts_options(ts_ecr);
            peer.window_scale = opts.window_scale;
            peer.sack_permitted = opts.sack_permitted;
            peer.ts_val = Some(ts_val);
        }
        if !self.claim_flow(tuple) {
            self.stats.tcp.handover_races += 1;
            return true;
        }
        let ts_offset = self.ts_offset(&tuple);
        let conn = Conn::from_cookie(&self.config.tcp, tuple, ack, peer, now, ts_offset);
        let handle = self.insert_passive(conn, listener);
        self.stats.tcp.syncookies_recv += 1;
        if payload.is_some() {
            // The ACK may carry data: hand the segment to the connection too.
            // Rebuilt established: no handshake left to complete.
            self.segment_to_conn(handle, &TcpRepr { flags: ack.flags, ..*ack }, payload, false, now);
        } else {
            self.after_conn(handle);
        }
        true
    }

    /// A RST for a segment that has no connection (RFC 9293 §3.10.7.1).
    pub(crate) fn reset_for(&mut self, tuple: &FourTuple, seg: &TcpRepr, payload_len: usize) {
        if seg.flags.contains(TcpFlags::RST) {
            return;
        }
        let (seq, ack, flags) = if seg.flags.contains(TcpFlags::ACK) {
            (seg.ack, 0, TcpFlags::RST)
        } else {
            let len = payload_len as u32
                + u32::from(seg.flags.contains(TcpFlags::SYN))
                + u32::from(seg.flags.contains(TcpFlags::FIN));
            (0, seg.seq.wrapping_add(len), TcpFlags::RST | TcpFlags::ACK)
        };
        let repr = TcpRepr {
            src_port: tuple.local.port(),
            dst_port: tuple.remote.port(),
            seq,
            ack,
            flags,
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
            payload_offset: 0,
        };
        if self.send_tcp_control(tuple, &repr) {
            self.stats.tcp.resets_sent += 1;
        }
    }

    /// Sends a segment with no payload that belongs to no connection.
    fn send_tcp_control(&mut self, tuple: &FourTuple, repr: &TcpRepr) -> bool {
        let Some(mut frame) = self.egress_ctx().alloc() else { return false };
        let len = repr.header_len();
        let Ok(hdr) = frame.append(len) else { return false };
        repr.emit(hdr);
        crate::wire::fill_tcp_checksum(&mut frame, *tuple.local.ip(), *tuple.remote.ip());
        self.out().ipv4(*tuple.remote.ip(), IpProtocol::Tcp, frame)
    }
}

fn window_shift(buffer: u32) -> u8 {
    super::conn::window_shift_for(buffer)
}
