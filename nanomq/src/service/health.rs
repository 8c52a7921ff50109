//! Liveness of the broker's parts, for a watchdog that is fed only while the broker really works.
//!
//! Each component that must keep moving (every accept loop, the router, the store's writer
//! thread) registers once and beats: on its own work and on a tick of
//! [`Health::beat_period`], so an idle component still beats. The watchdog asks
//! [`Health::stale`] before each ping; a component wedged on a lock or a blocked thread stops
//! beating, the pings stop, and systemd restarts the broker.
//!
//! A component on a thread of its own beats the same way, e.g. a writer thread waiting on its
//! queue with `recv_timeout(health.beat_period())` and beating after every wake-up, commit or
//! not. It honours [`stall_requested`] with its own name so a test can show the watchdog
//! noticing it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_atomic::AtomicU64;

/// The slowest beat: often enough for `$SYS`-like status, rare enough to cost nothing.
const MAX_BEAT_PERIOD: Duration = Duration::from_secs(5);
/// The fastest beat, for the very short watchdog intervals of tests.
const MIN_BEAT_PERIOD: Duration = Duration::from_millis(10);

/// Components that must show progress for the watchdog to be fed. Shared as `Arc<Health>`;
/// components registered after the watchdog started are checked too.
pub struct Health {
    /// The clock of every beat: milliseconds since this instant.
    epoch: Instant,
    beat_period: Duration,
    components: Mutex<Vec<(&'static str, Arc<AtomicU64>)>>,
}

/// A component's side of [`Health`]: `Send + Sync`, cheap to clone, and a beat is a clock read
/// and one atomic store, cheap enough for an accept loop to beat on every connection.
#[derive(Clone)]
pub struct Heartbeat {
    epoch: Instant,
    last: Arc<AtomicU64>,
}

impl Health {
    /// An empty set of components, beating at a period derived from the service manager's
    /// watchdog interval (a sixth of it, so three beats fit in the half interval the watchdog
    /// allows between pings), between 10 ms and 5 s.
    pub fn new() -> Arc<Health> {
        Arc::new(Health::with_watchdog(super::watchdog_interval()))
    }

    fn with_watchdog(interval: Option<Duration>) -> Health {
        let beat_period = interval.map_or(MAX_BEAT_PERIOD, |w| {
            (w / 6).clamp(MIN_BEAT_PERIOD, MAX_BEAT_PERIOD)
        });
        Health {
            epoch: Instant::now(),
            beat_period,
            components: Mutex::new(Vec::new()),
        }
    }

    /// How often an idle component should beat, at least. A component silent for more than
    /// half the watchdog interval stops the pings.
    pub fn beat_period(&self) -> Duration {
        self.beat_period
    }

    /// Adds a component, counted as having just beaten. Several components may share a name
    /// (every accept loop is a `listener`).
    pub fn register(&self, name: &'static str) -> Heartbeat {
        let heartbeat = Heartbeat {
            epoch: self.epoch,
            last: Arc::new(AtomicU64::new(0)),
        };
        heartbeat.beat();
        self.lock().push((name, heartbeat.last.clone()));
        heartbeat
    }

    /// Names of components silent for longer than `max_silence`, each once, in registration
    /// order.
    pub fn stale(&self, max_silence: Duration) -> Vec<&'static str> {
        self.stale_at(millis_since(self.epoch), max_silence)
    }

    fn stale_at(&self, now_ms: u64, max_silence: Duration) -> Vec<&'static str> {
        let max = u64::try_from(max_silence.as_millis()).unwrap_or(u64::MAX);
        let mut stale = Vec::new();
        for (name, last) in self.lock().iter() {
            let silent = now_ms.saturating_sub(last.load(Ordering::Relaxed));
            if silent > max && !stale.contains(name) {
                stale.push(*name);
            }
        }
        stale
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, Arc<AtomicU64>)>> {
        self.components.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Heartbeat {
    /// Records progress now.
    pub fn beat(&self) {
        self.last.store(millis_since(self.epoch), Ordering::Relaxed);
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Test-only hook: `NANOMQ_TEST_STALL=<component>[:<after_secs>]` makes that component wedge
/// (stop making progress, without exiting) after the given seconds (0 when not given), so the
/// tests of the real binary can show that the watchdog pings stop. None when not requested or
/// not parseable.
pub fn stall_requested(component: &str) -> Option<Duration> {
    parse_stall(&std::env::var("NANOMQ_TEST_STALL").ok()?, component)
}

fn parse_stall(value: &str, component: &str) -> Option<Duration> {
    let (name, after) = value.split_once(':').unwrap_or((value, "0"));
    if name != component {
        return None;
    }
    Duration::try_from_secs_f64(after.parse().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(health: &Health, name: &'static str, ms: u64) -> Heartbeat {
        let h = health.register(name);
        h.last.store(ms, Ordering::Relaxed);
        h
    }

    #[test]
    fn silent_components_are_named_once() {
        let health = Health::with_watchdog(None);
        let router = at(&health, "router", 1_000);
        at(&health, "listener", 1_000);
        at(&health, "listener", 1_000);
        let second = Duration::from_secs(1);
        assert!(health.stale_at(2_000, second).is_empty(), "silent 1 s");
        assert_eq!(health.stale_at(2_001, second), ["router", "listener"]);
        router.last.store(2_000, Ordering::Relaxed);
        assert_eq!(health.stale_at(2_001, second), ["listener"]);
    }

    #[test]
    fn beating_and_late_registration_count_as_progress() {
        let health = Health::new();
        let a = at(&health, "router", 0);
        assert_eq!(health.stale_at(10_000, Duration::from_secs(1)), ["router"]);
        let before = millis_since(health.epoch);
        a.clone().beat();
        assert!(a.last.load(Ordering::Relaxed) >= before);
        // A component registered after checking began (the store) is checked from then on.
        let store = health.register("store");
        assert!(health.stale(Duration::from_secs(3600)).is_empty());
        store.last.store(0, Ordering::Relaxed);
        let later = millis_since(health.epoch) + 2_000;
        a.last.store(later, Ordering::Relaxed);
        assert_eq!(health.stale_at(later, Duration::from_secs(1)), ["store"]);
    }

    #[test]
    fn beat_period_fits_the_watchdog() {
        let period = |usec| Health::with_watchdog(Some(Duration::from_micros(usec))).beat_period;
        assert_eq!(period(30_000_000), Duration::from_secs(5));
        assert_eq!(period(1_200_000), Duration::from_millis(200));
        assert_eq!(period(1_000), MIN_BEAT_PERIOD);
        assert_eq!(Health::with_watchdog(None).beat_period, MAX_BEAT_PERIOD);
    }

    #[test]
    fn stall_requests_name_a_component_and_a_delay() {
        assert_eq!(
            parse_stall("router:2", "router"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_stall("router:0.5", "router"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_stall("listener", "listener"), Some(Duration::ZERO));
        assert_eq!(parse_stall("router:1", "listener"), None);
        assert_eq!(parse_stall("router:soon", "router"), None);
        assert_eq!(parse_stall("router:-1", "router"), None);
    }
}
