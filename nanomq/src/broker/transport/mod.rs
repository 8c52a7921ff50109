//! Listener transports: how an accepted TCP socket becomes the byte stream MQTT is read from.
//!
//! Each kind is an [`Upgrade`]: plain TCP is the socket itself, TLS runs a rustls handshake,
//! WebSocket runs the HTTP upgrade and then carries MQTT in binary frames, and WSS is WebSocket
//! over TLS. The upgrade runs inside the connection's handshake phase, under the same CONNECT
//! deadline, so a client that stalls in the TLS or HTTP handshake is closed like one that never
//! sends CONNECT.

#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "websocket")]
mod ws;
#[cfg(feature = "tls")]
mod x509;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::connection;
use super::Broker;
use crate::config::{ListenerConfig, ListenerKind};

#[cfg(all(feature = "tls", feature = "bridge"))]
pub(crate) use tls::client_config;
#[cfg(feature = "tls")]
pub use tls::TlsError;
#[cfg(feature = "tls")]
use tls::TlsIdentity;
#[cfg(feature = "websocket")]
use ws::WsUpgrade;

/// Turns an accepted TCP socket into the stream the connection reads MQTT from.
pub(crate) trait Upgrade: Send + 'static {
    /// The stream MQTT packets travel on.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Runs the transport's own handshake, if it has one, and says what the client's
    /// certificate told about it, if it presented one.
    fn upgrade(
        self,
        tcp: TcpStream,
    ) -> impl Future<Output = std::io::Result<(Self::Stream, Option<ClientCertificate>)>> + Send;
}

/// What a verified client certificate says about the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ClientCertificate {
    /// The subject's Common Name, for ACL rules `cn:NAME`.
    pub(crate) common_name: Option<Box<str>>,
    /// The user name the listener takes from certificates (`tls.username_from`).
    pub(crate) username: CertificateUsername,
}

/// Whether the client's user name comes from its certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))] // only TLS listeners see certificates
pub(crate) enum CertificateUsername {
    /// The listener takes user names from CONNECT.
    #[default]
    NotUsed,
    /// This name, which the certificate proves: no password is checked.
    Name(Box<str>),
    /// The listener takes user names from certificates, and this one has none of that kind.
    Missing,
}

/// Plain TCP: no handshake of its own.
pub(crate) struct Plain;

impl Upgrade for Plain {
    type Stream = TcpStream;

    async fn upgrade(
        self,
        tcp: TcpStream,
    ) -> std::io::Result<(TcpStream, Option<ClientCertificate>)> {
        Ok((tcp, None))
    }
}

/// Why a listener's transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The kind was left out of this build; validation normally says so first.
    #[error("\"{0}\" listeners are not in this build (cargo features tls and websocket)")]
    NotBuilt(&'static str),
    /// The certificate or key files (named in the error) are unusable.
    #[cfg(feature = "tls")]
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A listener's transport, ready to upgrade each accepted socket.
pub(crate) enum Transport {
    Tcp,
    #[cfg(feature = "tls")]
    Tls(Arc<TlsIdentity>),
    #[cfg(feature = "websocket")]
    Ws(Arc<str>),
    #[cfg(all(feature = "tls", feature = "websocket"))]
    Wss(Arc<TlsIdentity>, Arc<str>),
}

impl Transport {
    /// Sets up the transport `config` names, reading its certificates. Validation has already
    /// refused kinds this build leaves out.
    pub(crate) fn new(config: &ListenerConfig) -> Result<Transport, TransportError> {
        Ok(match config.kind {
            ListenerKind::Tcp => Transport::Tcp,
            #[cfg(feature = "tls")]
            ListenerKind::Tls => Transport::Tls(Arc::new(TlsIdentity::load(config)?)),
            #[cfg(feature = "websocket")]
            ListenerKind::Ws => Transport::Ws(config.path.as_str().into()),
            #[cfg(all(feature = "tls", feature = "websocket"))]
            ListenerKind::Wss => Transport::Wss(
                Arc::new(TlsIdentity::load(config)?),
                config.path.as_str().into(),
            ),
            #[allow(unreachable_patterns)] // every kind is built in
            _ => return Err(TransportError::NotBuilt(config.kind.name())),
        })
    }

    /// Reads this listener's certificates again; connections already open keep theirs. Returns
    /// whether there was anything to reload.
    pub(crate) fn reload(&self) -> Result<bool, TransportError> {
        match self {
            #[cfg(feature = "tls")]
            Transport::Tls(identity) => identity.reload().map(|()| true).map_err(Into::into),
            #[cfg(all(feature = "tls", feature = "websocket"))]
            Transport::Wss(identity, _) => identity.reload().map(|()| true).map_err(Into::into),
            Transport::Tcp => Ok(false),
            #[allow(unreachable_patterns)] // ws, when built in
            _ => Ok(false),
        }
    }

    /// Serves one accepted socket on its own task; `listener` names where it came in, for logs.
    pub(crate) fn spawn<G>(
        &self,
        broker: Arc<Broker>,
        tcp: TcpStream,
        peer: SocketAddr,
        listener: &Arc<String>,
        guard: G,
    ) where
        G: Unpin + Send + 'static,
    {
        let accepted = Accepted {
            broker,
            tcp,
            peer,
            listener: listener.clone(),
            guard,
        };
        match self {
            Transport::Tcp => accepted.serve(Plain),
            #[cfg(feature = "tls")]
            Transport::Tls(identity) => accepted.serve(identity.upgrade()),
            #[cfg(feature = "websocket")]
            Transport::Ws(path) => {
                let upgrade = WsUpgrade::new(Plain, path.clone(), &accepted.broker);
                accepted.serve(upgrade)
            }
            #[cfg(all(feature = "tls", feature = "websocket"))]
            Transport::Wss(identity, path) => {
                let upgrade = WsUpgrade::new(identity.upgrade(), path.clone(), &accepted.broker);
                accepted.serve(upgrade)
            }
        }
    }
}

/// An accepted socket on its way to a connection task.
struct Accepted<G> {
    broker: Arc<Broker>,
    tcp: TcpStream,
    peer: SocketAddr,
    listener: Arc<String>,
    guard: G,
}

impl<G> Accepted<G>
where
    G: Unpin + Send + 'static,
{
    /// Spawns the connection task, which starts with `upgrade`'s handshake.
    fn serve<U>(self, upgrade: U)
    where
        U: Upgrade + Send + 'static,
        U::Stream: Send + 'static,
    {
        tokio::spawn(connection::serve(
            self.broker,
            self.tcp,
            self.peer,
            self.listener,
            self.guard,
            upgrade,
        ));
    }
}
