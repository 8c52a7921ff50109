//! A connection's socket and its two buffers. Both buffers hold memory only while bytes are in
//! them: reads land on the stack first and are copied into a buffer of their own size, and a
//! buffer is given back as soon as it is empty, so an idle connection holds neither.

use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::Broker;

/// Bytes taken from the socket per read while no partial packet is buffered. Reads land on the
/// stack first, so this costs an idle connection nothing, and it is large enough that a typical
/// PUBLISH (a 16 KiB payload, say) arrives in one read and is copied once.
const READ_CHUNK: usize = 64 * 1024;
/// Room added to the read buffer for each read that continues a partial packet.
const PARTIAL_STEP: usize = 16 * 1024;
/// How long a final DISCONNECT or CONNACK may take to write before the socket is dropped.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// The socket and its buffers. Both buffers are empty, holding no memory, while idle.
pub(crate) struct Io<S> {
    stream: S,
    pub(crate) rbuf: BytesMut,
    pub(crate) wbuf: BytesMut,
    /// Bytes were written since the last flush. TLS and WebSocket streams may hold written
    /// bytes back until flushed; TCP's flush does nothing.
    unflushed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    /// A freshly accepted socket, with no buffers yet.
    pub(crate) fn new(stream: S) -> Self {
        Io {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            unflushed: false,
        }
    }

    /// Reads more bytes; 0 means the peer closed.
    pub(crate) async fn read_more(&mut self, broker: &Broker) -> std::io::Result<usize> {
        poll_fn(|cx| self.poll_read(cx, broker)).await
    }

    /// Reads what the socket has and appends it to `rbuf`; 0 means the peer closed. While no
    /// partial packet is buffered, bytes land in a stack buffer and are copied into a buffer of
    /// their own size, so a connection waiting for its next packet holds no read buffer.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        broker: &Broker,
    ) -> Poll<std::io::Result<usize>> {
        let n = if self.rbuf.is_empty() {
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut chunk);
            ready!(Pin::new(&mut self.stream).poll_read(cx, &mut buf))?;
            self.rbuf = BytesMut::from(buf.filled());
            buf.filled().len()
        } else {
            self.rbuf.reserve(PARTIAL_STEP);
            let mut buf = ReadBuf::uninit(self.rbuf.spare_capacity_mut());
            ready!(Pin::new(&mut self.stream).poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            // SAFETY: `poll_read` initialised the first `n` bytes of the spare capacity.
            unsafe { self.rbuf.set_len(self.rbuf.len() + n) };
            n
        };
        broker
            .metrics
            .bytes_received
            .fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    /// Whether [`Io::poll_write`] has anything to do: bytes to write or to flush.
    pub(crate) fn wants_write(&self) -> bool {
        !self.wbuf.is_empty() || self.unflushed
    }

    /// Writes as much of `wbuf` as the socket takes, and flushes the stream once `wbuf` is
    /// empty. `Ready(false)` means the socket failed.
    pub(crate) fn poll_write(&mut self, cx: &mut Context<'_>, broker: &Broker) -> Poll<bool> {
        if !self.wbuf.is_empty() {
            match ready!(Pin::new(&mut self.stream).poll_write(cx, &self.wbuf)) {
                Ok(n) if n > 0 => {
                    self.wbuf.advance(n);
                    self.unflushed = true;
                    broker
                        .metrics
                        .bytes_sent
                        .fetch_add(n as u64, Ordering::Relaxed);
                    if !self.wbuf.is_empty() {
                        return Poll::Ready(true);
                    }
                }
                _ => return Poll::Ready(false),
            }
        }
        if self.unflushed {
            if ready!(Pin::new(&mut self.stream).poll_flush(cx)).is_err() {
                return Poll::Ready(false);
            }
            self.unflushed = false;
        }
        Poll::Ready(true)
    }

    /// Gives back buffers that hold nothing; the payloads already handed on keep their bytes.
    pub(crate) fn release_empty_buffers(&mut self) {
        // Empty buffers may still share a block with payloads already handed on: replacing
        // them drops that reference too.
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() {
            self.wbuf = BytesMut::new();
        }
    }

    /// Writes out everything buffered and closes the stream (TLS close_notify, WebSocket Close,
    /// TCP FIN), bounded in time: used for goodbyes, not the hot path.
    pub(crate) async fn flush(&mut self, broker: &Broker) {
        let goodbye = async {
            self.stream.write_all(&self.wbuf).await?;
            self.stream.flush().await?;
            broker
                .metrics
                .bytes_sent
                .fetch_add(self.wbuf.len() as u64, Ordering::Relaxed);
            self.stream.shutdown().await
        };
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, goodbye).await;
        self.wbuf = BytesMut::new();
    }
}
