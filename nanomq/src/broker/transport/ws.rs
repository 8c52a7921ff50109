//! WebSocket listeners: the HTTP upgrade on one path, then MQTT in binary frames. Packets may be
//! split across frames or several packets joined in one; the stream below hides frames from
//! the connection, which sees bytes as on TCP.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::{ClientCertificate, Upgrade};
use crate::broker::Broker;

/// Subprotocols MQTT clients ask for: `mqtt` (3.1.1 and 5) and `mqttv3.1`. The first one the
/// client offers is echoed back.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];
/// Bytes read from the socket at a time. tungstenite allocates this per connection up front
/// (128 KiB by default); MQTT frames are small, and larger ones just take more reads.
const READ_BUFFER: usize = 4 * 1024;
/// Room for a WebSocket frame header around the largest MQTT packet.
const FRAME_OVERHEAD: usize = 14;

/// The HTTP upgrade to WebSocket, over `inner` (plain TCP or TLS).
pub(crate) struct WsUpgrade<I> {
    inner: I,
    path: Arc<str>,
    config: WebSocketConfig,
}

impl<I> WsUpgrade<I> {
    pub(crate) fn new(inner: I, path: Arc<str>, broker: &Broker) -> Self {
        let max = broker.config.limits.max_packet_size as usize + FRAME_OVERHEAD;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            // Each write is one message, sent at once: the connection batches already.
            .write_buffer_size(0)
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        WsUpgrade {
            inner,
            path,
            config,
        }
    }
}

impl<I: Upgrade> Upgrade for WsUpgrade<I> {
    type Stream = WsStream<I::Stream>;

    async fn upgrade(
        self,
        tcp: TcpStream,
    ) -> io::Result<(Self::Stream, Option<ClientCertificate>)> {
        let (stream, certificate) = self.inner.upgrade(tcp).await?;
        let path = self.path;
        #[allow(clippy::result_large_err)] // tungstenite's callback signature
        let accept = move |request: &Request, response: Response| answer(&path, request, response);
        let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, accept, Some(self.config))
            .await
            .map_err(into_io)?;
        let stream = WsStream {
            ws,
            unread: Bytes::new(),
        };
        Ok((stream, certificate))
    }
}

/// Accepts the upgrade on the configured path only (404 elsewhere) and echoes the MQTT
/// subprotocol the client asked for. A client that names none is still served: some MQTT
/// libraries leave the header out.
#[allow(clippy::result_large_err)] // tungstenite's callback signature
fn answer(
    path: &str,
    request: &Request,
    mut response: Response,
) -> Result<Response, ErrorResponse> {
    if request.uri().path() != path {
        let mut refusal =
            ErrorResponse::new(Some(format!("no WebSocket endpoint here: use {path}\n")));
        *refusal.status_mut() = StatusCode::NOT_FOUND;
        return Err(refusal);
    }
    let offered = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    let chosen = offered.into_iter().find(|p| {
        SUBPROTOCOLS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(p))
    });
    if let Some(protocol) = chosen.and_then(|p| HeaderValue::from_str(p).ok()) {
        response
            .headers_mut()
            .insert("sec-websocket-protocol", protocol);
    }
    Ok(response)
}

/// MQTT bytes over a WebSocket: reads concatenate binary messages, each write sends one.
pub(crate) struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// The rest of the binary message being read.
    unread: Bytes,
}

impl<S> AsyncRead for WsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.unread.is_empty() {
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.unread = data,
                // Control frames: tungstenite answers pings itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame on an MQTT WebSocket (MQTT travels in binary frames)",
                    )))
                }
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(into_io(e))),
            }
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..n]);
        self.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S> AsyncWrite for WsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let ws = Pin::new(&mut self.ws);
        ready!(ws.poll_ready(cx)).map_err(into_io)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(into_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(into_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(into_io)
    }
}

fn into_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}
