//! Per-stack TCP settings, with defaults a production stack would pick.

use std::time::Duration;

use super::cc::CongestionAlgorithm;
use super::recovery::LossConfig;
use super::rtt::RttConfig;

/// Keepalive probing (RFC 9293 §3.8.4), off unless configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveConfig {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between unanswered probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is declared dead.
    pub probes: u32,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        // Linux's defaults: 2 hours, 75 s, 9 probes.
        Self { idle: Duration::from_secs(7200), interval: Duration::from_secs(75), probes: 9 }
    }
}

/// TCP settings shared by every connection of a stack.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpConfig {
    /// MSS we advertise and the upper bound of what we send: MTU − 40.
    pub mss: u16,
    /// Receive buffer per connection: bytes queued plus bytes the application
    /// holds. The advertised window never exceeds what is left of it.
    pub recv_buffer_bytes: u32,
    /// Send queue per connection.
    pub send_buffer_bytes: u32,
    /// Out-of-order segments held per connection before new ones are refused.
    pub max_ooo_segments: usize,
    /// Chunks (frames) the read queue of one connection holds at most; small
    /// segments are coalesced first, so only a peer that sends many
    /// medium-sized segments to an application that does not read meets it.
    pub max_rx_chunks: usize,
    /// Congestion control for new connections.
    pub congestion: CongestionAlgorithm,
    /// Disable Nagle's algorithm (the default: latency first, as IX).
    pub nodelay: bool,
    /// Longest an ACK is delayed.
    pub delayed_ack: Duration,
    /// Offer and accept timestamps (RFC 7323).
    pub timestamps: bool,
    /// Offer and accept SACK (RFC 2018).
    pub sack: bool,
    /// Offer and accept window scaling (RFC 7323).
    pub window_scaling: bool,
    /// RTO bounds and initial value (RFC 6298).
    pub rtt: RttConfig,
    /// Loss detection (RACK-TLP by default) and the tail loss probe.
    pub loss: LossConfig,
    /// Retransmission timeouts in a row before the connection is dropped.
    pub max_retransmits: u32,
    /// SYN or SYN-ACK retransmissions before giving up.
    pub syn_retries: u32,
    /// Keepalive, if enabled.
    pub keepalive: Option<KeepaliveConfig>,
    /// TIME-WAIT duration (2·MSL).
    pub time_wait: Duration,
    /// How long a connection whose handle the application released waits in
    /// FIN-WAIT-2 for the peer's FIN before it ends silently (Linux's
    /// `tcp_fin_timeout`). RFC 9293 sets no limit, so a peer that acknowledged
    /// our FIN and then went silent held the connection for ever. A connection
    /// still held (half closed with `tcp_shutdown`) waits as long as the
    /// application does.
    pub fin_wait_2_timeout: Duration,
    /// Accept queue bound per listener unless `listen` says otherwise.
    pub default_backlog: usize,
    /// Header prediction: the segment an established connection expects
    /// next (in order, only timestamps for options, an open window, no
    /// recovery under way) skips the checks whose outcome is then known and
    /// goes straight to its acknowledgement and its data, with the same
    /// result as the general path (counted in `header_predicted`). Off only
    /// to compare the two paths.
    pub header_prediction: bool,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            mss: 1460,
            recv_buffer_bytes: 256 * 1024,
            send_buffer_bytes: 256 * 1024,
            max_ooo_segments: 256,
            max_rx_chunks: 1024,
            congestion: CongestionAlgorithm::default(),
            nodelay: true,
            delayed_ack: Duration::from_millis(40),
            timestamps: true,
            sack: true,
            window_scaling: true,
            rtt: RttConfig::default(),
            loss: LossConfig::default(),
            max_retransmits: 15,
            syn_retries: 6,
            keepalive: None,
            time_wait: Duration::from_secs(60),
            fin_wait_2_timeout: Duration::from_secs(60),
            default_backlog: 1024,
            header_prediction: true,
        }
    }
}
