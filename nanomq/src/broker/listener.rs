//! Listeners: a bound socket, its transport, and the loop that accepts connections on it
//! within the listener's and the broker's connection limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::admission::Admission;
use super::transport::{Transport, TransportError};
use super::{Broker, BrokerError};
use crate::config::{Config, ListenerConfig, ListenerKind};
use crate::service::stall_requested;

/// Connections the kernel keeps ready for a listener until its accept loop takes them. std and
/// tokio listen with 128; when a burst of clients (reconnecting after an outage, say) fills
/// that, the kernel drops their SYNs and each one waits a second, then three, to retry. Linux
/// caps the value at `net.core.somaxconn` (4096 by default).
const ACCEPT_BACKLOG: u32 = 1024;

/// A bound listener, ready for [`super::serve`].
pub struct Listener {
    /// Position in the config's `[[listeners]]`, for its live `max_connections`.
    index: usize,
    config: ListenerConfig,
    socket: TcpListener,
    transport: Arc<Transport>,
}

/// Binds every configured listener and loads its certificates, so that every problem shows
/// before the broker reports itself ready.
pub async fn bind(config: &Config) -> Result<Vec<Listener>, BrokerError> {
    let mut listeners = Vec::with_capacity(config.listeners.len());
    for (index, l) in config.listeners.iter().enumerate() {
        let transport = transport(l)?;
        let socket = listen(l.bind).map_err(|error| BrokerError::Bind {
            kind: l.kind.name(),
            addr: l.bind,
            error,
        })?;
        listeners.push(Listener {
            index,
            config: l.clone(),
            socket,
            transport: Arc::new(transport),
        });
    }
    Ok(listeners)
}

/// Binds `addr` as tokio's `TcpListener::bind` does (SO_REUSEADDR), with a longer backlog.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Loads every listener's certificates without binding anything: what `check-config` can
/// promise about a start.
pub fn check_transports(config: &Config) -> Result<(), BrokerError> {
    for l in &config.listeners {
        transport(l)?;
    }
    Ok(())
}

/// The transport `l` names, with its certificates loaded.
fn transport(l: &ListenerConfig) -> Result<Transport, BrokerError> {
    Transport::new(l).map_err(|error| BrokerError::Transport {
        kind: l.kind.name(),
        addr: l.bind,
        error,
    })
}

impl Listener {
    /// The transport spoken here.
    pub fn kind(&self) -> ListenerKind {
        self.config.kind
    }

    /// The address actually bound (the OS's pick when the config says port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap_or(self.config.bind)
    }

    /// Something that reloads this listener's certificates later, while it serves.
    pub fn reloader(&self) -> CertificateReloader {
        CertificateReloader {
            name: format!("{} listener on {}", self.kind().name(), self.local_addr()),
            transport: self.transport.clone(),
        }
    }

    /// Accepts connections until shutdown; each connection gets its own task. Beats a
    /// `listener` heartbeat on each accept and, while idle, every beat period.
    pub(super) async fn accept_loop(self, broker: Arc<Broker>, alive: mpsc::Sender<()>) {
        let name = Arc::new(format!("{} {}", self.kind().name(), self.local_addr()));
        let Listener {
            index,
            config: _,
            socket,
            transport,
        } = self;
        let mut stop = broker.stop.clone();
        let mut admission = Admission::new(index);
        let heartbeat = broker.health.register("listener");
        let mut tick = tokio::time::interval(broker.health.beat_period());
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let stall_at = stall_requested("listener").map(|after| Instant::now() + after);
        loop {
            let accepted = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                r = socket.accept() => Some(r),
                _ = tick.tick() => None,
            };
            let Some(accepted) = accepted else {
                if stall_at.is_some_and(|at| Instant::now() >= at) {
                    tracing::warn!(listener = %name, "NANOMQ_TEST_STALL: the accept loop wedges");
                    std::future::pending::<()>().await;
                }
                heartbeat.beat();
                continue;
            };
            heartbeat.beat();
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = %name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (slot, verdict) = admission.admit(&broker, peer.ip());
            if let Err(refusal) = verdict {
                admission.log_refusal(refusal, peer.ip(), &name);
                continue;
            }
            let _ = stream.set_nodelay(true);
            transport.spawn(broker.clone(), stream, peer, &name, (slot, alive.clone()));
        }
    }
}

/// Reloads one listener's certificates (SIGHUP): new handshakes use the new files, connections
/// already open keep theirs.
pub struct CertificateReloader {
    name: String,
    transport: Arc<Transport>,
}

impl CertificateReloader {
    /// Reads the files again; on error the certificates in use stay. Returns whether the
    /// listener has certificates at all.
    pub fn reload(&self) -> Result<bool, TransportError> {
        self.transport.reload()
    }

    /// The listener, for log lines.
    pub fn name(&self) -> &str {
        &self.name
    }
}
