//! Which accepted sockets the broker takes on: the connection limits, a bound on sockets that
//! have not finished their handshake, and a per-source-address rate of new connections. All are
//! checked at accept, before any TLS or WebSocket work, so a flood costs the broker an
//! `accept` and a `close` per socket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::Broker;

/// Source addresses whose recent connections are remembered. Beyond it, addresses whose buckets
/// are full again are forgotten; if none are, new addresses are let through (a flood from
/// this many addresses is not one the per-address limit can stop anyway).
const MAX_TRACKED_ADDRESSES: usize = 16_384;
/// How often a refusal is logged per listener at most; the rest are counted in that line.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a socket was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `listeners[].max_connections` or `limits.max_connections`.
    ConnectionLimit,
    /// `limits.max_pending_connections` sockets are still before CONNECT.
    TooManyPending,
    /// The source address exceeded `limits.connect_rate_per_ip`.
    RateLimited,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::ConnectionLimit => "connection limit reached",
            Refusal::TooManyPending => "too many connections still before CONNECT",
            Refusal::RateLimited => "too many new connections from one address",
        }
    }
}

/// New connections per second allowed from each source address: a token bucket per address,
/// holding one second's worth.
#[derive(Default)]
pub(crate) struct ConnectRate {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl ConnectRate {
    /// Takes a token for a connection from `ip` at `now`, at `per_sec` connections per second
    /// (0 lets everything through; a reload may change it); false when it has none left.
    pub(crate) fn admit(&self, ip: IpAddr, now: Instant, per_sec: u32) -> bool {
        if per_sec == 0 {
            return true;
        }
        let rate = f64::from(per_sec);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&ip) {
            buckets.retain(|_, b| b.level(now, rate) < rate);
            if buckets.len() >= MAX_TRACKED_ADDRESSES {
                return true;
            }
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: rate,
            refilled: now,
        });
        bucket.tokens = bucket.level(now, rate);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Bucket {
    /// Tokens after refilling at `rate` per second since the last refill, capped at `rate`.
    fn level(&self, now: Instant, rate: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        (self.tokens + elapsed * rate).min(rate)
    }
}

/// Decides whether an accepted socket is served, for one listener.
pub(crate) struct Admission {
    /// The listener's position in the config, for its `max_connections`.
    listener: usize,
    /// Connections open on this listener.
    open: Arc<AtomicUsize>,
    /// Refusals since the last log line, and when that was.
    unlogged: u64,
    logged: Option<Instant>,
}

impl Admission {
    pub(crate) fn new(listener: usize) -> Self {
        Admission {
            listener,
            open: Arc::new(AtomicUsize::new(0)),
            unlogged: 0,
            logged: None,
        }
    }

    /// Takes the socket's place in every count, or says why it is refused. The place is given
    /// back when the returned slot drops, whether or not the socket was admitted.
    pub(crate) fn admit(
        &mut self,
        broker: &Arc<Broker>,
        ip: IpAddr,
    ) -> (ConnectionSlot, Result<(), Refusal>) {
        let per_listener = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        let total = broker.metrics.sockets_open.fetch_add(1, Ordering::Relaxed) + 1;
        let slot = ConnectionSlot {
            broker: broker.clone(),
            listener: self.open.clone(),
        };
        let limits = &broker.limits;
        let listener_max = limits.listener_max(self.listener);
        let max_pending = limits.max_pending_connections();
        let verdict = if (listener_max > 0 && per_listener > listener_max)
            || total > limits.max_connections()
        {
            Err(Refusal::ConnectionLimit)
        } else if max_pending > 0
            && broker.metrics.handshakes_pending.load(Ordering::Relaxed) >= max_pending
        {
            Err(Refusal::TooManyPending)
        } else if !broker
            .connect_rate
            .admit(ip, Instant::now(), limits.connect_rate_per_ip())
        {
            Err(Refusal::RateLimited)
        } else {
            Ok(())
        };
        (slot, verdict)
    }

    /// Logs a refusal, at most once per [`REFUSAL_LOG_INTERVAL`], with the count since the last
    /// line: a flood must not flood the log too.
    pub(crate) fn log_refusal(&mut self, refusal: Refusal, ip: IpAddr, listener: &str) {
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .logged
            .is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            peer = %ip,
            listener,
            reason = refusal.reason(),
            refused = self.unlogged,
            "connection refused: {}",
            refusal.reason()
        );
        self.unlogged = 0;
        self.logged = Some(now);
    }
}

/// A socket's place in the listener's and the broker's connection counts; given back on drop.
pub(crate) struct ConnectionSlot {
    broker: Arc<Broker>,
    listener: Arc<AtomicUsize>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.listener.fetch_sub(1, Ordering::Relaxed);
        self.broker
            .metrics
            .sockets_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket's place among those still before CONNECT; given back when its handshake ends.
pub(crate) struct PendingSlot(Arc<Broker>);

impl PendingSlot {
    pub(crate) fn take(broker: &Arc<Broker>) -> Self {
        broker
            .metrics
            .handshakes_pending
            .fetch_add(1, Ordering::Relaxed);
        PendingSlot(broker.clone())
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.0
            .metrics
            .handshakes_pending
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_allows_a_second_of_burst_then_refills() {
        let rate = ConnectRate::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "2001:db8::1".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..3).all(|_| rate.admit(ip, t0, 3)));
        assert!(!rate.admit(ip, t0, 3));
        assert!(rate.admit(other, t0, 3), "addresses have their own buckets");
        // 0.9 tokens after 300 ms, 2.1 after 700 ms.
        assert!(!rate.admit(ip, t0 + Duration::from_millis(300), 3));
        let t1 = t0 + Duration::from_millis(700);
        assert!(rate.admit(ip, t1, 3) && rate.admit(ip, t1, 3));
        assert!(!rate.admit(ip, t1, 3));
        let later = t0 + Duration::from_secs(10);
        assert!(
            (0..3).all(|_| rate.admit(ip, later, 3)),
            "refills to one second's worth"
        );
        assert!(!rate.admit(ip, later, 3));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let rate = ConnectRate::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..10_000).all(|_| rate.admit(ip, Instant::now(), 0)));
        assert!(rate.buckets.lock().unwrap().is_empty());
    }

    #[test]
    fn tracked_addresses_are_bounded() {
        let rate = ConnectRate::default();
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED_ADDRESSES as u32 + 10 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(rate.admit(ip, t0, 1));
        }
        assert!(rate.buckets.lock().unwrap().len() <= MAX_TRACKED_ADDRESSES);
        // A second later every bucket is full again and may be forgotten.
        let t1 = t0 + Duration::from_secs(1);
        assert!(rate.admit("192.0.2.9".parse().unwrap(), t1, 1));
        assert!(rate.buckets.lock().unwrap().len() < 10);
    }
}
