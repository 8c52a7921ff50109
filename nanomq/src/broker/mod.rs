//! The broker: accept loops, connection tasks, the client registry and takeover, routing and
//! graceful shutdown.
//!
//! Like mini-redis, the server never binds its own sockets in [`serve`]: the binary calls [`bind`]
//! for what the configuration names (tests name port 0) and hands the listeners over.
//! Shutdown is a future; when it resolves, accept loops stop, every connection is told
//! (DISCONNECT 0x8B to MQTT 5 clients) and `serve` returns once the last one is gone.

mod admission;
mod authorize;
mod connect;
mod connection;
mod enhanced_auth;
mod io;
mod keepalive;
mod limits;
mod listener;
mod metrics;
mod persist;
mod probe;
mod publish;
mod registry;
mod status;
mod subscribe;
mod subscriber;
mod sys;
mod transport;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::auth::Authenticator;
use crate::config::{Config, QueueFullPolicy};
use crate::router::{RetainedStore, SubscriptionTree};
use crate::service::Health;
use crate::session::{FullPolicy, Message, SessionLimits};
use crate::store::{Opened, Store};

pub use limits::{LiveLimits, LIVE_LIMITS};
pub use listener::{bind, check_transports, CertificateReloader, Listener};
pub use metrics::Metrics;
#[cfg(feature = "bridge")]
pub(crate) use publish::publish_from_bridge;
use registry::SessionRegistry;
pub(crate) use subscriber::Subscriber;
#[cfg(all(feature = "tls", feature = "bridge"))]
pub(crate) use transport::client_config;
#[cfg(feature = "tls")]
pub use transport::TlsError;
pub use transport::TransportError;

/// How long shutdown waits for connections to say goodbye before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Errors that stop the broker from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A listener's address could not be bound.
    #[error("cannot bind {kind} listener on {addr}: {error}")]
    Bind {
        /// Listener kind from the configuration.
        kind: &'static str,
        /// Address from the configuration.
        addr: SocketAddr,
        /// The operating system's reason.
        error: std::io::Error,
    },
    /// A listener's transport (its certificates) could not be set up.
    #[error("{kind} listener on {addr}: {error}")]
    Transport {
        /// Listener kind from the configuration.
        kind: &'static str,
        /// Address from the configuration.
        addr: SocketAddr,
        /// What is wrong.
        error: TransportError,
    },
    /// The configuration names no listener.
    #[error("no listeners configured")]
    NoListeners,
    /// A bridge's topic template does not fit its filter (validation normally says so first).
    #[cfg(feature = "bridge")]
    #[error("bridge: {0}")]
    Bridge(#[from] crate::bridge::TemplateError),
}

/// What a reload changes while the broker runs. The caller of [`serve`] keeps a clone and
/// reloads through it: `auth` checks CONNECTs and holds the ACL (its files are read again),
/// `limits` are read at accept and CONNECT, and `bridges` are started, replaced or stopped by
/// name.
#[derive(Clone)]
pub struct Live {
    /// The password file, the ACL and the HTTP auth service.
    pub auth: Arc<Authenticator>,
    /// The limits applied live.
    pub limits: Arc<LiveLimits>,
    /// The running bridges.
    #[cfg(feature = "bridge")]
    pub bridges: Arc<crate::bridge::BridgeSet>,
}

impl Live {
    /// The live parts of `config`, with `auth` loaded from it; bridges start with [`serve`].
    pub fn new(config: &Config, auth: Arc<Authenticator>) -> Live {
        Live {
            auth,
            limits: Arc::new(LiveLimits::new(config)),
            #[cfg(feature = "bridge")]
            bridges: Arc::default(),
        }
    }
}

/// Serves MQTT on bound listeners until `shutdown` resolves, then shuts down gracefully. `live`
/// is what a reload changes; the caller keeps a clone to reload it. Every accept loop and the
/// router register with `health`, which the watchdog reads. `state` is the state database with
/// what it held (None: memory only); it is closed, everything committed, once the last
/// connection is gone.
pub async fn serve(
    config: Config,
    live: Live,
    listeners: Vec<Listener>,
    health: Arc<Health>,
    state: Option<Opened>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BrokerError> {
    if listeners.is_empty() {
        return Err(BrokerError::NoListeners);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    #[cfg(feature = "persistence")]
    let (store, restored) = match state {
        Some(o) => (Some(Arc::new(o.store)), Some(o.restored)),
        None => (None, None),
    };
    #[cfg(not(feature = "persistence"))]
    let store = state.map(|o| match o {});
    #[cfg(feature = "bridge")]
    live.bridges
        .install(crate::bridge::from_config(&config.bridges, store.as_ref())?);
    let broker = Arc::new(Broker::new(config, &live, health, store, stop_rx));
    #[cfg(feature = "persistence")]
    if let Some(restored) = restored {
        persist::restore(&broker, restored);
    }
    // Every connection task holds a clone; `recv` returns None once the last one is dropped.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);

    for listener in listeners {
        tracing::info!(
            "listening on {} {}",
            listener.kind().name(),
            listener.local_addr()
        );
        tokio::spawn(listener.accept_loop(broker.clone(), alive_tx.clone()));
    }
    #[cfg(feature = "bridge")]
    broker.bridges.start(&broker, &alive_tx);
    tokio::spawn(sys::publish_loop(broker.clone()));
    tokio::spawn(keepalive::sweep_loop(broker.clone()));
    let router = broker.health.register("router");
    tokio::spawn(probe::router_probe_loop(broker.clone(), router));
    tokio::spawn(status::report_loop(broker.clone()));
    drop(alive_tx);

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    #[cfg(feature = "bridge")]
    broker.bridges.close();
    // Connections still in their handshake see the flag; attached ones are kicked.
    broker
        .sessions
        .kick_all(crate::mqtt::ReasonCode::SERVER_SHUTTING_DOWN);
    if tokio::time::timeout(SHUTDOWN_GRACE, alive_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close within {SHUTDOWN_GRACE:?}");
    }
    // Every connection is gone (or the grace period ran out), so sessions and retained
    // messages no longer change: commit what is pending and close the state database.
    if let Some(store) = &broker.store {
        store.close();
    }
    Ok(())
}

/// State shared by every task of one broker.
pub(crate) struct Broker {
    pub(crate) config: Config,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) subscriptions: SubscriptionTree<Subscriber>,
    pub(crate) retained: RetainedStore<Arc<Message>>,
    pub(crate) sessions: SessionRegistry,
    pub(crate) metrics: Metrics,
    pub(crate) session_limits: SessionLimits,
    pub(crate) started: Instant,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) connect_rate: admission::ConnectRate,
    /// What the watchdog checks: components register here and beat.
    pub(crate) health: Arc<Health>,
    /// The limits read at accept and CONNECT; use these, not `config.limits`, for them.
    pub(crate) limits: Arc<LiveLimits>,
    /// The state database; None keeps everything in memory.
    pub(crate) store: Option<Arc<Store>>,
    /// Uplinks to cloud brokers; shutdown waits for their tasks like for connections (each
    /// says DISCONNECT and hands its last acknowledgements to the state database first).
    #[cfg(feature = "bridge")]
    pub(crate) bridges: Arc<crate::bridge::BridgeSet>,
}

impl Broker {
    /// Whole seconds since the broker started: the clock of keepalive deadlines.
    pub(crate) fn uptime_secs(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    fn new(
        config: Config,
        live: &Live,
        health: Arc<Health>,
        store: Option<Arc<Store>>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let l = &config.limits;
        let session_limits = SessionLimits {
            max_queued: u32::try_from(l.max_queued_messages).unwrap_or(u32::MAX),
            full_policy: match l.queue_full_policy {
                QueueFullPolicy::DropNew => FullPolicy::DropNew,
                QueueFullPolicy::DropOldest => FullPolicy::DropOldest,
            },
            max_inflight: l.max_inflight,
            max_outgoing_alias: if config.mqtt.outgoing_topic_aliases {
                config.mqtt.max_outgoing_topic_alias
            } else {
                0
            },
        };
        Broker {
            subscriptions: SubscriptionTree::new(),
            retained: RetainedStore::new(),
            sessions: SessionRegistry::default(),
            metrics: Metrics::default(),
            session_limits,
            started: Instant::now(),
            stop,
            connect_rate: admission::ConnectRate::default(),
            limits: live.limits.clone(),
            config,
            auth: live.auth.clone(),
            health,
            store,
            #[cfg(feature = "bridge")]
            bridges: live.bridges.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
