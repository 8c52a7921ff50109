//! Hostile input against the real `nanomq` binary (or `NANOMQ_BIN`): storms of broken
//! connections and sockets that never finish their handshake, on TCP, TLS and WebSocket
//! listeners bound to 127.0.0.1:0 with a 2-second CONNECT timeout.
//!
//! - `tls_storm`: 10,000 connections to the TLS listener, 64 at a time: half abandon the
//!   handshake (closed or reset right after connecting, or after part of a ClientHello), a
//!   quarter send garbage instead of a ClientHello, a quarter complete TLS 1.3 or 1.2 and an
//!   MQTT session.
//! - `ws_storm`: 10,000 WebSocket upgrades that must fail: no key, wrong version, wrong path
//!   (404), garbage request line, oversized header block, POST, half a request.
//! - `slowloris`: 200 silent and 200 dribbling sockets per listener, opened at once: all
//!   accepted at once (none left to retry its SYN a second later), a normal client on every
//!   listener served while they hang, each closed at the CONNECT timeout.
//!
//! After each storm the broker must be alive, route a message between a TCP, a TLS and a WS
//! client, be back to its open file descriptors of before (each socket is one), and to within
//! 10% of its resident memory of before. That memory is measured after a warm-up that holds
//! 256 normal sessions at once (half of them TLS) and closes them: glibc keeps what it freed in
//! its per-thread arenas and the broker's slab allocator keeps its slabs (see `nanomq::alloc`),
//! so RSS rises to the high-water mark of the busiest moment and stays there. Compared with a
//! cold broker, any storm would look like a leak; after the warm-up, which holds more
//! connections at once than a storm ever does (its 64 clients in flight plus the sockets the
//! broker is still closing, about 130), a storm should not move RSS, and a leak shows as growth
//! with the number of connections: 10,000 connections leaking 150 bytes each is about 10%.
//!
//! The tests take a lock so they run one at a time: each measures one broker's memory and
//! deadlines, and two storms on a 2-core machine would only slow each other. Select them with
//! `cargo test --test storms`; RSS and timing figures print with `-- --nocapture`.

#![cfg(all(feature = "tls", feature = "websocket"))]

#[allow(dead_code)] // the helpers this suite does not use serve the others
#[path = "../common/mod.rs"]
mod common;

mod clients;
mod crowd;
mod pki;
mod probe;
mod slowloris;
mod tls_storm;
mod ws_storm;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nanomq::mqtt::ProtocolVersion;
use rustls::ClientConfig;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use clients::{open, round_trip_everywhere, Kind, Mqtt};
use pki::Pki;
use probe::{eventually, Peak};

/// `limits.connect_timeout_secs` of the storm broker.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How late after its deadline the broker may close a socket on a loaded 2-core machine.
pub const MARGIN: Duration = Duration::from_millis(1500);
/// Connections in flight at once during a storm.
pub const CONCURRENCY: usize = 64;
/// Connections per storm, as issue 5 asks.
pub const STORM: usize = 10_000;
/// Sessions the warm-up holds open at once (half of them TLS): more than the broker holds at
/// any moment of a storm, its clients in flight plus those it is still closing.
pub const WARM_UP: usize = 256;
/// How long the broker gets to give back sockets and memory after a storm.
pub const SETTLE: Duration = Duration::from_secs(10);
/// RSS after a storm may exceed the warm baseline by this fraction at most.
pub const RSS_TOLERANCE: f64 = 0.10;
/// No single test may take longer than this, whatever hangs.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the storm broker listens, and the TLS settings its clients use.
pub struct Endpoints {
    pub tcp: SocketAddr,
    pub tls: SocketAddr,
    pub ws: SocketAddr,
    /// Trusts the test CA; TLS 1.3 only.
    pub tls13: Arc<ClientConfig>,
    /// Trusts the test CA; TLS 1.2 only.
    pub tls12: Arc<ClientConfig>,
}

/// A `nanomq` process with tls, ws and tcp listeners; killed when dropped.
pub struct StormBroker {
    process: common::Broker,
    pub endpoints: Arc<Endpoints>,
}

/// The broker at rest, before a storm: what it must come back to.
pub struct Baseline {
    /// Open descriptors of the idle broker, before any client connected.
    pub fds: usize,
    /// RSS after the warm-up, in KiB.
    pub rss_kib: u64,
}

impl StormBroker {
    pub fn start(name: &str) -> StormBroker {
        let dir = common::unique_dir(&format!("nanomq-storms-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki::write_to(&dir);
        let path = |file: &str| toml::Value::String(dir.join(file).display().to_string());
        // The tcp listener comes last: common::Broker returns once its line is logged, and by
        // then the lines of the others are. Room for every slow socket of the slowloris test
        // before CONNECT (the default bound, 1024, would refuse some at accept; that bound has
        // its own test in broker::tests::limits).
        let config = format!(
            "[runtime]\nworker_threads = 2\n\n\
             [limits]\nconnect_timeout_secs = {}\nmax_pending_connections = 4096\n\n\
             [[listeners]]\nkind = \"tls\"\nbind = \"127.0.0.1:0\"\n\
             [listeners.tls]\ncert = {}\nkey = {}\n\n\
             [[listeners]]\nkind = \"ws\"\nbind = \"127.0.0.1:0\"\n\n\
             [[listeners]]\nkind = \"tcp\"\nbind = \"127.0.0.1:0\"\n",
            CONNECT_TIMEOUT.as_secs(),
            path("server.crt"),
            path("server.key"),
        );
        let process = common::Broker::start_nanomq(dir, &config);
        let log = process.log_text();
        let endpoints = Endpoints {
            tcp: SocketAddr::from(([127, 0, 0, 1], process.port)),
            tls: listening(&log, "tls"),
            ws: listening(&log, "ws"),
            tls13: pki.client_config(&rustls::version::TLS13),
            tls12: pki.client_config(&rustls::version::TLS12),
        };
        StormBroker {
            process,
            endpoints: Arc::new(endpoints),
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Panics if the broker process has exited.
    pub fn assert_alive(&mut self, when: &str) {
        if let Ok(Some(status)) = self.process.child.try_wait() {
            panic!("the broker exited {when}: {status}");
        }
    }

    /// Records the idle descriptor count; opens [`WARM_UP`] sessions on every listener, 64 at a
    /// time, holds them all at once and closes them; waits until they are gone and records RSS.
    pub async fn warm_up(&self) -> Baseline {
        let pid = self.pid();
        let fds = probe::open_fds(pid);
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        let mut opening = JoinSet::new();
        for i in 0..WARM_UP {
            let (to, permits) = (self.endpoints.clone(), permits.clone());
            opening.spawn(async move {
                let _permit = permits.acquire_owned().await.unwrap();
                let kind = [Kind::Tls, Kind::Tls, Kind::Ws, Kind::Tcp][i % 4];
                let stream = open(&to, kind).await?;
                Mqtt::connect(stream, ProtocolVersion::V5, &format!("warm-up-{i}")).await
            });
        }
        let mut sessions = Vec::new();
        while let Some(opened) = opening.join_next().await {
            sessions.push(
                opened
                    .unwrap()
                    .unwrap_or_else(|e| panic!("warm-up session: {e}")),
            );
        }
        let mut closing = JoinSet::new();
        for session in sessions {
            closing.spawn(session.disconnect());
        }
        while let Some(closed) = closing.join_next().await {
            closed
                .unwrap()
                .unwrap_or_else(|e| panic!("warm-up DISCONNECT: {e}"));
        }
        let back = eventually(SETTLE, || probe::open_fds(pid) == fds).await;
        assert!(back, "the warm-up connections were not closed");
        tokio::time::sleep(Duration::from_millis(300)).await;
        Baseline {
            fds,
            rss_kib: probe::rss_kib(pid),
        }
    }

    /// After a storm: the broker is alive, routes between all transports, and is back to its
    /// descriptors and (within [`RSS_TOLERANCE`]) its memory of before. Prints the figures.
    pub async fn assert_recovered(&mut self, storm: &str, before: &Baseline, peak: Peak) {
        self.assert_alive(&format!("during the {storm}"));
        round_trip_everywhere(&self.endpoints, storm).await;
        let pid = self.pid();
        let fds_back = eventually(SETTLE, || probe::open_fds(pid) == before.fds).await;
        let fds = probe::open_fds(pid);
        let limit = (before.rss_kib as f64 * (1.0 + RSS_TOLERANCE)) as u64;
        let t0 = Instant::now();
        eventually(SETTLE, || probe::rss_kib(pid) <= limit).await;
        let after = probe::rss_kib(pid);
        println!(
            "{storm}: RSS before {} KiB, peak {} KiB, after {after} KiB ({:+.1}%, \
             settled in {:.1?}); open fds before {}, peak {}, after {fds}",
            before.rss_kib,
            peak.rss_kib,
            (after as f64 / before.rss_kib as f64 - 1.0) * 100.0,
            t0.elapsed(),
            before.fds,
            peak.fds,
        );
        assert!(
            fds_back,
            "{storm}: the broker holds {fds} descriptors, {} before the storm",
            before.fds
        );
        assert!(
            after <= limit,
            "{storm}: RSS {after} KiB is more than {:.0}% over {} KiB before the storm",
            RSS_TOLERANCE * 100.0,
            before.rss_kib
        );
        self.assert_alive(&format!("after the {storm}"));
    }
}

/// The address in the `listening on KIND ADDR` line of `log`.
fn listening(log: &str, kind: &str) -> SocketAddr {
    let marker = format!("listening on {kind} ");
    log.lines()
        .find_map(|line| {
            let rest = &line[line.find(&marker)? + marker.len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no '{marker}ADDR' line in the broker log:\n{log}"))
}

/// Held by each test for its whole run: one storm at a time.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a test body on a runtime of its own (two workers, as many as the machine has cores),
/// failing it after [`TEST_TIMEOUT`].
pub fn run<F: std::future::Future<Output = ()>>(name: &str, body: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if tokio::time::timeout(TEST_TIMEOUT, body).await.is_err() {
            panic!("{name}: not done within {TEST_TIMEOUT:?}");
        }
    });
}
