//! Broker-wide counters: plain atomics, read by `$SYS` and, later, the HTTP API.

use portable_atomic::AtomicU64;

/// Counters since start. Connection tasks add to them once per batch, not per packet.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open sockets, including ones that have not sent CONNECT yet.
    pub sockets_open: std::sync::atomic::AtomicUsize,
    /// Sockets still in their TLS or WebSocket handshake or waiting for CONNECT.
    pub handshakes_pending: std::sync::atomic::AtomicUsize,
    /// Clients with a completed CONNECT.
    pub clients_connected: AtomicU64,
    /// Highest number of connected clients seen.
    pub clients_maximum: AtomicU64,
    /// PUBLISH packets received (wills included).
    pub messages_received: AtomicU64,
    /// PUBLISH packets sent.
    pub messages_sent: AtomicU64,
    /// Bytes read from sockets.
    pub bytes_received: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_sent: AtomicU64,
    /// Messages dropped because a session queue was full.
    pub messages_dropped: AtomicU64,
    /// Messages dropped because their expiry ran out before delivery.
    pub messages_expired: AtomicU64,
    /// CONNECTs refused by authentication: anonymous, bad credentials, or no verification slot.
    pub connects_refused_auth: AtomicU64,
    /// PUBLISHes, wills and subscription filters the ACL denied.
    pub acl_denied: AtomicU64,
}
