//! One TCP connection (the TCB of RFC 9293): segment arrival, segment output,
//! retransmission and loss recovery, the receive window, and its timers.
//!
//! The connection is sans-IO: segments come in as parsed headers plus a payload
//! view, go out through a [`SegmentSink`], and time is a value passed in. The
//! stack owns the flow table, the timer wheel and the frames.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use ix_driver::{PacketBuf, PacketPool, PoolPressure};

use super::assembler::{Assembler, InsertOutcome};
use super::cc::CongestionControl;
use super::config::TcpConfig;
use super::recovery::{Delivery, LossDetection, Prr, Rack, SentLog, TLP_ACK_DELAY_MAX_MICROS, TLP_SLACK_MICROS};
use super::rtt::RttEstimator;
use super::sack::{DUP_THRESH, SackBlockList, SackScoreboard};
use super::sendbuf::{SendBuffer, SendChunk};
use super::seq::SeqNum;
use super::{FourTuple, TcpError};
use crate::socket::{Readiness, RxCredit};
use crate::stats::TcpStats;
use crate::time::{Instant, duration_micros};
use crate::wire::{TcpFlags, TcpHeaderFields, TcpHeaderTemplate, TcpOptions, TcpRepr};

/// States of RFC 9293 §3.3.2 that a connection object can be in (LISTEN is a
/// listener's, not a connection's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Our SYN is out, waiting for the peer's SYN.
    SynSent,
    /// The peer's SYN arrived and our SYN-ACK is out.
    SynReceived,
    /// Data flows both ways.
    Established,
    /// We closed; our FIN is not yet acknowledged.
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's.
    FinWait2,
    /// The peer closed; we may still send.
    CloseWait,
    /// Both closed at once; waiting for the ACK of our FIN.
    Closing,
    /// The peer closed first, then we did; waiting for the ACK of our FIN.
    LastAck,
    /// Both directions closed; old duplicates are absorbed for 2·MSL.
    TimeWait,
    /// Gone: reset, timed out, or fully closed.
    Closed,
}

impl State {
    fn synchronized(self) -> bool {
        !matches!(self, State::SynSent | State::SynReceived | State::Closed)
    }

    /// Whether the peer may still send us data in this state.
    fn can_receive(self) -> bool {
        matches!(self, State::Established | State::FinWait1 | State::FinWait2)
    }

    /// Whether the application may still queue data in this state.
    fn can_send(self) -> bool {
        matches!(self, State::SynSent | State::SynReceived | State::Established | State::CloseWait)
    }
}

/// Where a connection's segments go: the stack builds the frames around them.
pub trait SegmentSink {
    /// Builds and queues one TCP segment of `len` bytes (header and payload)
    /// for `tuple`, written by `write` into its place in a frame, checksum
    /// field included; the sink then fills the checksum and the headers
    /// below TCP. Returns false when no frame was available; the connection
    /// then stops sending this round and tries again on the next.
    fn segment(&mut self, tuple: &FourTuple, len: usize, write: &mut dyn FnMut(&mut [u8])) -> bool;
}

/// The header of one outgoing segment: from the connection's
/// [`TcpHeaderTemplate`] when it carries no option but the timestamps
/// negotiated (nearly every segment after the handshake), else in full.
#[derive(Debug, Clone, Copy)]
enum SegmentHeader {
    Templated(TcpHeaderFields),
    Full(TcpRepr),
}

impl SegmentHeader {
    /// Length of the header, `template` being the connection's.
    #[inline]
    fn len(&self, template: &TcpHeaderTemplate) -> usize {
        match self {
            SegmentHeader::Templated(_) => template.header_len(),
            SegmentHeader::Full(repr) => repr.header_len(),
        }
    }

    /// Writes the header into the start of `buf` with a zero checksum.
    #[inline]
    fn emit(&self, template: &TcpHeaderTemplate, buf: &mut [u8]) {
        match self {
            SegmentHeader::Templated(fields) => template.emit(fields, buf),
            SegmentHeader::Full(repr) => repr.emit(buf),
        }
    }
}

/// Options that came with the peer's SYN.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerSynOptions {
    /// MSS the peer can receive.
    pub mss: Option<u16>,
    /// The peer's window shift, if it offered scaling.
    pub window_scale: Option<u8>,
    /// Whether the peer may receive SACK blocks.
    pub sack_permitted: bool,
    /// The peer's timestamp value, if it offered timestamps.
    pub ts_val: Option<u32>,
}

impl PeerSynOptions {
    /// Reads them from a SYN's options.
    pub fn from_options(opts: &TcpOptions) -> Self {
        Self {
            mss: opts.mss,
            window_scale: opts.window_scale,
            sack_permitted: opts.sack_permitted,
            ts_val: opts.timestamps.map(|(val, _)| val),
        }
    }
}

/// RFC 9293's default MSS when the peer sends none.
const DEFAULT_PEER_MSS: u16 = 536;
/// The largest window shift (RFC 7323 §2.3).
const MAX_WINDOW_SHIFT: u8 = 14;
/// Timestamp clock: one tick per millisecond (RFC 7323 allows 1 ms to 1 s).
const TS_TICK_MICROS: u64 = 1000;
/// A `ts_recent` older than this is stale for PAWS (RFC 7323 §5.5).
const PAWS_IDLE_MICROS: u64 = 24 * 24 * 3600 * 1_000_000;
/// Duplicate ACKs that trigger fast retransmit.
const DUP_ACK_THRESHOLD: u32 = 3;
/// Immediate ACKs sent at the start of a connection to help the peer's slow
/// start, as Linux's quick-ack mode does.
const INITIAL_QUICK_ACKS: u32 = 16;
/// In-order segments shorter than this are copied into the previous chunk's
/// frame when it has room (see `push_ready`).
const COALESCE_BELOW_BYTES: usize = 1024;
/// Persist (zero window probe) intervals are bounded like RTOs.
const PERSIST_MAX_MICROS: u64 = 60_000_000;
/// Least time between two ACKs answering invalid pure ACKs (Linux's
/// `tcp_invalid_ratelimit`): two desynchronized ends cannot trade them forever.
const INVALID_ACK_INTERVAL_MICROS: u64 = 500_000;

/// What a loss episode (a recovery or a timeout) reduced, kept so that the
/// reduction can be undone when the episode proves spurious: every
/// retransmission reported needless by a D-SACK (RFC 3708, as Linux), or the
/// first ACK after a timeout echoing a timestamp older than the retransmission
/// (Eifel, RFC 3522 and RFC 4015).
#[derive(Debug, Clone)]
struct Undo {
    /// The congestion controller before the reduction.
    cc: CongestionControl,
    /// Retransmissions of the episode not (yet) reported needless.
    retransmissions: u32,
    /// Whether a D-SACK reported one of them needless.
    dsacked: bool,
    /// SND.UNA when the episode began: D-SACKs below it are older news.
    marker: SeqNum,
    /// For a timeout: the TSval its first retransmission carries.
    rto_tsval: Option<u32>,
}

/// One TCP connection.
#[derive(Debug)]
pub struct Conn {
    cfg: TcpConfig,
    tuple: FourTuple,
    state: State,
    /// Set when the connection was made from a listener's SYN.
    passive: bool,

    // Send sequence space (RFC 9293 §3.3.1).
    iss: SeqNum,
    snd_una: SeqNum,
    snd_nxt: SeqNum,
    /// One past the highest sequence number ever sent.
    snd_max: SeqNum,
    snd_wnd: u32,
    max_snd_wnd: u32,
    snd_wl1: SeqNum,
    snd_wl2: SeqNum,
    snd_wscale: u8,
    send_mss: usize,
    sendbuf: SendBuffer,
    /// The application shut down its writing side: a FIN follows the data.
    fin_queued: bool,

    // Receive sequence space.
    irs: SeqNum,
    rcv_nxt: SeqNum,
    /// Right edge of the window last advertised; never moved left.
    rcv_adv: SeqNum,
    rcv_wscale: u8,
    /// RCV.NXT − RCV.ADV from which the right edge may move at all
    /// ([`Conn::window_edge_may_move`]); fixed by the receive buffer, the
    /// window scale and the MSS, so set where they are.
    window_move_offset: i32,
    ready: VecDeque<PacketBuf>,
    ready_bytes: usize,
    ooo: Assembler,
    /// Sequence number of the peer's FIN, when it arrived ahead of data.
    fin_seq: Option<SeqNum>,
    fin_received: bool,
    credit: Rc<RxCredit>,
    /// The pool received frames come from, whose pressure bounds the window.
    pool: Option<PacketPool>,

    // Options in use.
    ts_enabled: bool,
    ts_recent: u32,
    ts_recent_at: Instant,
    /// When an ACK last answered an invalid pure ACK.
    invalid_acked_at: Option<Instant>,
    ts_offset: u32,
    last_ack_sent: SeqNum,
    sack_enabled: bool,
    /// The header of the segments without SACK blocks, for the options
    /// negotiated: ports and option layout written once.
    tcp_header: TcpHeaderTemplate,
    scoreboard: SackScoreboard,
    sack_blocks: SackBlockList,

    // Timing.
    rtt: RttEstimator,
    /// Every segment in flight with its send times: RTT samples, RACK, pipe.
    sent: SentLog,
    rto_deadline: Option<Instant>,
    /// RACK's reordering timer (RFC 8985 §6.2 step 5).
    rack_deadline: Option<Instant>,
    /// The tail loss probe timer (RFC 8985 §7.2).
    tlp_deadline: Option<Instant>,
    /// Consecutive retransmission timeouts (reset by new acknowledgements).
    backoffs: u32,
    delack_deadline: Option<Instant>,
    persist_deadline: Option<Instant>,
    persist_backoffs: u32,
    /// Persist timer firings since the peer last acknowledged anything: the
    /// probes (or refused sends) it left unanswered. At `max_retransmits` the
    /// connection gives up, as after as many retransmission timeouts.
    persist_unanswered: u32,
    keepalive_deadline: Option<Instant>,
    keepalive_probes: u32,
    /// When the connection ends by itself: TIME-WAIT's 2·MSL, or the
    /// FIN-WAIT-2 timeout of a connection the application released.
    timewait_deadline: Option<Instant>,
    /// The application released its handle ([`Conn::orphan`]): nobody waits
    /// for the rest of the peer's stream.
    orphaned: bool,
    /// The earliest of the deadlines set since the stack last took it
    /// ([`Conn::take_new_deadline`]): all it needs to keep the socket's timer
    /// no later than every deadline, without re-deriving the seven.
    new_deadline: Option<Instant>,

    // Congestion and recovery.
    cc: CongestionControl,
    dupacks: u32,
    in_recovery: bool,
    /// SACK only: after a retransmission timeout, until `recover` is
    /// acknowledged, the segments deemed lost are retransmitted in order under
    /// the slow-start window (Linux's `TCP_CA_Loss`).
    rto_recovery: bool,
    rack: Rack,
    prr: Prr,
    /// The tail loss probe in flight: `SND.MAX` when it was sent, and whether
    /// it retransmitted a segment (RFC 8985 §7.4's `TLP.end_seq`).
    tlp_probe: Option<(SeqNum, bool)>,
    /// A tail loss probe is due on the next output.
    tlp_pending: bool,
    /// What the probe timeout adds for a peer's delayed ACK when one segment
    /// is in flight, microseconds: [`LossConfig::tlp_ack_delay`] at first,
    /// doubled by each probe the peer reports as a duplicate, up to
    /// [`TLP_ACK_DELAY_MAX_MICROS`] (see [`Conn::on_dsack`]).
    tlp_ack_allowance_micros: u32,
    /// The range the last retransmitting probe sent again, until a D-SACK
    /// of it arrives or another probe replaces it.
    tlp_retransmitted: Option<(SeqNum, SeqNum)>,
    /// The window before the current episode's reduction, to restore if the
    /// episode proves spurious.
    undo: Option<Undo>,
    /// RFC 6582's `recover`: the highest sequence sent when recovery began.
    recover: SeqNum,
    /// NewReno (no SACK): retransmit the first hole on the next output.
    retransmit_head: bool,
    /// NewReno (no SACK): the window inflation of RFC 5681 §3.2 / RFC 6582,
    /// kept apart from the congestion controller's window.
    inflation: usize,

    // Acknowledgements.
    ack_now: bool,
    unacked_segments: u32,
    quick_acks: u32,
    /// Send a RST (abort) on the next output, then close.
    rst_pending: bool,
    /// A keepalive or zero-window probe is due on the next output.
    probe_pending: bool,

    error: Option<TcpError>,
    events: Readiness,
}

impl Conn {
    fn new(cfg: &TcpConfig, tuple: FourTuple, iss: SeqNum, now: Instant, ts_offset: u32) -> Self {
        let rcv_wscale = if cfg.window_scaling { window_shift_for(cfg.recv_buffer_bytes) } else { 0 };
        let mut conn = Self {
            cfg: cfg.clone(),
            tuple,
            state: State::Closed,
            passive: false,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: SeqNum(0),
            snd_wl2: iss,
            snd_wscale: 0,
            send_mss: usize::from(DEFAULT_PEER_MSS),
            sendbuf: SendBuffer::new(cfg.send_buffer_bytes as usize),
            fin_queued: false,
            irs: SeqNum(0),
            rcv_nxt: SeqNum(0),
            rcv_adv: SeqNum(0),
            rcv_wscale,
            window_move_offset: 0,
            ready: VecDeque::new(),
            ready_bytes: 0,
            ooo: Assembler::with_limits(cfg.max_ooo_segments, cfg.recv_buffer_bytes as usize),
            fin_seq: None,
            fin_received: false,
            credit: Rc::new(RxCredit::default()),
            pool: None,
            ts_enabled: false,
            ts_recent: 0,
            ts_recent_at: now,
            invalid_acked_at: None,
            ts_offset,
            last_ack_sent: SeqNum(0),
            sack_enabled: false,
            tcp_header: TcpHeaderTemplate::new(tuple.local.port(), tuple.remote.port(), false),
            scoreboard: SackScoreboard::new(),
            sack_blocks: SackBlockList::new(),
            rtt: RttEstimator::new(cfg.rtt),
            sent: SentLog::new(),
            rto_deadline: None,
            rack_deadline: None,
            tlp_deadline: None,
            backoffs: 0,
            delack_deadline: None,
            persist_deadline: None,
            persist_backoffs: 0,
            persist_unanswered: 0,
            keepalive_deadline: None,
            keepalive_probes: 0,
            timewait_deadline: None,
            orphaned: false,
            new_deadline: None,
            cc: CongestionControl::new(cfg.congestion, u32::from(DEFAULT_PEER_MSS), now.as_micros()),
            dupacks: 0,
            in_recovery: false,
            rto_recovery: false,
            rack: Rack::default(),
            prr: Prr::default(),
            tlp_probe: None,
            tlp_pending: false,
            tlp_ack_allowance_micros: duration_micros(cfg.loss.tlp_ack_delay).min(TLP_ACK_DELAY_MAX_MICROS) as u32,
            tlp_retransmitted: None,
            undo: None,
            recover: iss,
            retransmit_head: false,
            inflation: 0,
            ack_now: false,
            unacked_segments: 0,
            quick_acks: INITIAL_QUICK_ACKS,
            rst_pending: false,
            probe_pending: false,
            error: None,
            events: Readiness::EMPTY,
        };
        conn.window_move_offset = conn.window_move_offset_now();
        conn
    }

    /// An active open: the SYN goes out on the next output.
    pub fn connect(cfg: &TcpConfig, tuple: FourTuple, iss: SeqNum, now: Instant, ts_offset: u32) -> Self {
        let mut conn = Self::new(cfg, tuple, iss, now, ts_offset);
        conn.state = State::SynSent;
        conn.snd_nxt = iss;
        conn.arm_rto(now);
        conn
    }

    /// A passive open from a peer's SYN: the SYN-ACK goes out on the next output.
    pub fn accept_syn(
        cfg: &TcpConfig,
        tuple: FourTuple,
        syn: &TcpRepr,
        iss: SeqNum,
        now: Instant,
        ts_offset: u32,
    ) -> Self {
        let mut conn = Self::new(cfg, tuple, iss, now, ts_offset);
        conn.state = State::SynReceived;
        conn.passive = true;
        conn.take_peer_syn(syn, now);
        conn.snd_wnd = u32::from(syn.window); // unscaled in a SYN (RFC 7323 §2.2)
        conn.max_snd_wnd = conn.snd_wnd;
        conn.snd_wl1 = SeqNum(syn.seq);
        conn.arm_rto(now);
        conn
    }

    /// A connection rebuilt from a valid SYN cookie in the peer's ACK: it starts
    /// established, with the options the cookie preserved.
    pub fn from_cookie(
        cfg: &TcpConfig,
        tuple: FourTuple,
        ack: &TcpRepr,
        peer: PeerSynOptions,
        now: Instant,
        ts_offset: u32,
    ) -> Self {
        let iss = SeqNum(ack.ack.wrapping_sub(1));
        let mut conn = Self::new(cfg, tuple, iss, now, ts_offset);
        conn.passive = true;
        conn.irs = SeqNum(ack.seq.wrapping_sub(1));
        conn.rcv_nxt = SeqNum(ack.seq);
        conn.apply_peer_options(peer, now);
        conn.snd_una = SeqNum(ack.ack);
        conn.snd_nxt = conn.snd_una;
        conn.snd_max = conn.snd_una;
        conn.snd_wnd = u32::from(ack.window) << conn.snd_wscale;
        conn.max_snd_wnd = conn.snd_wnd;
        conn.snd_wl1 = SeqNum(ack.seq);
        conn.snd_wl2 = SeqNum(ack.ack);
        conn.rcv_adv = conn.rcv_nxt + conn.rcv_space_rounded();
        conn.state = State::Established;
        conn.events |= Readiness::ESTABLISHED | Readiness::WRITABLE;
        conn.arm_keepalive(now);
        conn
    }

    fn take_peer_syn(&mut self, syn: &TcpRepr, now: Instant) {
        self.irs = SeqNum(syn.seq);
        self.rcv_nxt = self.irs + 1u32;
        self.apply_peer_options(PeerSynOptions::from_options(&syn.options), now);
        self.rcv_adv = self.rcv_nxt + self.rcv_space_rounded();
    }

    fn apply_peer_options(&mut self, peer: PeerSynOptions, now: Instant) {
        let peer_mss = usize::from(peer.mss.unwrap_or(DEFAULT_PEER_MSS).max(64));
        self.send_mss = peer_mss.min(usize::from(self.cfg.mss));
        match (self.cfg.window_scaling, peer.window_scale) {
            (true, Some(shift)) => self.snd_wscale = shift.min(MAX_WINDOW_SHIFT),
            _ => {
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        self.sack_enabled = self.cfg.sack && peer.sack_permitted;
        if let (true, Some(val)) = (self.cfg.timestamps, peer.ts_val) {
            self.ts_enabled = true;
            self.ts_recent = val;
            self.ts_recent_at = now;
        } else {
            self.ts_enabled = false;
        }
        self.tcp_header = TcpHeaderTemplate::new(self.tuple.local.port(), self.tuple.remote.port(), self.ts_enabled);
        self.window_move_offset = self.window_move_offset_now();
        self.cc = CongestionControl::new(self.cfg.congestion, self.payload_mss() as u32, now.as_micros());
    }

    // ----- accessors -------------------------------------------------------

    /// The connection's addresses.
    pub fn tuple(&self) -> &FourTuple {
        &self.tuple
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether a new SYN may replace this connection in TIME-WAIT: its sequence
    /// number is past our receive point, or its timestamp is newer.
    pub fn accepts_new_syn(&self, syn: &TcpRepr) -> bool {
        if let (true, Some((ts_val, _))) = (self.ts_enabled, syn.options.timestamps) {
            return (ts_val.wrapping_sub(self.ts_recent) as i32) > 0;
        }
        SeqNum(syn.seq) > self.rcv_nxt
    }

    /// Turns Nagle's algorithm off (`true`) or on.
    pub fn set_nodelay(&mut self, nodelay: bool) {
        self.cfg.nodelay = nodelay;
    }

    /// Whether the connection came from a listener.
    pub fn is_passive(&self) -> bool {
        self.passive
    }

    /// Takes the readiness changes since the last call.
    pub fn take_events(&mut self) -> Readiness {
        std::mem::take(&mut self.events)
    }

    /// The shared counter of bytes the application holds.
    pub fn credit(&self) -> &Rc<RxCredit> {
        &self.credit
    }

    /// Ties the receive window to `pool`: under pressure (see
    /// [`PacketPool::pressure`]) the window stops growing for a connection
    /// that holds frames, and received payload is dropped when it is critical.
    pub fn attach_pool(&mut self, pool: PacketPool) {
        self.pool = Some(pool);
    }

    fn pool_pressure(&self) -> PoolPressure {
        self.pool.as_ref().map_or(PoolPressure::Normal, PacketPool::pressure)
    }

    /// Whether received data of this connection pins frames (queued, out of
    /// order, or held by the application).
    fn holds_frames(&self) -> bool {
        !self.ready.is_empty() || !self.ooo.is_empty() || self.credit.held() > 0
    }

    /// The unread in-order chunks, oldest first.
    pub(crate) fn ready_chunks(&self) -> impl Iterator<Item = &PacketBuf> {
        self.ready.iter()
    }

    /// Puts `chunk`, a copy of the same bytes in another frame, in place of
    /// the unread chunk at `index`.
    pub(crate) fn replace_ready_chunk(&mut self, index: usize, chunk: PacketBuf) {
        debug_assert_eq!(self.ready[index][..], chunk[..], "a replacement holds the same bytes");
        self.ready[index] = chunk;
    }

    /// The error that ended the connection, if any.
    pub fn error(&self) -> Option<TcpError> {
        self.error
    }

    /// Bytes queued and not yet acknowledged.
    pub fn send_queued(&self) -> usize {
        self.sendbuf.len()
    }

    /// Room in the send queue.
    pub fn send_room(&self) -> usize {
        if self.state.can_send() && !self.fin_queued { self.sendbuf.room() } else { 0 }
    }

    /// In-order bytes waiting to be read.
    pub fn recv_queued(&self) -> usize {
        self.ready_bytes
    }

    /// The congestion window in bytes.
    pub fn cwnd(&self) -> usize {
        self.cc.cwnd() as usize
    }

    /// The smoothed RTT, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// Whether the peer's SYN enabled SACK / timestamps / window scaling.
    pub fn negotiated(&self) -> (bool, bool, bool) {
        (self.sack_enabled, self.ts_enabled, self.snd_wscale != 0 || self.rcv_wscale != 0)
    }

    /// Payload bytes the next data segment may carry: the peer's MSS less the
    /// options it will carry now (timestamps, SACK blocks while data is held
    /// out of order, a D-SACK after a duplicate).
    fn segment_payload_limit(&self) -> usize {
        let sack_count = if self.sack_enabled { self.sack_blocks.report_len(!self.ooo.is_empty()) } else { 0 };
        if sack_count == 0 {
            // Nearly every segment: no option but the timestamps, if on.
            return self.payload_mss();
        }
        let opts = TcpOptions {
            timestamps: self.ts_enabled.then_some((0, 0)),
            sack_count: sack_count as u8,
            ..TcpOptions::default()
        };
        self.send_mss - opts.emitted_len()
    }

    /// Payload bytes per full segment with the options every segment carries.
    fn payload_mss(&self) -> usize {
        if self.ts_enabled { self.send_mss - 12 } else { self.send_mss }
    }

    // ----- application side ------------------------------------------------

    /// Queues as much of `chunk` as the send queue has room for.
    ///
    /// # Errors
    /// [`TcpError::Closed`] after `shutdown_write`; the connection's error when
    /// it was reset or timed out; [`TcpError::NotConnected`] when it is closed.
    pub fn send(&mut self, chunk: SendChunk) -> Result<usize, TcpError> {
        if let Some(err) = self.error {
            return Err(err);
        }
        if self.fin_queued {
            return Err(TcpError::Closed);
        }
        if !self.state.can_send() {
            return Err(TcpError::NotConnected);
        }
        Ok(self.sendbuf.push(chunk))
    }

    /// Queues a copy-free `Bytes`.
    ///
    /// # Errors
    /// As [`Conn::send`].
    pub fn send_bytes(&mut self, data: Bytes) -> Result<usize, TcpError> {
        self.send(SendChunk::Bytes(data))
    }

    /// Takes the next in-order chunk of received data. `Ok(None)` means nothing
    /// is there yet; end of stream is [`TcpError::Eof`]-free: it is reported by
    /// [`Conn::at_eof`].
    ///
    /// # Errors
    /// The connection's error when it was reset or timed out and no data is left.
    pub fn recv(&mut self) -> Result<Option<PacketBuf>, TcpError> {
        if let Some(chunk) = self.ready.pop_front() {
            self.ready_bytes -= chunk.len();
            self.credit.take(chunk.len());
            return Ok(Some(chunk));
        }
        match self.error {
            Some(err) => Err(err),
            None => Ok(None),
        }
    }

    /// Whether the peer closed its side and every byte before its FIN was read.
    pub fn at_eof(&self) -> bool {
        self.fin_received && self.ready.is_empty()
    }

    /// Closes our sending side: a FIN follows the queued data.
    pub fn shutdown_write(&mut self) {
        if self.fin_queued {
            return;
        }
        // In SYN-SENT the FIN waits for the handshake (RFC 9293 §3.10.4: queued
        // behind the data already sent).
        if matches!(self.state, State::SynSent | State::SynReceived | State::Established | State::CloseWait) {
            self.fin_queued = true;
        }
    }

    /// The application released its handle after [`Conn::shutdown_write`]:
    /// once in FIN-WAIT-2 the connection waits for the peer's FIN only
    /// `fin_wait_2_timeout` (a peer that never sends it no longer holds the
    /// connection for ever).
    pub fn orphan(&mut self, now: Instant) {
        self.orphaned = true;
        self.arm_fin_wait_2(now);
    }

    /// Aborts: a RST goes out (if the peer knows of us) and the connection closes.
    pub fn abort(&mut self) {
        if self.state.synchronized() || self.state == State::SynReceived {
            self.rst_pending = true;
        } else {
            self.enter_closed(None);
        }
    }

    /// The application dropped a chunk: reopen the window if that moved it
    /// enough to be worth an update.
    pub fn on_credit_released(&mut self) {
        if !self.credit.acknowledge_release() || !self.state.can_receive() {
            return;
        }
        if self.window_edge_may_move()
            && right_edge_moves(self.rcv_nxt, self.rcv_adv, self.window_edge(), self.window_update_threshold())
        {
            self.ack_now = true;
        }
    }

    fn window_update_threshold(&self) -> usize {
        (self.cfg.recv_buffer_bytes as usize / 2).min(self.payload_mss().max(1))
    }

    // ----- receive window --------------------------------------------------

    /// Room for more received data. Under pool pressure a connection that
    /// already pins frames gets no more, one that pins none gets a segment's
    /// worth (none while the pool is critical): the sum over connections
    /// cannot take the frames the core needs to keep receiving.
    fn rcv_space(&self) -> usize {
        let space = (self.cfg.recv_buffer_bytes as usize).saturating_sub(self.ready_bytes + self.credit.held());
        match self.pool_pressure() {
            PoolPressure::Normal => space,
            // Every segment would be dropped (`receive_data`).
            PoolPressure::Critical => 0,
            _ if self.holds_frames() => 0,
            _ => space.min(self.payload_mss()),
        }
    }

    /// Space rounded down to what the window field can say.
    fn rcv_space_rounded(&self) -> u32 {
        let space = self.rcv_space().min(self.rcv_space_max());
        ((space >> self.rcv_wscale) << self.rcv_wscale) as u32
    }

    /// The most [`Conn::rcv_space_rounded`] can be: the whole receive buffer,
    /// or what the window field can say.
    fn rcv_space_max(&self) -> usize {
        (self.cfg.recv_buffer_bytes as usize).min(65_535usize << self.rcv_wscale)
    }

    /// The right edge of the window the receive space allows now.
    fn window_edge(&self) -> SeqNum {
        self.rcv_nxt + self.rcv_space_rounded()
    }

    /// Whether the right edge may move at all: it would with the whole
    /// receive buffer free. When not (nearly every segment of a steady
    /// exchange: the edge moves by an update's worth at a time), the space,
    /// which can only be smaller, need not be derived (pool pressure, bytes
    /// held): [`right_edge_moves`] grows with the edge.
    ///
    /// With the whole buffer free the edge grows by RCV.NXT − RCV.ADV plus the
    /// most the window can say, and moves when that reaches the update
    /// threshold (at least a byte; the threshold is never above that most):
    /// one comparison against [`Conn::window_move_offset`].
    fn window_edge_may_move(&self) -> bool {
        self.rcv_nxt - self.rcv_adv >= self.window_move_offset
    }

    /// The least RCV.NXT − RCV.ADV at which [`right_edge_moves`] holds for
    /// the edge of a wholly free buffer, for the options in use now.
    fn window_move_offset_now(&self) -> i32 {
        edge_move_offset(self.rcv_space_max(), self.window_update_threshold())
    }

    /// The window field for an outgoing segment; moves `rcv_adv` right when the
    /// space grew by enough (receiver-side silly window avoidance), never left.
    #[inline]
    fn window_field(&mut self) -> u16 {
        if self.window_edge_may_move() {
            self.move_window_edge();
        }
        let wnd = (self.rcv_adv - self.rcv_nxt).max(0) as u32;
        (wnd >> self.rcv_wscale).min(65_535) as u16
    }

    /// Moves `rcv_adv` to the edge the receive space allows when that moves
    /// it by enough. Kept out of line: it runs only for a header whose edge
    /// may move, and inlined it made every header pay for saving the
    /// registers it needs.
    #[inline(never)]
    fn move_window_edge(&mut self) {
        let edge = self.window_edge();
        if right_edge_moves(self.rcv_nxt, self.rcv_adv, edge, self.window_update_threshold()) {
            self.rcv_adv = edge;
        }
    }

    fn rcv_wnd(&self) -> u32 {
        (self.rcv_adv - self.rcv_nxt).max(0) as u32
    }

    // ----- segment arrival (RFC 9293 §3.10.7) ------------------------------

    /// Processes one segment for this connection. `payload` is the segment's
    /// data, if any, as a view into the received frame.
    pub fn on_segment(&mut self, seg: &TcpRepr, payload: Option<PacketBuf>, now: Instant, stats: &mut TcpStats) {
        match self.state {
            State::Closed => {}
            State::SynSent => self.on_segment_syn_sent(seg, now, stats),
            State::Established
                if self.cfg.header_prediction && self.is_predicted(seg, payload.as_ref().map_or(0, |p| p.len())) =>
            {
                self.on_predicted_segment(seg, payload, now, stats);
            }
            _ => {
                self.on_segment_synchronized(seg, payload, now, stats);
                // Not after a predicted segment: an ACK of new data there
                // re-arms the RTO or finds nothing outstanding.
                self.ensure_timer(false, now, stats);
            }
        }
    }

    /// Header prediction (Van Jacobson's, as Linux's `tcp_rcv_established`
    /// fast path): whether `seg`, carrying `data_len` bytes, is what an
    /// established connection expects next: flags ACK (and PSH) only, at
    /// RCV.NXT, its data within the window, no SACK blocks, a timestamp that
    /// passes PAWS when timestamps are on, an ACK that is new (or, with data,
    /// the same), the peer's window open before and after, and no recovery
    /// under way. For such a segment the general path's checks (PAWS,
    /// acceptability, RST, SYN, the ACK's range, SACK, D-SACK, duplicate
    /// ACKs, a window closing or reopening) all come out as
    /// [`Conn::on_predicted_segment`] assumes. Unlike Van Jacobson's, the
    /// window may change: a receiver's advertised window shrinks with every
    /// segment it has not yet read, so requiring it unchanged would leave
    /// request/response traffic to the general path.
    fn is_predicted(&self, seg: &TcpRepr, data_len: usize) -> bool {
        let ack = SeqNum(seg.ack);
        let flags = seg.flags.bits() & !TcpFlags::PSH.bits();
        let timestamp_ok = match (self.ts_enabled, seg.options.timestamps) {
            (false, _) => true,
            (true, Some((ts_val, _))) => (ts_val.wrapping_sub(self.ts_recent) as i32) >= 0,
            (true, None) => false,
        };
        let ack_ok = (self.snd_una < ack && ack <= self.snd_max) || (ack == self.snd_una && data_len > 0);
        flags == TcpFlags::ACK.bits()
            && SeqNum(seg.seq) == self.rcv_nxt
            && data_len <= self.rcv_wnd() as usize
            && seg.options.sack_count == 0
            && timestamp_ok
            && self.snd_wnd != 0
            && seg.window != 0
            && ack_ok
            && !self.in_recovery
            && !self.rto_recovery
    }

    /// A segment [`Conn::is_predicted`] accepted: the general path's steps
    /// that can still change something, in its order, and nothing else.
    fn on_predicted_segment(&mut self, seg: &TcpRepr, payload: Option<PacketBuf>, now: Instant, stats: &mut TcpStats) {
        stats.header_predicted += 1;
        let seq = SeqNum(seg.seq);
        let ack = SeqNum(seg.ack);
        let mut delivery = Delivery::default();
        if ack > self.snd_una {
            self.sent.on_cumulative_ack(ack, &mut delivery);
            self.on_new_ack(seg, ack, &delivery, false, now, stats);
        }
        if self.sack_enabled && self.snd_max > self.snd_una {
            self.detect_losses(&delivery, now, stats);
        }
        // Window update (RFC 9293 §3.10.7.4: SND.WL1 / SND.WL2 rule); open
        // before and after, so no probe to start or stop.
        if self.snd_wl1 < seq || (self.snd_wl1 == seq && self.snd_wl2 <= ack) {
            self.snd_wnd = u32::from(seg.window) << self.snd_wscale;
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
        }
        self.take_ts_recent(seg, seq, now);
        if let Some(data) = payload.filter(|data| !data.is_empty()) {
            self.receive_data(seq, data, now, stats);
        }
        self.try_consume_fin(now);
        self.last_rx_activity(now);
    }

    /// RFC 7323 §4.3: a segment that covers the last ACK sent and whose
    /// timestamp is not older than `ts_recent` updates it.
    fn take_ts_recent(&mut self, seg: &TcpRepr, seq: SeqNum, now: Instant) {
        if let (true, Some((ts_val, _))) = (self.ts_enabled, seg.options.timestamps) {
            if seq <= self.last_ack_sent && (ts_val.wrapping_sub(self.ts_recent) as i32) >= 0 {
                self.ts_recent = ts_val;
                self.ts_recent_at = now;
            }
        }
    }

    fn on_segment_syn_sent(&mut self, seg: &TcpRepr, now: Instant, stats: &mut TcpStats) {
        let flags = seg.flags;
        let ack = SeqNum(seg.ack);
        if flags.contains(TcpFlags::ACK) && (ack <= self.iss || ack > self.snd_max) {
            // Not for our SYN: the stack answers with a RST unless this is one.
            stats.bad_ack += 1;
            return;
        }
        if flags.contains(TcpFlags::RST) {
            if flags.contains(TcpFlags::ACK) {
                stats.resets_received += 1;
                self.enter_closed(Some(TcpError::ConnectionRefused));
            }
            return;
        }
        if !flags.contains(TcpFlags::SYN) {
            return;
        }
        self.take_peer_syn(seg, now);
        if flags.contains(TcpFlags::ACK) {
            self.snd_wnd = u32::from(seg.window); // unscaled in a SYN
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = SeqNum(seg.seq);
            self.snd_wl2 = ack;
            let mut delivery = Delivery::default();
            self.sent.on_cumulative_ack(ack, &mut delivery);
            self.take_rtt_sample(seg, &delivery, false, now, stats);
            self.snd_una = ack;
            self.snd_nxt = self.snd_nxt.max(ack);
            self.backoffs = 0;
            self.rto_deadline = None;
            self.state = State::Established;
            self.ack_now = true;
            self.events |= Readiness::ESTABLISHED | Readiness::WRITABLE;
            self.arm_keepalive(now);
            stats.active_opens_established += 1;
        } else {
            // Simultaneous open (RFC 9293 §3.5, figure 7).
            self.state = State::SynReceived;
            self.snd_nxt = self.iss;
            self.snd_wnd = u32::from(seg.window);
            self.snd_wl1 = SeqNum(seg.seq);
            self.arm_rto(now);
        }
    }

    fn on_segment_synchronized(
        &mut self,
        seg: &TcpRepr,
        payload: Option<PacketBuf>,
        now: Instant,
        stats: &mut TcpStats,
    ) {
        let flags = seg.flags;
        let seq = SeqNum(seg.seq);
        let data_len = payload.as_ref().map_or(0, |p| p.len());
        let seg_len =
            data_len + usize::from(flags.contains(TcpFlags::SYN)) + usize::from(flags.contains(TcpFlags::FIN));

        if self.state == State::TimeWait {
            self.on_segment_time_wait(seg, now);
            return;
        }

        // Our SYN-ACK was lost: the peer retransmitted its SYN, which lies
        // before RCV.NXT and would fail the window check below (RFC 9293 §3.8.1).
        if self.state == State::SynReceived
            && seq == self.irs
            && flags.contains(TcpFlags::SYN)
            && !flags.intersects(TcpFlags::ACK | TcpFlags::RST)
        {
            // RFC 7323 §4.3: the SYN lies before Last.ACK.sent, so a newer
            // TSval becomes TS.Recent and the SYN-ACK sent again echoes it
            // (echoing the first SYN's would give the peer an RTT sample as
            // long as its SYN timeout).
            if let (true, Some((ts_val, _))) = (self.ts_enabled, seg.options.timestamps) {
                if (ts_val.wrapping_sub(self.ts_recent) as i32) > 0 {
                    self.ts_recent = ts_val;
                    self.ts_recent_at = now;
                }
            }
            self.snd_nxt = self.iss;
            return;
        }
        // Simultaneous open (RFC 9293 §3.5 figure 7): the other side's SYN-ACK
        // acknowledges our SYN; take it as that ACK, its SYN already counted.
        if self.state == State::SynReceived
            && !self.passive
            && seq == self.irs
            && flags.contains(TcpFlags::SYN | TcpFlags::ACK)
            && !flags.contains(TcpFlags::RST)
            && SeqNum(seg.ack) == self.snd_max
        {
            let mut ack = TcpRepr { seq: seg.seq.wrapping_add(1), ..*seg };
            ack.flags.remove(TcpFlags::SYN);
            self.on_segment_synchronized(&ack, payload, now, stats);
            return;
        }

        // PAWS (RFC 7323 §5.3).
        if self.ts_enabled && !flags.contains(TcpFlags::RST) {
            if let Some((ts_val, _)) = seg.options.timestamps {
                let stale = now.as_micros().saturating_sub(self.ts_recent_at.as_micros()) > PAWS_IDLE_MICROS;
                if (ts_val.wrapping_sub(self.ts_recent) as i32) < 0 && !stale {
                    stats.paws_rejected += 1;
                    self.ack_invalid(seg_len, now);
                    return;
                }
            }
        }

        // Acceptability (RFC 9293 §3.10.7.4, first check).
        if !self.acceptable(seq, seg_len) {
            if flags.contains(TcpFlags::RST) {
                return;
            }
            stats.out_of_window += 1;
            self.ack_invalid(seg_len, now);
            // A segment wholly before RCV.NXT is a duplicate: its data goes, but
            // its ACK field is still news (BSD keeps processing it; without this,
            // two sides that both retransmitted from behind each other's RCV.NXT
            // would drop each other's acknowledgements forever).
            let old = (seq + seg_len) - self.rcv_nxt <= 0 && self.rcv_nxt - seq <= self.max_rcv_span();
            if old && data_len > 0 {
                stats.duplicate_segments += 1;
                self.note_duplicate(seq.0, (seq + data_len).0);
            }
            // A segment that starts at the window's right edge (at RCV.NXT
            // when the window is zero: the peer's zero-window probe) brings
            // data we refuse, but RFC 9293 §3.10.7.4 asks that valid ACKs be
            // taken at a zero window, and Linux takes them at the edge: the
            // peer's acknowledgements and window updates may come on nothing
            // else while our window stays shut.
            let at_edge = seg_len > 0 && seq == self.rcv_nxt + self.rcv_wnd();
            if (old || at_edge)
                && flags.contains(TcpFlags::ACK)
                && !flags.contains(TcpFlags::SYN)
                && self.state != State::SynReceived
            {
                self.process_ack(seg, data_len.max(1), now, stats);
            }
            return;
        }

        if flags.contains(TcpFlags::RST) {
            self.on_reset(seq, stats);
            return;
        }

        if flags.contains(TcpFlags::SYN) {
            // RFC 5961 §4: a SYN in a synchronized state gets a challenge ACK.
            stats.challenge_acks += 1;
            self.ack_now = true;
            return;
        }

        if !flags.contains(TcpFlags::ACK) {
            return;
        }

        if self.state == State::SynReceived {
            let ack = SeqNum(seg.ack);
            if !(self.snd_una < ack && ack <= self.snd_max) {
                // The stack answers an unacceptable ACK with a RST.
                stats.bad_ack += 1;
                return;
            }
            self.state = State::Established;
            self.snd_wnd = u32::from(seg.window) << self.snd_wscale;
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            self.events |= Readiness::ESTABLISHED | Readiness::WRITABLE;
            self.arm_keepalive(now);
            stats.passive_opens_established += 1;
        }

        if !self.process_ack(seg, data_len, now, stats) {
            return;
        }

        self.take_ts_recent(seg, seq, now);

        if let Some(data) = payload {
            if self.state.can_receive() && !data.is_empty() {
                self.receive_data(seq, data, now, stats);
            } else if !data.is_empty() {
                stats.data_after_close += 1;
            }
        }
        if flags.contains(TcpFlags::FIN) {
            let fin = seq + data_len;
            if fin >= self.rcv_nxt {
                self.fin_seq = Some(fin);
            }
            self.ack_now = true;
        }
        self.try_consume_fin(now);
        self.last_rx_activity(now);
    }

    /// How far behind RCV.NXT a duplicate may start and still be taken for one
    /// of this connection's (the largest window we could have advertised).
    fn max_rcv_span(&self) -> i32 {
        ((65_535u64 << self.rcv_wscale).min(i32::MAX as u64)) as i32
    }

    fn acceptable(&self, seq: SeqNum, seg_len: usize) -> bool {
        let wnd = self.rcv_wnd();
        let nxt = self.rcv_nxt;
        match (seg_len, wnd) {
            (0, 0) => seq == nxt,
            (0, _) => seq.in_window(nxt, wnd as usize),
            (_, 0) => false,
            (len, _) => {
                seq.in_window(nxt, wnd as usize) || (seq + (len - 1)).in_window(nxt, wnd as usize)
                // Segments that start before rcv_nxt and carry new data are
                // acceptable too: their old part is trimmed.
                || (seq < nxt && seq + len > nxt)
            }
        }
    }

    /// Answers an invalid segment with an ACK; a pure ACK (`seg_len` 0) at
    /// most once per `INVALID_ACK_INTERVAL_MICROS`, else two ends that disagree
    /// (after a forged segment) answer each other's ACKs forever.
    fn ack_invalid(&mut self, seg_len: usize, now: Instant) {
        if seg_len == 0 {
            let recent = self
                .invalid_acked_at
                .is_some_and(|at| now.as_micros().saturating_sub(at.as_micros()) < INVALID_ACK_INTERVAL_MICROS);
            if recent {
                return;
            }
            self.invalid_acked_at = Some(now);
        }
        self.ack_now = true;
    }

    fn on_reset(&mut self, seq: SeqNum, stats: &mut TcpStats) {
        if seq != self.rcv_nxt {
            // RFC 5961 §3.2: an in-window RST that is not exact gets a challenge.
            stats.challenge_acks += 1;
            self.ack_now = true;
            return;
        }
        stats.resets_received += 1;
        let err = match self.state {
            State::SynReceived if self.passive => None,
            State::SynReceived => Some(TcpError::ConnectionRefused),
            State::Closing | State::LastAck | State::TimeWait => None,
            _ => Some(TcpError::ConnectionReset),
        };
        self.enter_closed(err);
    }

    fn on_segment_time_wait(&mut self, seg: &TcpRepr, now: Instant) {
        if seg.flags.contains(TcpFlags::RST) {
            // RFC 1337: ignore RSTs in TIME-WAIT.
            return;
        }
        if seg.flags.contains(TcpFlags::FIN) {
            // The peer did not get our last ACK: acknowledge again, restart 2·MSL.
            self.ack_now = true;
            self.timewait_deadline = self.deadline_at(now + self.cfg.time_wait);
        }
    }

    /// The ACK field (RFC 9293 §3.10.7.4, fifth check). Returns false when the
    /// segment is to be dropped.
    fn process_ack(&mut self, seg: &TcpRepr, data_len: usize, now: Instant, stats: &mut TcpStats) -> bool {
        let ack = SeqNum(seg.ack);
        let seq = SeqNum(seg.seq);
        if ack > self.snd_max {
            stats.ack_of_unsent += 1;
            self.ack_invalid(data_len, now);
            return false;
        }
        if ack < self.snd_una - self.max_snd_wnd {
            // RFC 5961 §5.2: older than any window the peer could have sent
            // it in. Blind data injection needs a guessed ACK to pass here as
            // well as a guessed sequence number; Linux drops such segments
            // too (`tcp_ack`, "too old ack").
            stats.too_old_acks += 1;
            self.ack_invalid(data_len, now);
            return false;
        }
        // The peer answers: a probe of its closed window may go on.
        self.persist_unanswered = 0;
        let window = u32::from(seg.window) << self.snd_wscale;
        let window_changed = window != self.snd_wnd;

        let mut newly_sacked = 0;
        let mut delivery = Delivery::default();
        let mut dsack = None;
        if ack > self.snd_una {
            // Before the SACK blocks: what they report lies above it.
            self.sent.on_cumulative_ack(ack, &mut delivery);
        }
        if self.sack_enabled && seg.options.sack_count > 0 {
            let blocks = &seg.options.sack_blocks[..usize::from(seg.options.sack_count.min(4))];
            let update = self.scoreboard.update(ack.max(self.snd_una).0, self.snd_max.0, blocks);
            newly_sacked = update.newly_sacked_bytes;
            if update.dsack {
                stats.dsacks_received += 1;
                dsack = Some(blocks[0]);
            }
            for &(start, end) in &blocks[usize::from(update.dsack)..] {
                self.sent.on_sack_block(SeqNum(start), SeqNum(end), &mut delivery);
            }
        }

        if ack > self.snd_una {
            self.on_new_ack(seg, ack, &delivery, dsack.is_some(), now, stats);
        } else if ack == self.snd_una && window > 0 && self.snd_max > self.snd_una {
            // RFC 5681 §2: a pure duplicate (same window, no data, no FIN); RFC
            // 6675 §2: with SACK, any ACK at SND.UNA that SACKs new data counts,
            // whatever its window (Linux grows its window on nearly every ACK
            // while it autotunes, so window equality alone would miss them).
            let pure = data_len == 0 && !seg.flags.contains(TcpFlags::FIN) && !window_changed;
            if pure || (self.sack_enabled && newly_sacked > 0) {
                self.on_duplicate_ack(now, stats);
            }
        }
        if let Some(block) = dsack {
            self.on_dsack(block, stats);
        }
        if self.sack_enabled && self.state.synchronized() && self.snd_max > self.snd_una {
            self.detect_losses(&delivery, now, stats);
            if self.in_recovery && newly_sacked > 0 {
                // The ACK clock runs: the probe waits for it to stop.
                self.arm_tail_loss_probe(now);
            }
        }

        // Window update (RFC 9293 §3.10.7.4: SND.WL1 / SND.WL2 rule).
        if self.snd_wl1 < seq || (self.snd_wl1 == seq && self.snd_wl2 <= ack) {
            let was_zero = self.snd_wnd == 0;
            self.snd_wnd = window;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            if window == 0 && self.snd_max > self.snd_una && self.state.synchronized() {
                // The peer closed its window with data in flight: that data was
                // refused, not lost. Probe instead of timing out, so the
                // connection lives as long as the peer answers (RFC 9293 §3.8.6.1).
                self.rto_deadline = None;
                self.tlp_deadline = None;
                self.arm_persist(now);
            }
            if was_zero && window > 0 {
                self.persist_deadline = None;
                self.persist_backoffs = 0;
                if self.snd_max > self.snd_una && self.rto_deadline.is_none() {
                    // Send again what the closed window refused: it left the
                    // network. SND.MAX, not SND.NXT: after a timeout with SACK
                    // only retransmissions may be out, with SND.NXT back at
                    // SND.UNA, and they count in the pipe until marked lost.
                    self.snd_nxt = self.snd_una;
                    self.sent.mark_all_lost();
                    if self.sack_enabled {
                        // It goes out again from the loss marks within the
                        // congestion window, as after a timeout but with no
                        // congestion to answer: a fast recovery's rate
                        // reduction would wait for deliveries, and this ACK
                        // reported none. `on_recovery_exit` is not called:
                        // the congestion window is already `ssthresh` (set
                        // when the recovery began; PRR paced the sending,
                        // not `cwnd`), and a recovery cut short by a closed
                        // window does not count as one that ended for the
                        // reordering window's persistence (RFC 8985 §6.2).
                        self.in_recovery = false;
                        self.dupacks = 0;
                        self.recover = self.snd_max;
                        self.rto_recovery = true;
                    }
                    // And under the retransmission timer, whatever the output
                    // pass can send now.
                    self.arm_rto(now);
                }
            }
        }
        true
    }

    fn on_new_ack(
        &mut self,
        seg: &TcpRepr,
        ack: SeqNum,
        delivery: &Delivery,
        dsack: bool,
        now: Instant,
        stats: &mut TcpStats,
    ) {
        let acked = (ack - self.snd_una) as usize;
        let flight_before = (self.snd_max - self.snd_una) as usize;
        self.take_rtt_sample(seg, delivery, dsack, now, stats);
        self.detect_spurious_timeout(seg, stats);
        self.on_probe_answered(ack, dsack, now, stats);

        // Bytes of SYN and FIN occupy sequence space but not the send queue.
        let syn_acked = self.snd_una == self.iss;
        let data_end = self.data_end_seq();
        let fin_acked = self.fin_queued && ack > data_end;
        let data_acked = acked - usize::from(syn_acked) - usize::from(fin_acked);
        self.sendbuf.consume(data_acked);
        self.snd_una = ack;
        if self.snd_nxt < ack {
            self.snd_nxt = ack;
        }
        self.scoreboard.advance_una(ack.0);
        self.backoffs = 0;
        self.persist_unanswered = 0;
        if self.snd_wnd > 0 {
            // An open window: the persist timer's backoff was for a refused
            // send, which this ACK shows is over.
            self.persist_backoffs = 0;
        }
        if data_acked > 0 {
            self.events |= Readiness::WRITABLE;
        }

        if self.rto_recovery && ack >= self.recover {
            self.rto_recovery = false;
        }
        if self.in_recovery {
            if ack >= self.recover {
                // Full acknowledgement: recovery is over (RFC 6582 §3.2 step 3).
                self.in_recovery = false;
                self.dupacks = 0;
                self.inflation = 0;
                self.cc.on_recovery_exit();
                self.rack.on_recovery_exit();
            } else if !self.sack_enabled {
                // Partial ACK (RFC 6582 §3.2 step 4): retransmit the next hole and
                // deflate the inflated window by what was acknowledged.
                self.retransmit_head = true;
                self.inflation = self.inflation.saturating_sub(acked) + self.payload_mss();
                stats.partial_acks += 1;
            }
        } else {
            self.dupacks = 0;
            let rtt_micros = self.rtt.srtt_micros();
            self.cc.on_ack(now.as_micros(), acked as u32, rtt_micros, flight_before as u32);
        }

        // The retransmission timer restarts on new data acknowledged (RFC 6298 §5.3).
        if self.snd_una == self.snd_max {
            self.rto_deadline = None;
            self.tlp_deadline = None;
            self.rack_deadline = None;
        } else {
            self.arm_rto(now);
            self.arm_tail_loss_probe(now);
        }

        if fin_acked {
            match self.state {
                State::FinWait1 => {
                    self.state = State::FinWait2;
                    self.arm_fin_wait_2(now);
                }
                State::Closing => self.enter_time_wait(now),
                State::LastAck => self.enter_closed(None),
                _ => {}
            }
        }
    }

    fn on_duplicate_ack(&mut self, now: Instant, stats: &mut TcpStats) {
        self.dupacks += 1;
        stats.dup_acks_received += 1;
        if self.sack_enabled {
            // SACK senders mark losses segment by segment (`detect_losses`).
            return;
        }
        if self.in_recovery {
            // Each duplicate means a segment left the network (RFC 6582).
            self.inflation += self.payload_mss();
            return;
        }
        // RFC 6582 §3.2 step 2: only start a new recovery for losses after the
        // previous one (avoids multiple reductions per window).
        let after_previous =
            self.snd_una - self.recover > 0 || self.recover == self.iss || self.snd_una == self.recover;
        if self.dupacks >= DUP_ACK_THRESHOLD && after_previous {
            self.enter_recovery(now, stats);
        }
    }

    /// Marks the segments an ACK shows lost, by RACK or by DupThresh as
    /// configured, and starts a recovery when the first one is.
    fn detect_losses(&mut self, delivery: &Delivery, now: Instant, stats: &mut TcpStats) {
        let mut marked = match self.cfg.loss.detection {
            LossDetection::Rack => {
                self.rack.on_delivery(delivery, now);
                self.rack_detect(now, stats)
            }
            LossDetection::DupThresh => self.sent.mark_lost_by_count(DUP_THRESH as usize),
        };
        // Three duplicate ACKs mark the first segment lost: with DupThresh
        // always (RFC 6675 §5), with RACK only for a peer that negotiated SACK
        // but reports no blocks, which gives RACK nothing to order by.
        let blind = self.cfg.loss.detection == LossDetection::DupThresh || self.scoreboard.ranges().is_empty();
        let episode = self.in_recovery || self.rto_recovery;
        if blind && self.dupacks >= DUP_ACK_THRESHOLD && !episode && self.sent.mark_first_lost() {
            marked += 1;
        }
        self.after_losses_marked(marked, delivery.bytes, now, stats);
    }

    /// RFC 8985 §6.2 step 5 with the current reordering window; arms the
    /// reordering timer for segments not yet due. Returns the segments marked.
    fn rack_detect(&mut self, now: Instant, stats: &mut TcpStats) -> u32 {
        let srtt = self.rtt.srtt().unwrap_or_default();
        let reo_wnd = self.rack.reo_wnd(self.in_recovery, srtt);
        let (marked, next) = self.rack.detect_loss(&mut self.sent, reo_wnd, now);
        self.rack_deadline = next.and_then(|at| self.deadline_at(at));
        stats.rack_lost_marks += u64::from(marked);
        marked
    }

    /// Starts a recovery for newly marked losses, and gives PRR what was
    /// delivered.
    fn after_losses_marked(&mut self, marked: u32, delivered: usize, now: Instant, stats: &mut TcpStats) {
        // Segments marked lost during a recovery that ended before their
        // retransmission (they lay above its recovery point) start the next
        // one: nothing else would send them before the RTO.
        let episode = self.in_recovery || self.rto_recovery;
        if !episode && (marked > 0 || self.sent.has_lost()) {
            self.enter_recovery(now, stats);
        }
        if self.in_recovery && self.sack_enabled {
            let mss = self.payload_mss();
            self.prr.on_ack(delivered, self.sent.pipe(), self.cc.ssthresh() as usize, mss);
        }
    }

    fn enter_recovery(&mut self, now: Instant, stats: &mut TcpStats) {
        let flight = (self.snd_max - self.snd_una) as usize;
        self.begin_undo_episode(None);
        self.in_recovery = true;
        self.recover = self.snd_max;
        self.cc.on_congestion_event(now.as_micros(), flight as u32);
        self.tlp_deadline = None;
        if self.sack_enabled {
            self.prr.start(flight);
        } else {
            self.retransmit_head = true;
            self.inflation = DUP_ACK_THRESHOLD as usize * self.payload_mss();
        }
        stats.fast_retransmits += 1;
    }

    /// A new loss episode: remembers the window it is about to reduce.
    fn begin_undo_episode(&mut self, rto_tsval: Option<u32>) {
        // A timeout inside an episode keeps the window from before the episode.
        // Eifel compares with the first retransmission of the timeout.
        if let Some(undo) = self.undo.as_mut().filter(|u| u.marker == self.snd_una && rto_tsval.is_some()) {
            undo.rto_tsval = undo.rto_tsval.or(rto_tsval);
            return;
        }
        self.undo =
            Some(Undo { cc: self.cc.clone(), retransmissions: 0, dsacked: false, marker: self.snd_una, rto_tsval });
    }

    /// Restores the window from before the episode, if it was larger.
    fn undo_reduction(&mut self) -> bool {
        let Some(undo) = self.undo.take() else { return false };
        if undo.cc.cwnd() > self.cc.cwnd() {
            self.cc = undo.cc;
        }
        true
    }

    /// A D-SACK: the peer received `block` twice. When every retransmission
    /// of the current episode was so reported, the episode was spurious
    /// (RFC 3708 §3.2) and its reduction is undone.
    ///
    /// A D-SACK of the last retransmitting tail loss probe says the original
    /// had arrived and only its ACK was late: the peer delays its ACKs longer
    /// than the probe timeout allowed. The allowance doubles (up to RFC 8985's
    /// WCDelAckT, 200 ms, what Linux always adds), so a peer that keeps
    /// delaying stops drawing a probe and a D-SACK per reply, the feedback
    /// that cost a loaded server half its rate (docs/loss-recovery.md).
    fn on_dsack(&mut self, block: (u32, u32), stats: &mut TcpStats) {
        self.rack.on_dsack(self.snd_una, self.snd_max);
        if let Some((start, end)) = self.tlp_retransmitted
            && SeqNum(block.0) < end
            && start < SeqNum(block.1)
        {
            self.tlp_retransmitted = None;
            self.tlp_ack_allowance_micros =
                (u64::from(self.tlp_ack_allowance_micros) * 2).clamp(1, TLP_ACK_DELAY_MAX_MICROS) as u32;
            stats.tlp_spurious += 1;
        }
        let segments = ((SeqNum(block.1) - SeqNum(block.0)).max(1) as usize).div_ceil(self.payload_mss().max(1));
        let Some(undo) = self.undo.as_mut() else { return };
        if SeqNum(block.0) < undo.marker || undo.retransmissions == 0 {
            return;
        }
        undo.retransmissions = undo.retransmissions.saturating_sub(segments as u32);
        undo.dsacked = true;
        if undo.retransmissions == 0 && self.undo_reduction() {
            self.end_spurious_episode();
            stats.dsack_undos += 1;
        }
    }

    /// Eifel (RFC 3522 §3.2, response of RFC 4015): the first ACK of new data
    /// after a timeout echoes a timestamp older than the retransmission, so it
    /// answers the original: the timeout was spurious. The window comes back
    /// and the segments deemed lost are in flight again.
    fn detect_spurious_timeout(&mut self, seg: &TcpRepr, stats: &mut TcpStats) {
        let Some(rto_tsval) = self.undo.as_mut().and_then(|u| u.rto_tsval.take()) else { return };
        let Some((_, ts_ecr)) = seg.options.timestamps.filter(|_| self.ts_enabled) else { return };
        if (ts_ecr.wrapping_sub(rto_tsval) as i32) < 0 && self.undo_reduction() {
            self.end_spurious_episode();
            stats.spurious_timeouts_undone += 1;
        }
    }

    /// Leaves a recovery or timeout that proved spurious: nothing more is
    /// retransmitted for it, and the restored window applies at once.
    fn end_spurious_episode(&mut self) {
        self.rto_recovery = false;
        self.in_recovery = false;
        self.retransmit_head = false;
        self.inflation = 0;
        self.sent.unmark_lost();
    }

    /// RFC 8985 §7.4: the ACK of a tail loss probe. If the probe was a
    /// retransmission and no D-SACK says the original arrived, it repaired a
    /// loss, and the window is reduced as for any loss.
    fn on_probe_answered(&mut self, ack: SeqNum, dsack: bool, now: Instant, stats: &mut TcpStats) {
        let Some((end, retransmission)) = self.tlp_probe else { return };
        if ack < end {
            return;
        }
        self.tlp_probe = None;
        if retransmission && !dsack && !self.in_recovery {
            let flight = (self.snd_max - self.snd_una) as usize;
            self.begin_undo_episode(None);
            self.cc.on_congestion_event(now.as_micros(), flight as u32);
            stats.tlp_recoveries += 1;
        }
    }

    /// RFC 6298 §3 (Karn), RFC 7323 §4 and the connection's own send times:
    /// a sample is the time since the first transmission of the earliest
    /// segment this ACK newly acknowledges, taken when none of them was
    /// retransmitted; or, with timestamps, since the last copy of a
    /// retransmitted one when the echo names that copy and not its first
    /// (copies sent within one 1 ms timestamp tick of each other can make
    /// such a sample short by less than a tick, never long). No sample from
    /// an ACK with a D-SACK, or whose echo predates the transmission timed
    /// (an old or forged echo) or lies in the future.
    fn take_rtt_sample(&mut self, seg: &TcpRepr, delivery: &Delivery, dsack: bool, now: Instant, stats: &mut TcpStats) {
        let ts_ecr = seg.options.timestamps.filter(|_| self.ts_enabled).map(|(_, ecr)| ecr);
        let sent_at = match (delivery.rtt_from, delivery.last_retransmission, ts_ecr) {
            (Some(sent_at), ..) => sent_at,
            (None, Some((last, first)), Some(ecr)) if ecr == self.ts_now(last) && ecr != self.ts_now(first) => last,
            _ => return,
        };
        if dsack {
            stats.rtt_samples_rejected += 1;
            return;
        }
        if let Some(ts_ecr) = ts_ecr {
            let echoes_before_send = (ts_ecr.wrapping_sub(self.ts_now(sent_at)) as i32) < 0;
            let echoes_the_future = (self.ts_now(now).wrapping_sub(ts_ecr) as i32) < 0;
            if echoes_before_send || echoes_the_future {
                stats.rtt_samples_rejected += 1;
                return;
            }
        }
        self.rtt.on_sample(now.saturating_duration_since(sent_at));
    }

    fn receive_data(&mut self, seq: SeqNum, mut data: PacketBuf, now: Instant, stats: &mut TcpStats) {
        // Trim what was already received.
        let mut seq = seq;
        if seq < self.rcv_nxt {
            let dup = (self.rcv_nxt - seq) as usize;
            // RFC 2883 §4: the part received before goes in a D-SACK.
            self.note_duplicate(seq.0, (seq + dup.min(data.len())).0);
            self.ack_now = true;
            if dup >= data.len() {
                stats.duplicate_segments += 1;
                return;
            }
            data.advance(dup);
            seq = self.rcv_nxt;
        }
        // Trim what lies beyond the window.
        let wnd_end = self.rcv_adv.max(self.rcv_nxt);
        let room = (wnd_end - seq).max(0) as usize;
        if data.len() > room {
            stats.beyond_window_bytes += (data.len() - room) as u64;
            data.truncate(room);
        }
        if data.is_empty() {
            self.ack_now = true;
            return;
        }
        // Under pool pressure: nothing is held when frames are critical, and
        // nothing out of order when they are tight; the peer resends it.
        let pressure = self.pool_pressure();
        if pressure == PoolPressure::Critical || (pressure == PoolPressure::Tight && seq != self.rcv_nxt) {
            stats.rx_pool_pressure_drops += 1;
            if pressure == PoolPressure::Critical {
                // The window advertised before the pool ran short is more than
                // the pool can take: shrink it to zero and say so at once
                // (RFC 9293 §3.8.6: a receiver SHOULD NOT shrink its window,
                // SHLD-14, and a sender MUST be robust to it, MUST-34; short
                // of frames this one does, as Linux may since 6.5 with
                // `tcp_shrink_window`). A sender that kept
                // retransmitting into the old window, unanswered, would give
                // up while the application is slow to read; told of a zero
                // window it probes, and each probe's ACK says when the pool
                // has room again (`rcv_space` is zero while it is critical).
                self.rcv_adv = self.rcv_nxt;
                self.ack_now = true;
            }
            return;
        }
        if seq == self.rcv_nxt && !self.ready_has_room() {
            // The application is not reading and the queue is made of many
            // small chunks: drop (unacknowledged; the peer retransmits later).
            stats.rx_chunk_limit += 1;
            self.ack_now = true;
            return;
        }
        if seq == self.rcv_nxt {
            let had_holes = !self.ooo.is_empty();
            // Chunks held out of order follow this one into the read queue
            // each in the frame it arrived in: this frame stays shared while
            // they do, so none is copied into it (`push_ready`).
            let shared_while_draining = had_holes.then(|| data.clone());
            self.push_ready(data, stats);
            if had_holes {
                while let Some(next) = self.ooo.pop_contiguous(self.rcv_nxt.0) {
                    self.push_ready(next, stats);
                }
            }
            drop(shared_while_draining);
            self.events |= Readiness::READABLE;
            if had_holes || self.quick_acks > 0 {
                self.quick_acks = self.quick_acks.saturating_sub(1);
                self.ack_now = true;
            } else {
                self.unacked_segments += 1;
                if self.unacked_segments >= 2 {
                    self.ack_now = true;
                } else if self.delack_deadline.is_none() {
                    self.delack_deadline = self.deadline_at(now + self.cfg.delayed_ack);
                }
            }
            if !self.ooo.is_empty() {
                self.sack_blocks.advance(self.rcv_nxt.0);
            } else {
                self.sack_blocks.clear();
            }
        } else {
            // Out of order: hold it and acknowledge at once (RFC 5681 §4.2).
            stats.out_of_order_segments += 1;
            let data_len = data.len();
            let end = seq + data_len;
            match self.ooo.insert(seq.0, data, self.rcv_nxt.0, wnd_end.0) {
                InsertOutcome::Stored { .. } => self.sack_blocks.on_segment(seq.0, end.0, self.ooo.ranges()),
                InsertOutcome::Full => stats.ooo_queue_full += 1,
                InsertOutcome::Duplicate => {
                    // RFC 2883 §4.1.2: the D-SACK first, then the block holding it.
                    stats.duplicate_segments += 1;
                    self.note_duplicate(seq.0, end.0);
                    self.sack_blocks.on_segment(seq.0, end.0, self.ooo.ranges());
                }
                InsertOutcome::OutsideWindow => stats.beyond_window_bytes += data_len as u64,
            }
            self.ack_now = true;
        }
    }

    /// `[start, end)` arrived twice: a SACK peer hears of it in a D-SACK
    /// block on the next ACK (RFC 2883).
    fn note_duplicate(&mut self, start: u32, end: u32) {
        if self.sack_enabled {
            self.sack_blocks.on_duplicate(start, end);
        }
    }

    /// Appends in-order data to the read queue. A small segment is copied into
    /// the room after the previous chunk when no one else holds that frame, so a
    /// peer sending tiny segments cannot pin one frame per segment (Linux's
    /// receive coalescing; IX bounded this with a per-connection buffer limit).
    fn push_ready(&mut self, chunk: PacketBuf, stats: &mut TcpStats) {
        let len = chunk.len();
        self.rcv_nxt += len;
        self.ready_bytes += len;
        if len < COALESCE_BELOW_BYTES {
            if let Some(tail) = self.ready.pop_back() {
                match tail.try_into_mut() {
                    Ok(mut tail) if tail.tailroom() >= len => {
                        tail.extend_from_slice(&chunk).expect("room checked");
                        self.ready.push_back(tail.freeze());
                        stats.rx_coalesced += 1;
                        return;
                    }
                    Ok(tail) => self.ready.push_back(tail.freeze()),
                    Err(tail) => self.ready.push_back(tail),
                }
            }
        }
        self.ready.push_back(chunk);
    }

    /// Whether the read queue may take one more chunk.
    fn ready_has_room(&self) -> bool {
        self.ready.len() < self.cfg.max_rx_chunks
    }

    fn try_consume_fin(&mut self, now: Instant) {
        let Some(fin) = self.fin_seq else { return };
        if fin != self.rcv_nxt || self.fin_received {
            return;
        }
        self.rcv_nxt += 1u32;
        self.fin_received = true;
        self.fin_seq = None;
        self.ack_now = true;
        self.events |= Readiness::READABLE;
        match self.state {
            State::SynReceived | State::Established => self.state = State::CloseWait,
            State::FinWait1 => {
                if self.fin_acked() {
                    self.enter_time_wait(now);
                } else {
                    self.state = State::Closing;
                }
            }
            State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }

    fn fin_acked(&self) -> bool {
        // Once SND.UNA passes the FIN, `data_end_seq` (counted from SND.UNA)
        // moves past it too: the states after the FIN's ACK say it instead.
        matches!(self.state, State::FinWait2 | State::TimeWait) || self.fin_queued && self.snd_una > self.data_end_seq()
    }

    /// Sequence number just past the last data byte queued (where a FIN goes).
    fn data_end_seq(&self) -> SeqNum {
        self.data_start_seq() + self.sendbuf.len()
    }

    /// Sequence number of the first byte in the send queue.
    fn data_start_seq(&self) -> SeqNum {
        if self.snd_una == self.iss { self.iss + 1u32 } else { self.snd_una }
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.rto_deadline = None;
        self.persist_deadline = None;
        self.keepalive_deadline = None;
        self.delack_deadline = None;
        self.timewait_deadline = self.deadline_at(now + self.cfg.time_wait);
        self.rack_deadline = None;
        self.tlp_deadline = None;
        self.events |= Readiness::READABLE | Readiness::WRITABLE;
    }

    fn enter_closed(&mut self, err: Option<TcpError>) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        if err.is_some() {
            self.error = err;
        }
        self.rto_deadline = None;
        self.persist_deadline = None;
        self.keepalive_deadline = None;
        self.delack_deadline = None;
        self.timewait_deadline = None;
        self.rack_deadline = None;
        self.tlp_deadline = None;
        self.ooo.clear();
        self.events |= Readiness::READABLE | Readiness::WRITABLE | Readiness::CLOSED;
    }

    fn last_rx_activity(&mut self, now: Instant) {
        self.keepalive_probes = 0;
        if self.keepalive_deadline.is_some() {
            self.arm_keepalive(now);
        }
    }

    // ----- timers ----------------------------------------------------------

    /// The earliest instant at which [`Conn::on_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Pairwise, not `[..].into_iter().flatten().min()`: that spilled the
        // array and stalled on store forwarding (10% of a request/response profile).
        let earlier = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timers = earlier(self.rto_deadline, self.delack_deadline);
        let timers = earlier(timers, self.persist_deadline);
        let timers = earlier(timers, earlier(self.rack_deadline, self.tlp_deadline));
        earlier(earlier(timers, self.keepalive_deadline), self.timewait_deadline)
    }

    /// Records `at` as a deadline just set and returns it, for the field.
    fn deadline_at(&mut self, at: Instant) -> Option<Instant> {
        if self.new_deadline.is_none_or(|earliest| at < earliest) {
            self.new_deadline = Some(at);
        }
        Some(at)
    }

    /// The earliest deadline set since the last call, if any. A timer armed
    /// no later than every deadline stays so while this returns `None` or a
    /// later instant: deadlines that are cleared or pushed back only make it
    /// fire early. After a timer fired, [`Conn::renew_deadlines`] reports
    /// every remaining deadline again.
    pub(crate) fn take_new_deadline(&mut self) -> Option<Instant> {
        self.new_deadline.take()
    }

    /// Makes the next [`Conn::take_new_deadline`] report the earliest of all
    /// deadlines ([`Conn::poll_timeout`]): for the stack whose timer for this
    /// connection fired and is no longer armed.
    pub(crate) fn renew_deadlines(&mut self) {
        self.new_deadline = self.poll_timeout();
    }

    /// Runs every timer due at `now`.
    pub fn on_timeout(&mut self, now: Instant, stats: &mut TcpStats) {
        self.run_due_timers(now, stats);
        self.ensure_timer(false, now, stats);
    }

    fn run_due_timers(&mut self, now: Instant, stats: &mut TcpStats) {
        if self.timewait_deadline.is_some_and(|d| d <= now) {
            self.timewait_deadline = None;
            if self.state == State::FinWait2 {
                // Silently, as Linux does: a late segment of the peer's finds
                // no connection.
                stats.fin_wait_2_timeouts += 1;
            }
            self.enter_closed(None);
            return;
        }
        if self.rto_deadline.is_some_and(|d| d <= now) {
            self.rto_deadline = None;
            self.on_retransmit_timeout(now, stats);
        }
        if self.rack_deadline.is_some_and(|d| d <= now) {
            self.rack_deadline = None;
            let marked = self.rack_detect(now, stats);
            self.after_losses_marked(marked, 0, now, stats);
        }
        if self.tlp_deadline.is_some_and(|d| d <= now) {
            self.tlp_deadline = None;
            self.tlp_pending = true;
        }
        if self.delack_deadline.is_some_and(|d| d <= now) {
            self.delack_deadline = None;
            if self.unacked_segments > 0 {
                self.ack_now = true;
                stats.delayed_acks += 1;
            }
        }
        if self.persist_deadline.is_some_and(|d| d <= now) {
            self.persist_deadline = None;
            if self.persist_unanswered >= self.cfg.max_retransmits {
                // RFC 1122 §4.2.3.5: the peer stopped answering (or, for a
                // refused send, could never be reached): give up as after
                // the last retransmission timeout (Linux: `tcp_retries2`
                // unanswered zero-window probes).
                self.give_up(stats);
                return;
            }
            self.persist_unanswered += 1;
            self.probe_pending = true;
            self.persist_backoffs += 1;
            if self.snd_wnd == 0 {
                // Else the timer calls out data the output path refused.
                stats.window_probes += 1;
            }
        }
        if self.keepalive_deadline.is_some_and(|d| d <= now) {
            self.keepalive_deadline = None;
            self.on_keepalive_timeout(now, stats);
        }
    }

    /// The peer went unanswering for as long as the configuration allows:
    /// the connection ends with [`TcpError::TimedOut`] (a RST if it was
    /// synchronized, for a peer that comes back).
    fn give_up(&mut self, stats: &mut TcpStats) {
        stats.timeouts += 1;
        self.rst_pending = self.state.synchronized();
        self.enter_closed(Some(TcpError::TimedOut));
    }

    fn on_retransmit_timeout(&mut self, now: Instant, stats: &mut TcpStats) {
        let limit = match self.state {
            State::SynSent | State::SynReceived => self.cfg.syn_retries,
            _ => self.cfg.max_retransmits,
        };
        if self.backoffs >= limit {
            self.give_up(stats);
            return;
        }
        self.backoffs += 1;
        self.rtt.backoff();
        stats.retransmit_timeouts += 1;
        if self.state.synchronized() {
            let tsval = self.ts_enabled.then(|| self.ts_now(now));
            self.begin_undo_episode(tsval);
        }
        let flight = (self.snd_max - self.snd_una) as usize;
        if self.state.synchronized() && flight > 0 {
            self.cc.on_retransmit_timeout(now.as_micros(), flight as u32);
        }
        self.in_recovery = false;
        self.dupacks = 0;
        self.inflation = 0;
        self.recover = self.snd_max;
        self.retransmit_head = false;
        self.tlp_deadline = None;
        self.tlp_pending = false;
        self.tlp_probe = None;
        self.rack_deadline = None;
        if self.sack_enabled && self.state.synchronized() {
            // Every segment not SACKed is deemed lost and retransmitted in
            // order as the slow-start window allows (RFC 6675 §5.1, RFC 8985
            // §6.3); new data waits until they are.
            self.sent.mark_all_lost();
            self.rto_recovery = true;
        } else {
            // Go back to the oldest unacknowledged byte (RFC 6298 §5.4).
            self.snd_nxt = self.snd_una;
        }
        self.arm_rto(now);
    }

    fn on_keepalive_timeout(&mut self, now: Instant, stats: &mut TcpStats) {
        let Some(ka) = self.cfg.keepalive else { return };
        if !matches!(self.state, State::Established | State::CloseWait) {
            return;
        }
        if self.keepalive_probes >= ka.probes {
            stats.timeouts += 1;
            self.rst_pending = true;
            self.enter_closed(Some(TcpError::TimedOut));
            return;
        }
        self.keepalive_probes += 1;
        self.probe_pending = true;
        stats.keepalive_probes += 1;
        self.keepalive_deadline = self.deadline_at(now + ka.interval);
    }

    fn arm_fin_wait_2(&mut self, now: Instant) {
        if self.orphaned && self.state == State::FinWait2 && self.timewait_deadline.is_none() {
            self.timewait_deadline = self.deadline_at(now + self.cfg.fin_wait_2_timeout);
        }
    }

    fn arm_rto(&mut self, now: Instant) {
        self.rto_deadline = self.deadline_at(now.saturating_add_micros(self.rtt.rto_micros()));
    }

    fn arm_keepalive(&mut self, now: Instant) {
        if let Some(ka) = self.cfg.keepalive {
            self.keepalive_deadline = self.deadline_at(now + ka.idle);
        }
    }

    fn arm_persist(&mut self, now: Instant) {
        if self.persist_deadline.is_none() {
            let base = self.rtt.rto_micros();
            let backoff = base.saturating_mul(1 << self.persist_backoffs.min(16)).min(PERSIST_MAX_MICROS);
            self.persist_deadline = self.deadline_at(now + Duration::from_micros(backoff));
        }
    }

    /// Defence in depth for the rules above: a connection with data or a FIN
    /// outstanding must have the RTO or the persist timer armed, or nothing
    /// will ever move it (no ACK is owed to it, and it sends nothing of its
    /// own). Checked after every output pass (`after_output`), and after every
    /// segment and timer unless an output pass is due (it sends, or arms a
    /// timer for what it cannot send, and is checked after). Finding
    /// none is a bug of those rules, counted in `missing_timer_rearms` (the
    /// fuzz harness fails on it); the connection gets the timer that fits and
    /// goes on, as Linux re-arms its retransmission timer on every ACK while
    /// anything is in flight. Cheap on the common path: the first test fails
    /// while the RTO is armed.
    #[inline]
    fn ensure_timer(&mut self, after_output: bool, now: Instant, stats: &mut TcpStats) {
        if self.rto_deadline.is_some() || self.persist_deadline.is_some() {
            return;
        }
        if !matches!(
            self.state,
            State::Established | State::CloseWait | State::FinWait1 | State::Closing | State::LastAck
        ) {
            return;
        }
        let in_flight = self.snd_max > self.snd_una;
        let fin_outstanding = self.fin_queued && !self.fin_acked();
        if !(in_flight || fin_outstanding || self.has_unsent_data()) || !after_output && self.wants_output() {
            return;
        }
        self.rearm_missing_timer(in_flight, now, stats);
    }

    #[cold]
    #[inline(never)]
    fn rearm_missing_timer(&mut self, in_flight: bool, now: Instant, stats: &mut TcpStats) {
        stats.missing_timer_rearms += 1;
        if in_flight && self.snd_wnd > 0 {
            self.arm_rto(now);
        } else {
            self.arm_persist(now);
        }
    }

    // ----- segment output --------------------------------------------------

    /// Whether the connection has something to send now (for the stack's list of
    /// connections to visit in egress). Inlined: the stack asks after every
    /// segment that arrives.
    #[inline]
    pub fn wants_output(&self) -> bool {
        // A closed connection sends nothing but a pending RST (`poll_transmit`),
        // whatever ACK or probe was owed when it closed.
        if self.state == State::Closed {
            return self.rst_pending;
        }
        self.ack_now
            || self.rst_pending
            || self.probe_pending
            || self.retransmit_head
            || (self.in_recovery || self.rto_recovery) && self.sack_enabled
            || self.tlp_pending
            || matches!(self.state, State::SynSent | State::SynReceived) && self.snd_nxt == self.iss
            || self.has_unsent_data()
            || self.fin_queued && self.snd_nxt <= self.data_end_seq() && self.state.synchronized() && !self.fin_acked()
    }

    fn has_unsent_data(&self) -> bool {
        self.state.synchronized() && self.snd_nxt < self.data_end_seq()
    }

    /// Emits every segment the connection may send now: a RST, the SYN or
    /// SYN-ACK, retransmissions, new data within the windows, a FIN, a probe,
    /// or a bare ACK.
    pub fn poll_transmit(&mut self, now: Instant, sink: &mut impl SegmentSink, stats: &mut TcpStats) {
        self.transmit(now, sink, stats);
        self.ensure_timer(true, now, stats);
    }

    fn transmit(&mut self, now: Instant, sink: &mut impl SegmentSink, stats: &mut TcpStats) {
        if self.rst_pending {
            self.rst_pending = false;
            let header = self.header(now, self.snd_max, TcpFlags::RST | TcpFlags::ACK, false);
            if self.send_header_only(&header, sink) {
                stats.resets_sent += 1;
            }
            self.enter_closed(self.error.or(Some(TcpError::ConnectionAborted)));
            return;
        }
        match self.state {
            State::Closed => return,
            State::SynSent | State::SynReceived => {
                if self.snd_nxt == self.iss {
                    self.send_syn(now, sink, stats);
                }
                if self.state == State::SynSent || !self.ack_now {
                    return;
                }
            }
            _ => {}
        }
        let mut sent_any = false;
        if self.retransmit_head {
            sent_any |= self.retransmit_first_hole(now, sink, stats);
        }
        if (self.in_recovery || self.rto_recovery) && self.sack_enabled {
            sent_any |= self.retransmit_lost(now, sink, stats);
        }
        sent_any |= self.send_new_data(now, sink, stats);
        if sent_any && self.tlp_probe.is_none() {
            self.arm_tail_loss_probe(now);
        }
        if self.tlp_pending {
            self.tlp_pending = false;
            sent_any |= self.send_tail_loss_probe(now, sink, stats);
        }
        if self.probe_pending {
            self.probe_pending = false;
            // A segment already sent asks the peer for an ACK as a probe would.
            if !sent_any {
                sent_any |= self.send_probe(now, sink, stats);
            }
        }
        if self.ack_now && !sent_any {
            // SND.MAX, not SND.NXT: after a timeout SND.NXT goes back, but the
            // peer may already hold everything up to SND.MAX.
            let header = self.header(now, self.snd_max, TcpFlags::ACK, true);
            if self.send_header_only(&header, sink) {
                self.after_ack_sent(stats);
                stats.acks_sent += 1;
            }
        }
    }

    fn send_syn(&mut self, now: Instant, sink: &mut impl SegmentSink, stats: &mut TcpStats) {
        let mut flags = TcpFlags::SYN;
        if self.state == State::SynReceived {
            flags |= TcpFlags::ACK;
        }
        let mut repr = match self.header(now, self.iss, flags, self.state == State::SynReceived) {
            SegmentHeader::Full(repr) => repr,
            SegmentHeader::Templated(fields) => self.full_header(&fields),
        };
        repr.options.mss = Some(self.cfg.mss);
        let offer = self.state == State::SynSent;
        if self.cfg.window_scaling && (offer || self.rcv_wscale != 0 || self.snd_wscale != 0) {
            repr.options.window_scale = Some(self.rcv_wscale);
        }
        // A SYN's window is never scaled (RFC 7323 §2.2).
        repr.window = self.rcv_space().min(65_535) as u16;
        if self.cfg.sack && (offer || self.sack_enabled) {
            repr.options.sack_permitted = true;
        }
        if self.cfg.timestamps && offer {
            repr.options.timestamps = Some((self.ts_now(now), 0));
        }
        if self.send_header_only(&SegmentHeader::Full(repr), sink) {
            self.snd_nxt = self.iss + 1u32;
            self.snd_max = self.snd_max.max(self.snd_nxt);
            if self.backoffs > 0 {
                stats.retransmitted_segments += 1;
                stats.syn_retransmits += 1;
            }
            self.sent.on_send(self.iss, self.iss + 1u32, now);
            if self.rto_deadline.is_none() {
                self.arm_rto(now);
            }
            self.after_ack_sent(stats);
            stats.segments_sent += 1;
        }
    }

    /// The header of a segment at `seq` with `flags`, with the current ACK
    /// (when `with_ack` or `flags` has ACK), window and per-segment options.
    #[inline]
    fn header(&mut self, now: Instant, seq: SeqNum, flags: TcpFlags, with_ack: bool) -> SegmentHeader {
        let fields = self.header_fields(now, seq, flags, with_ack);
        let holding = !self.ooo.is_empty();
        if self.sack_enabled && flags.contains(TcpFlags::ACK) && self.sack_blocks.report_len(holding) > 0 {
            let mut repr = self.full_header(&fields);
            let (blocks, n) = self.sack_blocks.report(holding);
            repr.options.sack_blocks = blocks;
            repr.options.sack_count = n as u8;
            return SegmentHeader::Full(repr);
        }
        SegmentHeader::Templated(fields)
    }

    /// The fields of a header at `seq` with `flags`: the ACK and window (when
    /// `with_ack` or `flags` has ACK) and the timestamps (when on).
    #[inline]
    fn header_fields(&mut self, now: Instant, seq: SeqNum, flags: TcpFlags, with_ack: bool) -> TcpHeaderFields {
        let (mut ack, mut window) = (0, 0);
        if with_ack || flags.contains(TcpFlags::ACK) {
            ack = self.rcv_nxt.0;
            window = self.window_field();
        }
        let timestamps = if self.ts_enabled { (self.ts_now(now), self.ts_recent) } else { (0, 0) };
        TcpHeaderFields { seq: seq.0, ack, flags, window, timestamps }
    }

    /// `fields` as a full header, with the timestamps if on and no other option.
    fn full_header(&self, fields: &TcpHeaderFields) -> TcpRepr {
        TcpRepr {
            src_port: self.tuple.local.port(),
            dst_port: self.tuple.remote.port(),
            seq: fields.seq,
            ack: fields.ack,
            flags: fields.flags,
            window: fields.window,
            urgent: 0,
            options: TcpOptions { timestamps: self.ts_enabled.then_some(fields.timestamps), ..TcpOptions::default() },
            payload_offset: 0,
        }
    }

    /// Sends a segment of `header` and no payload; false when no frame was free.
    fn send_header_only(&self, header: &SegmentHeader, sink: &mut impl SegmentSink) -> bool {
        let template = &self.tcp_header;
        sink.segment(&self.tuple, header.len(template), &mut |segment| header.emit(template, segment))
    }

    fn ts_now(&self, now: Instant) -> u32 {
        ((now.as_micros() / TS_TICK_MICROS) as u32).wrapping_add(self.ts_offset)
    }

    fn after_ack_sent(&mut self, stats: &mut TcpStats) {
        if self.sack_blocks.on_reported() {
            stats.dsacks_sent += 1;
        }
        self.ack_now = false;
        self.unacked_segments = 0;
        self.delack_deadline = None;
        self.last_ack_sent = self.rcv_nxt;
    }

    /// Sends one data segment `[seq, seq+len)` from the send queue, with a FIN
    /// when it reaches the end of the data and the FIN is queued.
    fn send_segment(
        &mut self,
        seq: SeqNum,
        len: usize,
        now: Instant,
        sink: &mut impl SegmentSink,
        stats: &mut TcpStats,
    ) -> bool {
        let data_end = self.data_end_seq();
        let fin = self.fin_queued && seq + len == data_end;
        let mut flags = TcpFlags::ACK;
        if fin {
            flags |= TcpFlags::FIN;
        }
        if len > 0 && seq + len == data_end {
            flags |= TcpFlags::PSH;
        }
        let header = self.header(now, seq, flags, true);
        let offset = (seq - self.data_start_seq()) as usize;
        let (template, sendbuf) = (&self.tcp_header, &mut self.sendbuf);
        let header_len = header.len(template);
        let mut write = |segment: &mut [u8]| {
            header.emit(template, segment);
            sendbuf.copy_out(offset, &mut segment[header_len..]);
        };
        if !sink.segment(&self.tuple, header_len + len, &mut write) {
            // The output path refused the segment (the packet pool is empty,
            // or the neighbour's ARP queue is full): it never left. With no
            // RTO armed, no ACK and no timeout (RFC 9293 §3.8.1, RFC 6298
            // §5.1: armed by a segment sent) calls it out again, so the
            // persist timer does, backing off while the refusals last and
            // ending the connection at `max_retransmits` (Linux arms its
            // probe timer in this case too). Here, not at each caller: new
            // data, retransmissions and probes are all refused the same way.
            stats.output_stalled += 1;
            if self.rto_deadline.is_none() {
                self.arm_persist(now);
            }
            return false;
        }
        let end = seq + len + usize::from(fin);
        let retransmission = seq < self.snd_max;
        if retransmission {
            stats.retransmitted_segments += 1;
            stats.retransmitted_bytes += len as u64;
            if let Some(undo) = self.undo.as_mut() {
                undo.retransmissions += 1;
            }
        }
        self.sent.on_send(seq, end, now);
        if self.in_recovery && self.sack_enabled {
            self.prr.on_sent(len.max(1));
        }
        if end > self.snd_max {
            self.snd_max = end;
        }
        stats.segments_sent += 1;
        stats.bytes_sent += len as u64;
        if self.rto_deadline.is_none() {
            self.arm_rto(now);
            if self.snd_wnd > 0 {
                // The RTO covers what is in flight now: a persist timer that a
                // refused send armed (only ever with no RTO armed) has no job
                // left; it is for a zero window with nothing in flight
                // (RFC 9293 §3.8.6.1).
                self.persist_deadline = None;
            }
        }
        self.after_ack_sent(stats);
        if fin && matches!(self.state, State::Established | State::SynReceived) {
            self.state = State::FinWait1;
        } else if fin && self.state == State::CloseWait {
            self.state = State::LastAck;
        }
        true
    }

    /// Bytes in the network by the estimate recovery uses.
    fn flight(&self) -> usize {
        (self.snd_nxt - self.snd_una).max(0) as usize
    }

    /// Bytes in flight and the room the congestion window leaves for a
    /// segment of `mss`. With SACK the flight is the pipe (SACKed and lost
    /// segments do not count, which is limited transmit, RFC 3042, and more),
    /// and in recovery PRR decides (RFC 6937). Without SACK, RFC 3042 lets the
    /// first two duplicate ACKs each send one new segment past the window.
    fn congestion_room(&self, mss: usize) -> (usize, usize) {
        if self.sack_enabled {
            let pipe = self.sent.pipe();
            if self.in_recovery {
                return (pipe, if self.prr.may_send() { mss } else { 0 });
            }
            if self.rto_recovery && self.sent.has_lost() {
                return (pipe, 0); // retransmissions first (`retransmit_lost`)
            }
            return (pipe, (self.cc.cwnd() as usize).saturating_sub(pipe));
        }
        let limited_transmit = if self.in_recovery { 0 } else { self.dupacks.min(2) as usize * mss };
        let cwnd = self.cc.cwnd() as usize + self.inflation + limited_transmit;
        let flight = self.flight();
        (flight, cwnd.saturating_sub(flight))
    }

    /// Sends new data (and a FIN) as far as the congestion and peer windows and
    /// Nagle allow.
    fn send_new_data(&mut self, now: Instant, sink: &mut impl SegmentSink, stats: &mut TcpStats) -> bool {
        if !self.state.synchronized() && self.state != State::SynReceived {
            return false;
        }
        if self.state == State::SynReceived {
            return false;
        }
        let mss = self.segment_payload_limit();
        let mut sent = false;
        loop {
            let data_end = self.data_end_seq();
            let fin_unsent = self.fin_queued && self.snd_nxt <= data_end && !self.fin_acked();
            let avail = (data_end - self.snd_nxt).max(0) as usize;
            if avail == 0 && !fin_unsent {
                break;
            }
            // Skip ranges the peer already has (after an RTO with SACK).
            if self.sack_enabled
                && avail > 0
                && self.snd_nxt < self.snd_max
                && self.scoreboard.is_sacked(self.snd_nxt.0)
            {
                let next = self.sacked_range_end(self.snd_nxt);
                self.snd_nxt = next.min(self.snd_max).min(data_end);
                continue;
            }
            let (in_flight, cwnd_room) = self.congestion_room(mss);
            let wnd_end = self.snd_una + self.snd_wnd as usize;
            let peer_room = (wnd_end - self.snd_nxt).max(0) as usize;
            let mut len = avail.min(mss).min(peer_room).min(cwnd_room);
            if len == 0 && avail > 0 {
                if self.snd_wnd == 0 && self.snd_una == self.snd_max {
                    self.arm_persist(now);
                }
                break;
            }
            // Sender-side silly window avoidance and Nagle (RFC 9293 §3.8.6.2.1).
            if len < mss && len < avail {
                let half_max = (self.max_snd_wnd as usize / 2).max(1);
                if len < half_max && self.snd_nxt != self.snd_una {
                    break;
                }
            }
            if len < mss && len == avail && !self.cfg.nodelay && self.snd_nxt != self.snd_una && !fin_unsent {
                break;
            }
            if avail == 0 {
                len = 0; // a bare FIN
                if cwnd_room == 0 && in_flight > 0 {
                    break;
                }
            }
            let seq = self.snd_nxt;
            if !self.send_segment(seq, len, now, sink, stats) {
                break; // refused: `send_segment` left a timer
            }
            sent = true;
            let fin_now = self.fin_queued && seq + len == data_end;
            self.snd_nxt = seq + len + usize::from(fin_now);
            // Everything queued is out and no FIN is to follow: the next
            // round of the loop would find nothing to send.
            if fin_now || (!self.fin_queued && self.snd_nxt == data_end) {
                break;
            }
        }
        sent
    }

    /// Retransmits the segment at `SND.UNA` (fast retransmit, NewReno partial ACK).
    fn retransmit_first_hole(&mut self, now: Instant, sink: &mut impl SegmentSink, stats: &mut TcpStats) -> bool {
        self.retransmit_head = false;
        let data_end = self.data_end_seq();
        let seq = self.data_start_seq().max(self.snd_una);
        let len = ((data_end - seq).max(0) as usize).min(self.segment_payload_limit());
        let fin_only = len == 0 && self.fin_queued && self.snd_max > data_end;
        if len == 0 && !fin_only {
            return false;
        }
        let ok = self.send_segment(seq, len, now, sink, stats);
        if ok {
            self.arm_rto(now);
        }
        ok
    }

    /// Retransmits the segments deemed lost, lowest first, as PRR (in
    /// recovery) or the slow-start window (after a timeout) allows.
    fn retransmit_lost(&mut self, now: Instant, sink: &mut impl SegmentSink, stats: &mut TcpStats) -> bool {
        let mss = self.payload_mss();
        let mut sent = false;
        while let Some((start, end)) = self.sent.first_lost() {
            let room = if self.in_recovery {
                self.prr.may_send()
            } else {
                self.sent.pipe() + mss <= (self.cc.cwnd() as usize).max(mss)
            };
            if !room {
                break;
            }
            let data_end = self.data_end_seq();
            let seq = start.max(self.data_start_seq());
            let len = ((end.min(data_end) - seq).max(0) as usize).min(self.segment_payload_limit());
            let fin_only = len == 0 && self.fin_queued && seq == data_end;
            if (len == 0 && !fin_only) || !self.send_segment(seq, len, now, sink, stats) {
                break;
            }
            sent = true;
        }
        sent
    }

    /// Schedules a tail loss probe at about two smoothed RTTs (RFC 8985
    /// §7.2), unless a timeout's retransmissions are under way, a probe is
    /// out, or the retransmission timer would fire first.
    ///
    /// RFC 8985 §7.2 (and Linux) arm no probe during a fast recovery, trusting
    /// the ACKs of the recovery's own transmissions to show RACK what else was
    /// lost. When those ACKs are lost too, only the timeout is left: issue
    /// #13's captures at 10% loss found most of the sender's timeouts there
    /// (a Linux receiver answers a burst it takes from its socket backlog with
    /// a single ACK, and that one was lost). So a probe is armed in recovery
    /// as well: one segment restarts the ACK clock 2·SRTT after it stopped,
    /// where the timeout would wait 200 ms and collapse the window.
    fn arm_tail_loss_probe(&mut self, now: Instant) {
        self.tlp_deadline = None;
        let usable = self.cfg.loss.detection == LossDetection::Rack
            && self.sack_enabled
            && self.state.synchronized()
            && !self.rto_recovery
            && self.tlp_probe.is_none()
            && self.snd_max > self.snd_una;
        let Some(srtt_micros) = self.rtt.srtt_micros().filter(|_| usable) else { return };
        let one_segment = (self.snd_max - self.snd_una) as usize <= self.payload_mss() + 1;
        let extra_micros = if one_segment { u64::from(self.tlp_ack_allowance_micros) } else { TLP_SLACK_MICROS };
        let at = now.saturating_add_micros(srtt_micros.saturating_mul(2).saturating_add(extra_micros));
        if self.rto_deadline.is_none_or(|rto| at < rto) {
            self.tlp_deadline = self.deadline_at(at);
        }
    }

    /// RFC 8985 §7.3: a new segment if the peer's window allows one, else the
    /// highest segment sent again; either way an ACK with SACK comes back and
    /// lets RACK find what the tail lost.
    fn send_tail_loss_probe(&mut self, now: Instant, sink: &mut impl SegmentSink, stats: &mut TcpStats) -> bool {
        let data_end = self.data_end_seq();
        let avail = (data_end - self.snd_nxt).max(0) as usize;
        let peer_room = ((self.snd_una + self.snd_wnd as usize) - self.snd_nxt).max(0) as usize;
        let (seq, len, retransmission) = if avail > 0 && peer_room > 0 && self.snd_nxt == self.snd_max {
            (self.snd_nxt, avail.min(peer_room).min(self.segment_payload_limit()), false)
        } else if let Some((start, end)) = self.sent.last() {
            let seq = start.max(self.data_start_seq());
            (seq, ((end.min(data_end) - seq).max(0) as usize).min(self.segment_payload_limit()), true)
        } else {
            return false;
        };
        if len == 0 && !(self.fin_queued && seq == data_end) {
            return false;
        }
        if !self.send_segment(seq, len, now, sink, stats) {
            return false;
        }
        if retransmission {
            self.tlp_retransmitted = Some((seq, seq + len.max(1) as u32));
        } else {
            self.snd_nxt = self.snd_max;
        }
        self.tlp_probe = Some((self.snd_max, retransmission));
        stats.tlp_probes += 1;
        self.arm_rto(now);
        true
    }

    /// A zero-window probe (one byte of new data) or a keepalive probe (an old
    /// sequence number with no data, eliciting an ACK).
    fn send_probe(&mut self, now: Instant, sink: &mut impl SegmentSink, stats: &mut TcpStats) -> bool {
        let data_end = self.data_end_seq();
        if self.snd_wnd == 0 && (self.snd_una < data_end || self.snd_una < self.snd_max) {
            // Every probe carries the same first unacknowledged byte (new data,
            // or data the closed window refused after it was sent; the FIN when
            // only the FIN is left), and the persist timer alone repeats it: an
            // answered probe is no loss, and the connection stays open while the
            // peer answers (RFC 9293 §3.8.6.1). The timer is armed again whether
            // or not the probe could leave: it is what ends the connection if
            // the peer never answers (`persist_unanswered`).
            let len = usize::from(self.snd_una < data_end);
            let ok = self.send_segment(self.snd_una, len, now, sink, stats);
            self.rto_deadline = None;
            self.arm_persist(now);
            return ok;
        }
        let header = self.header(now, self.snd_una - 1u32, TcpFlags::ACK, true);
        self.send_header_only(&header, sink)
    }
}

impl Conn {
    /// End of the SACKed range holding `seq` (`seq + 1` if none does).
    fn sacked_range_end(&self, seq: SeqNum) -> SeqNum {
        self.scoreboard
            .ranges()
            .iter()
            .find(|&&(start, end)| SeqNum(start) <= seq && seq < SeqNum(end))
            .map_or(seq + 1u32, |&(_, end)| SeqNum(end))
    }
}

/// Whether the right edge of the receive window moves from `adv` to `edge`,
/// RCV.NXT being `nxt`: by at least `threshold` bytes, or by any amount when
/// the window is closed (receiver-side silly window avoidance, RFC 9293
/// §3.8.6.2.2). True for an edge implies true for every edge further right.
fn right_edge_moves(nxt: SeqNum, adv: SeqNum, edge: SeqNum, threshold: usize) -> bool {
    let grown = edge - adv;
    grown > 0 && (grown as usize >= threshold || adv <= nxt)
}

/// The least RCV.NXT − RCV.ADV at which [`right_edge_moves`] holds for an
/// edge `most` bytes past RCV.NXT, with `threshold` no larger than `most`.
fn edge_move_offset(most: usize, threshold: usize) -> i32 {
    threshold.max(1) as i32 - most as i32
}

/// The smallest window shift that lets `buffer` bytes be advertised.
pub(crate) fn window_shift_for(buffer: u32) -> u8 {
    let mut shift = 0;
    while shift < MAX_WINDOW_SHIFT && (65_535u64 << shift) < u64::from(buffer) {
        shift += 1;
    }
    shift
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use proptest::prelude::*;

    use super::*;

    /// Keeps the segments a connection sends.
    struct Capture(Vec<Vec<u8>>);

    impl SegmentSink for Capture {
        fn segment(&mut self, _tuple: &FourTuple, len: usize, write: &mut dyn FnMut(&mut [u8])) -> bool {
            let mut segment = vec![0; len];
            write(&mut segment);
            self.0.push(segment);
            true
        }
    }

    /// `ensure_timer`, the net under the timer rules: a connection with data
    /// in flight whose timers were all lost (no rule of this file does that
    /// any more; this test clears the RTO by hand) gets the RTO back after its
    /// next segment, the loss is counted, and the data is sent again when it
    /// fires.
    #[test]
    fn a_connection_left_without_a_timer_gets_one_back_and_is_counted() {
        let tuple = FourTuple {
            local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40_000),
            remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80),
        };
        let cfg = TcpConfig { timestamps: false, sack: false, window_scaling: false, ..TcpConfig::default() };
        let (iss, irs) = (1_000u32, 5_000u32);
        let mut now = Instant::ZERO;
        let mut conn = Conn::connect(&cfg, tuple, SeqNum(iss), now, 0);
        let (mut stats, mut wire) = (TcpStats::default(), Capture(Vec::new()));
        conn.poll_transmit(now, &mut wire, &mut stats);
        let segment = |seq: u32, ack: u32, flags: TcpFlags| TcpRepr {
            src_port: 80,
            dst_port: 40_000,
            seq,
            ack,
            flags,
            window: 65_535,
            urgent: 0,
            options: TcpOptions { mss: Some(1460), ..TcpOptions::default() },
            payload_offset: 0,
        };
        conn.on_segment(&segment(irs, iss + 1, TcpFlags::SYN | TcpFlags::ACK), None, now, &mut stats);
        assert_eq!(conn.state(), State::Established);
        conn.send_bytes(Bytes::from_static(&[7; 100])).unwrap();
        conn.poll_transmit(now, &mut wire, &mut stats);
        assert!(conn.rto_deadline.is_some(), "the data in flight is under the RTO");
        conn.rto_deadline = None;
        now = now.saturating_add_micros(10_000);
        // A pure ACK of nothing new, with another window: the general path.
        let mut ack = segment(irs + 1, iss + 1, TcpFlags::ACK);
        ack.window = 30_000;
        conn.on_segment(&ack, None, now, &mut stats);
        assert_eq!(stats.missing_timer_rearms, 1);
        let rto = conn.rto_deadline.expect("the RTO is back");
        let sent = wire.0.len();
        conn.on_timeout(rto, &mut stats);
        conn.poll_transmit(rto, &mut wire, &mut stats);
        assert_eq!(wire.0.len(), sent + 1, "the data goes out again when it fires");
        assert_eq!(stats.retransmitted_segments, 1);
        assert_eq!(stats.missing_timer_rearms, 1, "and the RTO it armed covers it from then on");
    }

    proptest! {
        /// `window_edge_may_move` rests on this: an edge that moves stays
        /// moving when the edge is further right (both within the span of
        /// windows a connection can advertise).
        #[test]
        fn a_right_edge_that_moves_moves_further_right(
            nxt in any::<u32>(),
            adv_offset in -(1i64 << 29)..(1i64 << 30),
            space in 0u32..(1 << 29),
            more in 0u32..(1 << 29),
            threshold in 0usize..(1 << 20),
        ) {
            let nxt = SeqNum(nxt);
            let adv = SeqNum(nxt.0.wrapping_add(adv_offset as u32));
            if right_edge_moves(nxt, adv, nxt + space, threshold) {
                prop_assert!(right_edge_moves(nxt, adv, nxt + space + more, threshold));
            }
        }

        /// `window_edge_may_move`'s one comparison says what the rule says
        /// for the edge of a wholly free buffer: anywhere, and next to where
        /// the rule turns (RCV.NXT − RCV.ADV = threshold − most, one more for
        /// a threshold of 0).
        #[test]
        fn the_edge_move_offset_agrees_with_the_rule(
            nxt in any::<u32>(),
            anywhere in -(1i64 << 30)..(1i64 << 30),
            near_the_turn in any::<bool>(),
            step in -2i64..=2,
            most in 0usize..(1 << 30),
            threshold in 0usize..(1 << 20),
            small_threshold in any::<bool>(),
        ) {
            let threshold = if small_threshold { threshold % 3 } else { threshold }.min(most);
            let distance = if near_the_turn { threshold as i64 - most as i64 + step } else { anywhere };
            let nxt = SeqNum(nxt);
            let adv = SeqNum(nxt.0.wrapping_sub(distance as u32));
            prop_assert_eq!(
                nxt - adv >= edge_move_offset(most, threshold),
                right_edge_moves(nxt, adv, nxt + most, threshold)
            );
        }
    }
}
