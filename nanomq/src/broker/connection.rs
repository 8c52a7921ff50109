//! One task per connection: frames bytes with the codec, drives the session, and writes what the
//! session produces. Reads parse every complete packet in the buffer before going back to the
//! socket; writes send everything ready in one call. Reading and writing run side by side, so a
//! client that does not read cannot dead-lock one that does not write, and the write buffer is
//! bounded: reading pauses while the client does not drain its replies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::connect;
use super::publish::{message, route};
use super::registry::{arm_timers, finish_session, LinkEnd, SessionHandle, SessionRef};
use super::Broker;
use crate::mqtt::{
    decode, encode, Disconnect, Packet, ProtocolVersion, PubAck, Publish, QoS, ReasonCode, Will,
};
use crate::router::validate_topic_name;

/// Stop taking messages from the session once this much is waiting to be written.
const WRITE_BUDGET: usize = 64 * 1024;
/// Stop reading from a client that leaves this much of our output unread.
const WRITE_BACKLOG_LIMIT: usize = 4 * WRITE_BUDGET;
/// How long a final DISCONNECT or CONNACK may take to write before the socket is dropped.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// The socket halves and their buffers. Buffers start empty and grow with use.
pub(crate) struct Io<R, W> {
    rd: R,
    wr: W,
    pub(crate) rbuf: BytesMut,
    pub(crate) wbuf: BytesMut,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Io<R, W> {
    /// Reads more bytes; 0 means the peer closed.
    pub(crate) async fn read_more(&mut self, broker: &Broker) -> std::io::Result<usize> {
        read_into(&mut self.rd, &mut self.rbuf, broker).await
    }

    /// Writes out everything buffered, bounded in time: used for goodbyes, not the hot path.
    pub(crate) async fn flush(&mut self, broker: &Broker) {
        let n = self.wbuf.len();
        if n == 0 {
            return;
        }
        let done = tokio::time::timeout(GOODBYE_TIMEOUT, self.wr.write_all(&self.wbuf)).await;
        if matches!(done, Ok(Ok(()))) {
            broker
                .metrics
                .bytes_sent
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        self.wbuf.clear();
        let _ = self.wr.shutdown().await;
    }
}

/// Reads what the socket has into `buf`, growing it in steps; 0 means the peer closed.
async fn read_into<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    broker: &Broker,
) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    let n = rd.read_buf(buf).await?;
    broker
        .metrics
        .bytes_received
        .fetch_add(n as u64, Ordering::Relaxed);
    Ok(n)
}

/// Serves one accepted connection from its first byte to its end.
pub(crate) async fn run<R, W>(broker: Arc<Broker>, rd: R, wr: W, peer: SocketAddr)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut io = Io {
        rd,
        wr,
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
    };
    let Some(mut conn) = connect::handshake(&broker, &mut io, peer).await else {
        return;
    };
    let ending = conn.serve(&mut io).await;
    if let Some(reason) = ending.disconnect_reason() {
        if conn.version.is_v5() {
            let d = Disconnect {
                reason,
                ..Disconnect::default()
            };
            encode(&Packet::Disconnect(d), conn.version, &mut io.wbuf);
        }
    }
    io.flush(&broker).await;
    conn.finish(ending);
}

/// Why a connection ended; decides the DISCONNECT sent and whether the will is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The client sent DISCONNECT; `with_will` for reason 0x04.
    ClientDisconnect { with_will: bool },
    /// The socket closed or failed without DISCONNECT.
    Closed,
    /// Another connection took the session over (or another control reason).
    Kicked(ReasonCode),
    /// The broker is shutting down.
    Shutdown,
    /// The client broke the protocol or a limit; the code goes in the DISCONNECT.
    Violation(ReasonCode),
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::ClientDisconnect { with_will: false } => f.write_str("client disconnected"),
            Ending::ClientDisconnect { with_will: true } => {
                f.write_str("client disconnected with will")
            }
            Ending::Closed => f.write_str("connection closed without DISCONNECT"),
            Ending::Kicked(r) => write!(f, "taken over (reason 0x{:02x})", r.0),
            Ending::Shutdown => f.write_str("broker shutting down"),
            Ending::Violation(r) => write!(f, "closed by the broker (reason 0x{:02x})", r.0),
        }
    }
}

impl Ending {
    fn disconnect_reason(self) -> Option<ReasonCode> {
        match self {
            Ending::ClientDisconnect { .. } | Ending::Closed => None,
            Ending::Kicked(r) | Ending::Violation(r) => Some(r),
            Ending::Shutdown => Some(ReasonCode::SERVER_SHUTTING_DOWN),
        }
    }
}

/// An accepted MQTT connection attached to its session.
pub(crate) struct Connection {
    pub(crate) broker: Arc<Broker>,
    pub(crate) handle: Arc<SessionHandle>,
    pub(crate) me: SessionRef,
    pub(crate) version: ProtocolVersion,
    pub(crate) peer: SocketAddr,
    /// Effective keepalive; the connection is closed after 1.5 times it without a packet.
    pub(crate) keep_alive: Duration,
    pub(crate) will: Option<Will>,
    /// Session Expiry Interval given in CONNECT, for the DISCONNECT rule MQTT-3.14.2-2.
    pub(crate) connect_expiry: u32,
    pub(crate) link: LinkEnd,
    /// Topic aliases the client set on this connection.
    pub(crate) inbound_aliases: HashMap<u16, Arc<str>>,
}

impl Connection {
    async fn serve<R, W>(&mut self, io: &mut Io<R, W>) -> Ending
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let broker = self.broker.clone();
        let mut stop = broker.stop.clone();
        let idle_limit = self.keep_alive.mul_f32(1.5);
        let keepalive = tokio::time::sleep(idle_limit);
        tokio::pin!(keepalive);
        // Anything already buffered behind CONNECT.
        if let Err(end) = self.on_bytes(io) {
            return end;
        }
        loop {
            self.fill(io);
            let reading = io.wbuf.len() < WRITE_BACKLOG_LIMIT;
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return Ending::Shutdown,
                r = &mut self.link.kicked => {
                    return Ending::Kicked(r.unwrap_or(ReasonCode::SESSION_TAKEN_OVER));
                }
                r = io.wr.write(&io.wbuf), if !io.wbuf.is_empty() => match r {
                    Ok(n) if n > 0 => {
                        io.wbuf.advance(n);
                        broker.metrics.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    _ => return Ending::Closed,
                },
                r = read_into(&mut io.rd, &mut io.rbuf, &broker), if reading => match r {
                    Ok(n) if n > 0 => {
                        if !self.keep_alive.is_zero() {
                            keepalive.as_mut().reset(Instant::now() + idle_limit);
                        }
                        if let Err(end) = self.on_bytes(io) {
                            return end;
                        }
                    }
                    _ => return Ending::Closed,
                },
                _ = self.handle.wake.notified() => {}
                _ = &mut keepalive, if !self.keep_alive.is_zero() => {
                    tracing::debug!(client_id = %self.handle.client_id, "keepalive timeout");
                    return Ending::Violation(ReasonCode::KEEP_ALIVE_TIMEOUT);
                }
            }
        }
    }

    /// Moves what the session can send now into the write buffer.
    fn fill<R, W>(&mut self, io: &mut Io<R, W>) {
        if io.wbuf.len() >= WRITE_BUDGET {
            return;
        }
        let stats = {
            let mut s = self.handle.state();
            if !s.has_pending() {
                return;
            }
            s.write_pending(Instant::now(), &mut io.wbuf, WRITE_BUDGET)
        };
        let m = &self.broker.metrics;
        m.messages_sent
            .fetch_add(stats.published, Ordering::Relaxed);
        if stats.expired > 0 {
            m.messages_expired
                .fetch_add(stats.expired, Ordering::Relaxed);
        }
        if stats.too_large > 0 {
            tracing::debug!(
                client_id = %self.handle.client_id,
                count = stats.too_large,
                "messages over the client's maximum packet size discarded"
            );
        }
    }

    /// Handles every complete packet in the read buffer.
    fn on_bytes<R, W>(&mut self, io: &mut Io<R, W>) -> Result<(), Ending> {
        let max = self.broker.config.limits.max_packet_size;
        loop {
            match decode(&mut io.rbuf, self.version, max) {
                Ok(Some(packet)) => self.on_packet(packet, &mut io.wbuf)?,
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::debug!(client_id = %self.handle.client_id, peer = %self.peer, "{e}");
                    return Err(Ending::Violation(e.reason_code()));
                }
            }
        }
    }

    fn on_packet(&mut self, packet: Packet, out: &mut BytesMut) -> Result<(), Ending> {
        match packet {
            Packet::Publish(p) => self.on_publish(p, out),
            Packet::PubAck(a) => {
                self.handle.state().on_puback(a.packet_id);
                Ok(())
            }
            Packet::PubRec(a) => {
                let release = self
                    .handle
                    .state()
                    .on_pubrec(a.packet_id, a.reason.is_error());
                if release {
                    self.ack(Packet::PubRel, a.packet_id, ReasonCode::SUCCESS, out);
                } else if !a.reason.is_error() {
                    self.ack(
                        Packet::PubRel,
                        a.packet_id,
                        ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                        out,
                    );
                }
                Ok(())
            }
            Packet::PubComp(a) => {
                self.handle.state().on_pubcomp(a.packet_id);
                Ok(())
            }
            Packet::PubRel(a) => {
                let known = self.handle.state().on_pubrel(a.packet_id);
                let reason = if known {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                };
                self.ack(Packet::PubComp, a.packet_id, reason, out);
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(s, out),
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u, out);
                Ok(())
            }
            Packet::PingReq => {
                encode(&Packet::PingResp, self.version, out);
                Ok(())
            }
            Packet::Disconnect(d) => Err(self.on_disconnect(d)),
            // No enhanced authentication method is offered, so AUTH can never be expected.
            Packet::Auth(_) | Packet::Connect(_) => {
                Err(Ending::Violation(ReasonCode::PROTOCOL_ERROR))
            }
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Err(Ending::Violation(ReasonCode::PROTOCOL_ERROR))
            }
        }
    }

    /// Appends a PUBACK-shaped packet (`kind` picks which).
    pub(crate) fn ack(
        &self,
        kind: fn(PubAck) -> Packet,
        packet_id: u16,
        reason: ReasonCode,
        out: &mut BytesMut,
    ) {
        let ack = PubAck {
            packet_id,
            reason,
            ..PubAck::default()
        };
        encode(&kind(ack), self.version, out);
    }

    fn on_publish(&mut self, p: Publish, out: &mut BytesMut) -> Result<(), Ending> {
        let broker = self.broker.clone();
        let cfg = &broker.config;
        if p.qos as u8 > cfg.mqtt.max_qos {
            return Err(Ending::Violation(ReasonCode::QOS_NOT_SUPPORTED));
        }
        if p.retain && !cfg.mqtt.retain_available {
            return Err(Ending::Violation(ReasonCode::RETAIN_NOT_SUPPORTED));
        }
        // MQTT-3.3.4-6: subscription identifiers only flow from server to client.
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(Ending::Violation(ReasonCode::PROTOCOL_ERROR));
        }
        let topic = self.resolve_topic(&p)?;
        if validate_topic_name(&topic, cfg.limits.max_topic_levels).is_err() {
            return Err(Ending::Violation(ReasonCode::TOPIC_NAME_INVALID));
        }
        self.broker
            .metrics
            .messages_received
            .fetch_add(1, Ordering::Relaxed);
        let route_now = match p.qos {
            QoS::ExactlyOnce => {
                let mut s = self.handle.state();
                let receive_max = usize::from(cfg.limits.receive_maximum);
                if s.inbound_in_flight() >= receive_max && !s.has_inbound_qos2(p.packet_id) {
                    return Err(Ending::Violation(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED));
                }
                s.on_inbound_qos2(p.packet_id)
            }
            _ => true,
        };
        let mut matched = 0;
        if route_now {
            let m = message(
                topic,
                p.payload,
                p.qos,
                p.retain,
                p.properties,
                Instant::now(),
            );
            matched = route(&self.broker, Arc::new(m), Some(&self.me));
        }
        let reason = if matched == 0 && route_now {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.ack(Packet::PubAck, p.packet_id, reason, out),
            QoS::ExactlyOnce => self.ack(Packet::PubRec, p.packet_id, reason, out),
        }
        Ok(())
    }

    /// The topic of an inbound PUBLISH, applying and recording Topic Aliases (MQTT 5 3.3.2.3.4).
    fn resolve_topic(&mut self, p: &Publish) -> Result<Arc<str>, Ending> {
        let Some(alias) = p.properties.topic_alias else {
            if p.topic.is_empty() {
                return Err(Ending::Violation(ReasonCode::PROTOCOL_ERROR));
            }
            return Ok(Arc::from(p.topic.as_str()));
        };
        if alias == 0 || alias > self.broker.config.limits.max_topic_alias {
            return Err(Ending::Violation(ReasonCode::TOPIC_ALIAS_INVALID));
        }
        if p.topic.is_empty() {
            return self
                .inbound_aliases
                .get(&alias)
                .cloned()
                .ok_or(Ending::Violation(ReasonCode::PROTOCOL_ERROR));
        }
        let topic: Arc<str> = Arc::from(p.topic.as_str());
        self.inbound_aliases.insert(alias, topic.clone());
        Ok(topic)
    }

    fn on_disconnect(&mut self, d: Disconnect) -> Ending {
        if let Some(expiry) = d.properties.session_expiry_interval {
            // MQTT-3.14.2-2: a session that was to end with the connection cannot be extended.
            if self.connect_expiry == 0 && expiry != 0 {
                return Ending::Violation(ReasonCode::PROTOCOL_ERROR);
            }
            let cap = self.broker.config.limits.max_session_expiry_secs;
            self.handle.state().expiry_interval = expiry.min(cap);
        }
        Ending::ClientDisconnect {
            with_will: d.reason == ReasonCode::DISCONNECT_WITH_WILL,
        }
    }

    /// Detaches the session and settles its future: will now or later, session ended now or at
    /// expiry. A successor that took the session over has already been waiting for this.
    fn finish(self, ending: Ending) {
        let broker = &self.broker;
        broker
            .metrics
            .clients_connected
            .fetch_sub(1, Ordering::Relaxed);
        let will = match ending {
            Ending::ClientDisconnect { with_will: false } => None,
            _ => self.will,
        };
        let will_delay = will
            .as_ref()
            .map(|w| w.properties.will_delay_interval.unwrap_or(0));
        let (epoch, expiry) = {
            let mut s = self.handle.state();
            s.detach();
            s.pending_will = will;
            (self.handle.set_online(false), s.expiry_interval)
        };
        tracing::info!(
            client_id = %self.handle.client_id,
            peer = %self.peer,
            "{ending}"
        );
        if will_delay == Some(0) {
            let will = self.handle.state().pending_will.take();
            if let Some(w) = will {
                super::publish::publish_will(broker, w);
            }
        }
        if expiry == 0 {
            if broker.sessions.end(&self.handle, None) {
                finish_session(broker, &self.handle);
            }
        } else {
            arm_timers(broker, &self.handle, epoch, will_delay, expiry);
        }
        broker.sessions.release(&self.handle, self.link.serial);
        // A successor waiting to take the session over may go ahead now.
        let _ = self.link.detached.send(());
    }
}
