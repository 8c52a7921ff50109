//! What every client task adds to while the benchmark runs: counters as atomics (updated once per
//! batch, not per message), latency histograms behind a mutex held for one batch of records, the
//! first failure, and the once-a-second progress line.

use std::sync::atomic::Ordering::Relaxed;

use portable_atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::task::JoinHandle;

use super::payload::monotonic_ns;
use super::report::human_rate;

/// Largest latency recorded exactly, in microseconds (a minute); longer ones are recorded as this.
const MAX_LATENCY_US: u64 = 60_000_000;

/// The measured window on the [`monotonic_ns`] clock: a message counts when it was sent inside.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    /// First nanosecond measured (end of the warm-up).
    pub(super) start_ns: u64,
    /// First nanosecond no longer measured.
    pub(super) end_ns: u64,
}

impl Window {
    /// The window that starts `warmup` seconds from now and lasts `duration` seconds.
    pub(super) fn after(warmup: f64, duration: f64) -> Window {
        let start_ns = monotonic_ns() + (warmup * 1e9) as u64;
        Window {
            start_ns,
            end_ns: start_ns + (duration * 1e9) as u64,
        }
    }

    /// True when a message sent at `sent_ns` is measured.
    pub(super) fn contains(&self, sent_ns: u64) -> bool {
        (self.start_ns..self.end_ns).contains(&sent_ns)
    }

    /// How long from now until `ns`, zero if it has passed: for `sleep`.
    pub(super) fn until(ns: u64) -> Duration {
        Duration::from_nanos(ns.saturating_sub(monotonic_ns()))
    }
}

/// Counters and histograms shared by all client tasks. "Measured" figures count only messages
/// sent inside the [`Window`]; the plain ones count everything, for the progress line.
#[derive(Debug)]
pub(super) struct Stats {
    /// Connections whose CONNACK arrived.
    pub(super) connected: AtomicU64,
    /// PUBLISHes written.
    pub(super) sent: AtomicU64,
    /// PUBLISHes received.
    pub(super) received: AtomicU64,
    /// PUBLISHes written inside the window.
    pub(super) sent_measured: AtomicU64,
    /// Deliveries due for the measured messages (each times the subscribers it is for).
    pub(super) expected: AtomicU64,
    /// Measured messages received, duplicates left out.
    pub(super) received_measured: AtomicU64,
    /// Measured messages received again.
    pub(super) duplicates: AtomicU64,
    /// Measured messages that arrived after a later one of the same publisher.
    pub(super) reordered: AtomicU64,
    /// Messages found missing from a publisher's sequence and not arrived since.
    pub(super) gaps: AtomicU64,
    /// End-to-end latency of measured messages, in microseconds.
    pub(super) latency: Mutex<Histogram<u64>>,
    /// From the start of the TCP connect to CONNACK, in microseconds.
    pub(super) connack: Mutex<Histogram<u64>>,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Stats {
    /// Everything at zero.
    pub(super) fn new() -> Stats {
        let histogram = || {
            Mutex::new(
                Histogram::new_with_max(MAX_LATENCY_US, 3).expect("3 significant digits is valid"),
            )
        };
        Stats {
            connected: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            sent_measured: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            received_measured: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            latency: histogram(),
            connack: histogram(),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    /// Records latencies in microseconds under one lock.
    pub(super) fn record(histogram: &Mutex<Histogram<u64>>, values_us: &[u64]) {
        let mut h = histogram.lock().unwrap_or_else(PoisonError::into_inner);
        for &v in values_us {
            h.saturating_record(v.min(MAX_LATENCY_US));
        }
    }

    /// A copy of a histogram, for the report.
    pub(super) fn snapshot(histogram: &Mutex<Histogram<u64>>) -> Histogram<u64> {
        histogram
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Counts a failed client, keeping the first error for the final message.
    pub(super) fn fail(&self, error: &anyhow::Error) {
        self.failed.fetch_add(1, Relaxed);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        first.get_or_insert_with(|| format!("{error:#}"));
    }

    /// How many clients failed, and the first error.
    pub(super) fn failures(&self) -> (u64, Option<String>) {
        let first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (self.failed.load(Relaxed), first)
    }
}

/// The progress line's task; stopped when dropped.
pub(super) struct Progress(JoinHandle<()>);

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Prints `sent/s received/s connected` on stderr every second while the returned guard lives.
pub(super) fn progress(stats: Arc<Stats>) -> Progress {
    Progress(tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let (mut sent, mut received) = (0, 0);
        loop {
            tick.tick().await;
            let (s, r) = (stats.sent.load(Relaxed), stats.received.load(Relaxed));
            eprintln!(
                "bench {:>4.0}s  sent {:>9}  received {:>9}  connected {}",
                started.elapsed().as_secs_f64(),
                human_rate((s - sent) as f64),
                human_rate((r - received) as f64),
                stats.connected.load(Relaxed),
            );
            (sent, received) = (s, r);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds() {
        let w = Window {
            start_ns: 100,
            end_ns: 200,
        };
        assert!(!w.contains(99) && w.contains(100) && w.contains(199) && !w.contains(200));
        assert_eq!(Window::until(0), Duration::ZERO);
        let w = Window::after(0.5, 1.0);
        assert_eq!(w.end_ns - w.start_ns, 1_000_000_000);
        assert!(Window::until(w.start_ns) > Duration::from_millis(400));
    }

    #[test]
    fn failures_keep_the_first_error() {
        let stats = Stats::new();
        assert_eq!(stats.failures(), (0, None));
        stats.fail(&anyhow::anyhow!("first"));
        stats.fail(&anyhow::anyhow!("second"));
        assert_eq!(stats.failures(), (2, Some("first".to_owned())));
    }

    #[test]
    fn latencies_beyond_the_maximum_are_capped() {
        let stats = Stats::new();
        Stats::record(&stats.latency, &[5, 10, u64::MAX]);
        let h = Stats::snapshot(&stats.latency);
        assert_eq!(h.len(), 3);
        assert!(h.max() >= MAX_LATENCY_US && h.max() < MAX_LATENCY_US * 11 / 10);
    }
}
