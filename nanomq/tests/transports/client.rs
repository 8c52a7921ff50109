//! The test's own clients: TLS through tokio-rustls (ring provider), the WebSocket handshake
//! through tokio-tungstenite, and a small MQTT client on the crate's codec over any byte stream,
//! including [`WsBytes`], which carries MQTT in binary WebSocket messages.

use std::future::{poll_fn, Future};
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
    decode, encode, Connect, Packet, ProtocolVersion, Publish, ReasonCode, Subscribe,
    SubscriptionOptions,
};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::pki::{Ca, Identity};

/// Longer than anything a test waits for; a broker that never answers fails the test instead
/// of hanging it.
pub const WAIT: Duration = Duration::from_secs(10);

/// Runs `f`, panicking with `what` after [`WAIT`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

pub const BOTH_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A TLS client that trusts `trust` only, speaks `versions`, offers no ALPN and presents
/// `identity` when given one.
pub fn tls_config(
    trust: &Ca,
    versions: &[&'static SupportedProtocolVersion],
    identity: Option<&Identity>,
) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(trust.der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    match identity {
        Some(id) => builder.with_client_auth_cert(id.chain(), id.key()).unwrap(),
        None => builder.with_no_client_auth(),
    }
}

pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// A TLS session to `addr`, or the reason the handshake failed.
pub async fn tls_connect(
    addr: SocketAddr,
    config: ClientConfig,
) -> io::Result<TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    within("TLS handshake", async {
        let tcp = TcpStream::connect(addr).await?;
        connector.connect(server_name(), tcp).await
    })
    .await
}

/// MQTT over TLS, or None when the handshake, CONNECT or CONNACK fails.
pub async fn try_mqtt_over_tls(
    addr: SocketAddr,
    config: ClientConfig,
    client_id: &str,
) -> Option<MqttClient<TlsStream<TcpStream>>> {
    let tls = tls_connect(addr, config).await.ok()?;
    MqttClient::try_connect(tls, ProtocolVersion::V5, client_id).await
}

/// The WebSocket handshake for `path` over `stream`, asking for `subprotocol` if given.
pub async fn ws_handshake<S>(
    stream: S,
    path: &str,
    subprotocol: Option<&str>,
) -> Result<(WsBytes<S>, Response), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = format!("ws://localhost{path}").into_client_request()?;
    if let Some(p) = subprotocol {
        let headers = request.headers_mut();
        headers.insert("sec-websocket-protocol", p.parse().unwrap());
    }
    let (ws, response) = within(
        "WebSocket handshake",
        tokio_tungstenite::client_async_with_config(request, stream, None),
    )
    .await?;
    let ws = WsBytes {
        ws,
        unread: Bytes::new(),
    };
    Ok((ws, response))
}

/// MQTT over WebSocket on `/mqtt`, asking for the `mqtt` subprotocol.
pub async fn mqtt_over_ws<S>(stream: S, client_id: &str) -> MqttClient<WsBytes<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (ws, _) = ws_handshake(stream, "/mqtt", Some("mqtt")).await.unwrap();
    MqttClient::connect(ws, ProtocolVersion::V5, client_id).await
}

/// A WebSocket as a byte stream: each write is one binary message, reads concatenate binary
/// messages. Tests that choose their own framing use [`WsBytes::send_message`].
pub struct WsBytes<S> {
    ws: WebSocketStream<S>,
    unread: Bytes,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsBytes<S> {
    pub async fn send_message(&mut self, message: Message) -> Result<(), WsError> {
        within("WebSocket send", async {
            poll_fn(|cx| Pin::new(&mut self.ws).poll_ready(cx)).await?;
            Pin::new(&mut self.ws).start_send(message)?;
            poll_fn(|cx| Pin::new(&mut self.ws).poll_flush(cx)).await
        })
        .await
    }

    /// The next message of any kind; None once the connection is gone.
    pub async fn next_message(&mut self) -> Option<Result<Message, WsError>> {
        within(
            "WebSocket message",
            poll_fn(|cx| Pin::new(&mut self.ws).poll_next(cx)),
        )
        .await
    }
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

/// A minimal MQTT client on the crate's own codec.
pub struct MqttClient<S> {
    pub stream: S,
    rbuf: BytesMut,
    version: ProtocolVersion,
}

impl<S: AsyncRead + AsyncWrite + Unpin> MqttClient<S> {
    /// A client that has sent nothing yet and frames packets as `version`.
    pub fn new(stream: S, version: ProtocolVersion) -> Self {
        MqttClient {
            stream,
            rbuf: BytesMut::new(),
            version,
        }
    }

    /// CONNECT, and panics unless CONNACK accepts it.
    pub async fn connect(stream: S, version: ProtocolVersion, client_id: &str) -> Self {
        match Self::try_connect(stream, version, client_id).await {
            Some(client) => client,
            None => panic!("{client_id}: connection closed before CONNACK"),
        }
    }

    /// CONNECT; None when the connection fails or closes before CONNACK.
    pub async fn try_connect(stream: S, version: ProtocolVersion, client_id: &str) -> Option<Self> {
        let mut client = MqttClient::new(stream, version);
        client
            .send(&connect_packet(version, client_id))
            .await
            .ok()?;
        client.expect_connack().await.then_some(client)
    }

    /// Waits for CONNACK: true if it accepts, false if the connection closes first.
    pub async fn expect_connack(&mut self) -> bool {
        match self.recv().await {
            Some(Packet::ConnAck(ack)) => {
                assert_eq!(ack.reason, ReasonCode::SUCCESS);
                true
            }
            None => false,
            Some(other) => panic!("expected CONNACK, got {other:?}"),
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

    /// The next packet, or None once the connection is closed or failed.
    pub async fn recv(&mut self) -> Option<Packet> {
        within("packet from the broker", async {
            loop {
                if let Some(p) = decode(&mut self.rbuf, self.version, u32::MAX).unwrap() {
                    return Some(p);
                }
                match self.stream.read_buf(&mut self.rbuf).await {
                    Ok(n) if n > 0 => {}
                    _ => return None,
                }
            }
        })
        .await
    }

    pub async fn subscribe(&mut self, filter: &str) {
        self.send(&subscribe_packet(filter)).await.unwrap();
        self.expect_suback().await;
    }

    pub async fn expect_suback(&mut self) {
        match self.recv().await {
            Some(Packet::SubAck(ack)) => assert_eq!(ack.reasons, [ReasonCode::SUCCESS]),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes at QoS 0.
    pub async fn publish(&mut self, topic: &str, payload: &'static [u8]) {
        let publish = Publish {
            topic: topic.into(),
            payload: Bytes::from_static(payload),
            ..Publish::default()
        };
        self.send(&Packet::Publish(publish)).await.unwrap();
    }

    pub async fn expect_publish(&mut self, topic: &str, payload: &[u8]) {
        match self.recv().await {
            Some(Packet::Publish(p)) => {
                assert_eq!((p.topic.as_str(), &p.payload[..]), (topic, payload));
            }
            other => panic!("expected PUBLISH on {topic}, got {other:?}"),
        }
    }

    /// PINGREQ, and panics unless PINGRESP comes back.
    pub async fn ping(&mut self) {
        self.send(&Packet::PingReq).await.unwrap();
        assert_eq!(self.recv().await, Some(Packet::PingResp));
    }

    /// Panics unless the next packet is a DISCONNECT with `reason`.
    pub async fn expect_disconnect(&mut self, reason: ReasonCode) {
        match self.recv().await {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason),
            other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
        }
    }
}

/// A clean-start CONNECT without keepalive.
pub fn connect_packet(version: ProtocolVersion, client_id: &str) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        client_id: client_id.into(),
        ..Connect::default()
    }))
}

/// SUBSCRIBE to one filter at QoS 0.
pub fn subscribe_packet(filter: &str) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(filter.into(), SubscriptionOptions::default())],
        ..Subscribe::default()
    })
}

/// The packet's bytes as `version` frames them.
pub fn encoded(packets: &[Packet], version: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    for p in packets {
        encode(p, version, &mut out);
    }
    out
}

/// Reads until the peer closes (EOF or error); panics after [`WAIT`].
pub async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S) {
    within("the broker to close the connection", async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
}
