//! Well-behaved clients: MQTT on the crate's codec over TCP, TLS (tokio-rustls) or WebSocket
//! (tokio-tungstenite), a whole session from connect to DISCONNECT, and the check that a
//! message crosses between all three transports.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use nanomq::mqtt::{
    decode, encode, Connect, Disconnect, Packet, ProtocolVersion, Publish, ReasonCode, Subscribe,
    SubscriptionOptions,
};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::Endpoints;

/// Longer than any one exchange takes on a loaded machine; a broker that stops answering
/// fails the test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(10);

/// Runs `f` for at most [`WAIT`]; a timeout is an `io::Error`.
pub async fn within<T>(what: &str, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    match tokio::time::timeout(WAIT, f).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("timed out: {what}"),
        )),
    }
}

/// The three transports of the storm broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Tls,
    Ws,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Tcp, Kind::Tls, Kind::Ws];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Tls => "tls",
            Kind::Ws => "ws",
        }
    }
}

/// Any stream MQTT can travel on.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for S {}

/// A TLS session to `addr` for the name `localhost`.
pub async fn tls(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    within("TLS handshake", async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
    })
    .await
}

/// The WebSocket upgrade on `/mqtt` with the `mqtt` subprotocol.
pub async fn ws(addr: SocketAddr) -> io::Result<WsBytes<TcpStream>> {
    within("WebSocket handshake", async {
        let tcp = TcpStream::connect(addr).await?;
        let mut request = "ws://localhost/mqtt".into_client_request().unwrap();
        let protocol = "mqtt".parse().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocol);
        let (ws, _) = tokio_tungstenite::client_async(request, tcp)
            .await
            .map_err(io::Error::other)?;
        Ok(WsBytes {
            ws,
            unread: Bytes::new(),
        })
    })
    .await
}

/// A byte stream to the broker's `kind` listener, transport handshake done.
pub async fn open(to: &Endpoints, kind: Kind) -> io::Result<Box<dyn ByteStream>> {
    Ok(match kind {
        Kind::Tcp => Box::new(within("TCP connect", TcpStream::connect(to.tcp)).await?),
        Kind::Tls => Box::new(tls(to.tls, to.tls13.clone()).await?),
        Kind::Ws => Box::new(ws(to.ws).await?),
    })
}

/// Subscribes one client per transport to one topic, has each publish once, and checks that
/// every client receives all three messages: the broker accepts and routes on every listener.
pub async fn round_trip_everywhere(to: &Endpoints, tag: &str) {
    let topic = format!("storms/check/{tag}");
    let mut clients = Vec::new();
    for kind in Kind::ALL {
        let id = format!("check-{tag}-{}", kind.name());
        let stream = open(to, kind)
            .await
            .unwrap_or_else(|e| panic!("{tag}: {} client cannot connect: {e}", kind.name()));
        let mut client = Mqtt::connect(stream, ProtocolVersion::V5, &id)
            .await
            .unwrap_or_else(|e| panic!("{tag}: {} client: no CONNACK: {e}", kind.name()));
        client.subscribe(&topic).await.unwrap();
        clients.push((kind, client));
    }
    for (kind, client) in &mut clients {
        let payload = format!("from {}", kind.name());
        client.publish(&topic, payload.into_bytes()).await.unwrap();
    }
    for (kind, client) in &mut clients {
        let mut got = Vec::new();
        for _ in Kind::ALL {
            match client.recv().await {
                Ok(Some(Packet::Publish(p))) => got.push(p.payload),
                other => panic!(
                    "{tag}: {} client expected PUBLISH, got {other:?}",
                    kind.name()
                ),
            }
        }
        got.sort();
        assert_eq!(
            got,
            [&b"from tcp"[..], b"from tls", b"from ws"],
            "{tag}: {} client",
            kind.name()
        );
    }
    for (kind, client) in clients {
        let what = kind.name();
        client
            .disconnect()
            .await
            .unwrap_or_else(|e| panic!("{tag}: {what} client DISCONNECT: {e}"));
    }
}

/// A minimal MQTT client on the crate's own codec.
pub struct Mqtt<S> {
    stream: S,
    rbuf: BytesMut,
    version: ProtocolVersion,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Mqtt<S> {
    /// CONNECT with clean start and no keepalive; an error unless CONNACK accepts it.
    pub async fn connect(stream: S, version: ProtocolVersion, client_id: &str) -> io::Result<Self> {
        let mut client = Mqtt {
            stream,
            rbuf: BytesMut::new(),
            version,
        };
        let connect = Connect {
            protocol: version,
            clean_start: true,
            client_id: client_id.into(),
            ..Connect::default()
        };
        client.send(&Packet::Connect(Box::new(connect))).await?;
        match client.recv().await? {
            Some(Packet::ConnAck(ack)) if ack.reason == ReasonCode::SUCCESS => Ok(client),
            other => Err(io::Error::other(format!("expected CONNACK, got {other:?}"))),
        }
    }

    pub async fn send(&mut self, packet: &Packet) -> io::Result<()> {
        let mut out = BytesMut::new();
        encode(packet, self.version, &mut out);
        within("send", async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await
        })
        .await
    }

    /// The next packet; None once the broker has closed the connection.
    pub async fn recv(&mut self) -> io::Result<Option<Packet>> {
        within("packet from the broker", async {
            loop {
                if let Some(p) =
                    decode(&mut self.rbuf, self.version, u32::MAX).map_err(io::Error::other)?
                {
                    return Ok(Some(p));
                }
                if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                    return Ok(None);
                }
            }
        })
        .await
    }

    /// SUBSCRIBE at QoS 0 and its SUBACK.
    pub async fn subscribe(&mut self, filter: &str) -> io::Result<()> {
        let subscribe = Subscribe {
            packet_id: 1,
            filters: vec![(filter.into(), SubscriptionOptions::default())],
            ..Subscribe::default()
        };
        self.send(&Packet::Subscribe(subscribe)).await?;
        match self.recv().await? {
            Some(Packet::SubAck(ack)) if ack.reasons == [ReasonCode::SUCCESS] => Ok(()),
            other => Err(io::Error::other(format!("expected SUBACK, got {other:?}"))),
        }
    }

    /// PUBLISH at QoS 0.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>) -> io::Result<()> {
        let publish = Publish {
            topic: topic.into(),
            payload: payload.into(),
            ..Publish::default()
        };
        self.send(&Packet::Publish(publish)).await
    }

    /// DISCONNECT (normal), then waits for the broker to close the connection.
    pub async fn disconnect(mut self) -> io::Result<()> {
        self.send(&Packet::Disconnect(Disconnect::default()))
            .await?;
        match self.recv().await? {
            None => Ok(()),
            Some(p) => Err(io::Error::other(format!("expected the end, got {p:?}"))),
        }
    }
}

/// A WebSocket as a byte stream: each write is one binary message, reads concatenate binary
/// messages.
pub struct WsBytes<S> {
    ws: WebSocketStream<S>,
    unread: Bytes,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsBytes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.unread.is_empty() {
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.unread = data,
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(other)) => {
                    let message = format!("unexpected WebSocket message {other:?}");
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, message)));
                }
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..n]);
        self.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsBytes<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io::Error::other)?;
        let message = Message::Binary(Bytes::copy_from_slice(buf));
        Pin::new(&mut self.ws)
            .start_send(message)
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}

/// Waits until the broker closes `stream` (EOF, reset or any error), reading and discarding
/// what it sends; returns everything read. An error if it is still open after `limit`.
pub async fn read_until_closed<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> io::Result<Vec<u8>> {
    let mut seen = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    match tokio::time::timeout(limit, read_all).await {
        Ok(()) => Ok(seen),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("still open after {limit:?}"),
        )),
    }
}

/// The first flight of a TLS 1.3 client: a whole ClientHello record, made once and replayed
/// (in part, or dribbled) by the hostile clients.
pub fn client_hello(config: Arc<ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut hello).unwrap();
    }
    hello
}

/// Sends `bytes` and flushes; errors ignored (the broker may have closed already, which is
/// what a hostile client expects).
pub async fn send_quietly<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    let _ = tokio::time::timeout(WAIT, async {
        let _ = stream.write_all(bytes).await;
        let _ = stream.flush().await;
    })
    .await;
}
