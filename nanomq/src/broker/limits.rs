//! The limits a reload changes while the broker runs: those read when a socket is accepted and
//! when its CONNECT is answered. Each is one atomic, read with relaxed ordering, and none is read
//! on the publish path, which stays as fast as before. Connections already open keep what they
//! negotiated; the limits that are negotiated per session or per packet (maximum packet size,
//! receive maximum, in-flight and queue sizes, topic aliases) take effect after a restart.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::config::{Config, LimitsConfig};

/// `[limits]` values and per-listener `max_connections` that SIGHUP applies live.
pub struct LiveLimits {
    max_connections: AtomicUsize,
    max_pending_connections: AtomicUsize,
    connect_rate_per_ip: AtomicU32,
    connect_timeout_secs: AtomicU32,
    /// `min_keepalive` in the high half, `max_keepalive` in the low half: one atomic, so a
    /// CONNECT never sees the minimum of one config with the maximum of another.
    keepalive: AtomicU32,
    max_session_expiry_secs: AtomicU32,
    /// `listeners[i].max_connections`, by the listener's position in the config.
    listener_max: Vec<AtomicUsize>,
}

/// The `[limits]` keys [`LiveLimits::apply`] changes live.
pub const LIVE_LIMITS: [&str; 7] = [
    "max_connections",
    "max_pending_connections",
    "connect_rate_per_ip",
    "connect_timeout_secs",
    "min_keepalive",
    "max_keepalive",
    "max_session_expiry_secs",
];

impl LiveLimits {
    /// The limits of `config`, for a broker serving its listeners.
    pub fn new(config: &Config) -> LiveLimits {
        let limits = LiveLimits {
            max_connections: AtomicUsize::new(0),
            max_pending_connections: AtomicUsize::new(0),
            connect_rate_per_ip: AtomicU32::new(0),
            connect_timeout_secs: AtomicU32::new(0),
            keepalive: AtomicU32::new(0),
            max_session_expiry_secs: AtomicU32::new(0),
            listener_max: config
                .listeners
                .iter()
                .map(|l| AtomicUsize::new(l.max_connections))
                .collect(),
        };
        limits.apply_limits(&config.limits);
        limits
    }

    /// Applies a reloaded config: the [`LIVE_LIMITS`] keys, and each listener's
    /// `max_connections`, by position, when the number of listeners is the same (other changes
    /// to listeners wait for a restart). New sockets and CONNECTs
    /// see the new values; connections already open stay, even above a lowered limit.
    pub fn apply(&self, config: &Config) {
        self.apply_limits(&config.limits);
        if config.listeners.len() == self.listener_max.len() {
            for (slot, l) in self.listener_max.iter().zip(&config.listeners) {
                slot.store(l.max_connections, Ordering::Relaxed);
            }
        }
    }

    fn apply_limits(&self, l: &LimitsConfig) {
        let relaxed = Ordering::Relaxed;
        self.max_connections.store(l.max_connections, relaxed);
        self.max_pending_connections
            .store(l.max_pending_connections, relaxed);
        self.connect_rate_per_ip
            .store(l.connect_rate_per_ip, relaxed);
        let timeout = u32::try_from(l.connect_timeout_secs).unwrap_or(u32::MAX);
        self.connect_timeout_secs.store(timeout, relaxed);
        let keepalive = u32::from(l.min_keepalive) << 16 | u32::from(l.max_keepalive);
        self.keepalive.store(keepalive, relaxed);
        self.max_session_expiry_secs
            .store(l.max_session_expiry_secs, relaxed);
    }

    /// `limits.max_connections`.
    pub(crate) fn max_connections(&self) -> usize {
        self.max_connections.load(Ordering::Relaxed)
    }

    /// `limits.max_pending_connections`; 0 is unlimited.
    pub(crate) fn max_pending_connections(&self) -> usize {
        self.max_pending_connections.load(Ordering::Relaxed)
    }

    /// `limits.connect_rate_per_ip`; 0 is unlimited.
    pub(crate) fn connect_rate_per_ip(&self) -> u32 {
        self.connect_rate_per_ip.load(Ordering::Relaxed)
    }

    /// `limits.connect_timeout_secs`.
    pub(crate) fn connect_timeout_secs(&self) -> u64 {
        u64::from(self.connect_timeout_secs.load(Ordering::Relaxed))
    }

    /// `(limits.min_keepalive, limits.max_keepalive)`, from the same config.
    pub(crate) fn keepalive(&self) -> (u16, u16) {
        let both = self.keepalive.load(Ordering::Relaxed);
        ((both >> 16) as u16, both as u16)
    }

    /// `limits.max_session_expiry_secs`.
    pub(crate) fn max_session_expiry_secs(&self) -> u32 {
        self.max_session_expiry_secs.load(Ordering::Relaxed)
    }

    /// `listeners[index].max_connections`; 0 is only the broker-wide limit.
    pub(crate) fn listener_max(&self, index: usize) -> usize {
        self.listener_max
            .get(index)
            .map_or(0, |m| m.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_changes_every_live_limit() {
        let mut config = Config::default();
        let limits = LiveLimits::new(&config);
        assert_eq!(limits.max_connections(), 100_000);
        assert_eq!(limits.keepalive(), (0, 65535));
        let l = &mut config.limits;
        l.max_connections = 3;
        l.max_pending_connections = 4;
        l.connect_rate_per_ip = 5;
        l.connect_timeout_secs = u64::MAX;
        l.min_keepalive = 7;
        l.max_keepalive = 8;
        l.max_session_expiry_secs = 9;
        config.listeners[0].max_connections = 2;
        limits.apply(&config);
        assert_eq!(limits.max_connections(), 3);
        assert_eq!(limits.max_pending_connections(), 4);
        assert_eq!(limits.connect_rate_per_ip(), 5);
        assert_eq!(limits.connect_timeout_secs(), u64::from(u32::MAX));
        assert_eq!(limits.keepalive(), (7, 8));
        assert_eq!(limits.max_session_expiry_secs(), 9);
        assert_eq!((limits.listener_max(0), limits.listener_max(1)), (2, 0));
    }

    /// A different set of listeners needs a restart: their limits are left alone.
    #[test]
    fn listener_limits_need_the_same_listeners() {
        let mut config = Config::default();
        let limits = LiveLimits::new(&config);
        config.listeners[0].max_connections = 2;
        config.listeners.push(config.listeners[0].clone());
        limits.apply(&config);
        assert_eq!(limits.listener_max(0), 0);
    }
}
