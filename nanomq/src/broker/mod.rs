//! The broker: accept loops, connection tasks, the client registry and takeover, routing and
//! graceful shutdown.
//!
//! Like mini-redis, the server never binds its own sockets in [`serve`]: the binary calls [`bind`]
//! for what the configuration names, while tests hand in listeners bound to port 0.
//! Shutdown is a future; when it resolves, accept loops stop, every connection is told
//! (DISCONNECT 0x8B to MQTT 5 clients) and `serve` returns once the last one is gone.

mod connect;
mod connection;
mod io;
mod keepalive;
mod metrics;
mod publish;
mod registry;
mod subscribe;
mod sys;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::{Config, ListenerConfig, QueueFullPolicy};
use crate::router::{RetainedStore, SubscriptionTree};
use crate::session::{FullPolicy, Message, SessionLimits};

pub use metrics::Metrics;
use registry::{SessionRef, SessionRegistry};

/// How long shutdown waits for connections to say goodbye before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Errors that stop the broker from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A listener's address could not be bound.
    #[error("cannot bind {kind} listener on {addr}: {source}")]
    Bind {
        /// Listener kind from the configuration.
        kind: &'static str,
        /// Address from the configuration.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The configuration names no listener.
    #[error("no listeners configured")]
    NoListeners,
}

/// Binds every configured listener, so the caller can tell its service manager the broker is
/// ready before handing them to [`serve`].
pub async fn bind(config: &Config) -> Result<Vec<(ListenerConfig, TcpListener)>, BrokerError> {
    let mut listeners = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let listener = TcpListener::bind(l.bind)
            .await
            .map_err(|source| BrokerError::Bind {
                kind: "tcp",
                addr: l.bind,
                source,
            })?;
        listeners.push((l.clone(), listener));
    }
    Ok(listeners)
}

/// Serves MQTT on already-bound listeners (each with its configuration) until `shutdown`
/// resolves, then shuts down gracefully.
pub async fn serve(
    config: Config,
    listeners: Vec<(ListenerConfig, TcpListener)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BrokerError> {
    if listeners.is_empty() {
        return Err(BrokerError::NoListeners);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let broker = Arc::new(Broker::new(config, stop_rx));
    // Every connection task holds a clone; `recv` returns None once the last one is dropped.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);

    for (cfg, listener) in listeners {
        let addr = listener.local_addr().unwrap_or(cfg.bind);
        tracing::info!("listening on tcp {addr}");
        tokio::spawn(accept_loop(broker.clone(), cfg, listener, alive_tx.clone()));
    }
    tokio::spawn(sys::publish_loop(broker.clone()));
    tokio::spawn(keepalive::sweep_loop(broker.clone()));
    drop(alive_tx);

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
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
    Ok(())
}

/// Accepts connections on one listener until shutdown; each connection gets its own task.
async fn accept_loop(
    broker: Arc<Broker>,
    cfg: ListenerConfig,
    listener: TcpListener,
    alive: mpsc::Sender<()>,
) {
    let mut stop = broker.stop.clone();
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed on {}: {e}", cfg.bind);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let per_listener = open.fetch_add(1, Ordering::Relaxed) + 1;
        let guard = ConnectionSlot {
            broker: broker.clone(),
            listener: open.clone(),
            _alive: alive.clone(),
        };
        let total = broker.metrics.sockets_open.fetch_add(1, Ordering::Relaxed) + 1;
        if (cfg.max_connections > 0 && per_listener > cfg.max_connections)
            || total > broker.config.limits.max_connections
        {
            tracing::warn!(%peer, "connection refused: connection limit reached");
            continue;
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection::serve(broker.clone(), stream, peer, guard));
    }
}

/// Releases a connection's place in the listener's and the broker's connection counts.
struct ConnectionSlot {
    broker: Arc<Broker>,
    listener: Arc<AtomicUsize>,
    /// Shutdown waits until every connection has dropped its clone.
    _alive: mpsc::Sender<()>,
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

/// State shared by every task of one broker.
pub(crate) struct Broker {
    pub(crate) config: Config,
    pub(crate) subscriptions: SubscriptionTree<SessionRef>,
    pub(crate) retained: RetainedStore<Arc<Message>>,
    pub(crate) sessions: SessionRegistry,
    pub(crate) metrics: Metrics,
    pub(crate) session_limits: SessionLimits,
    pub(crate) started: Instant,
    pub(crate) stop: watch::Receiver<bool>,
}

impl Broker {
    /// Whole seconds since the broker started: the clock of keepalive deadlines.
    pub(crate) fn uptime_secs(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    fn new(config: Config, stop: watch::Receiver<bool>) -> Self {
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
            config,
        }
    }
}

#[cfg(test)]
mod tests;
