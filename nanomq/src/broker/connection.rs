//! One task per connection: frames bytes with the codec, drives the session, and writes what the
//! session produces. Reads parse every complete packet in the buffer before going back to the
//! socket; writes send everything ready in one call. Reading and writing run side by side, so a
//! client that does not read cannot dead-lock one that does not write, and the write buffer is
//! bounded: reading pauses while the client does not drain its replies.
//!
//! An idle connection costs little: the serving loop is one hand-polled function (no `select!`
//! state kept between polls), the buffers (`io`) exist only while bytes are in them, and the
//! session is reached through a waker slot in its handle rather than channels.
//!
//! A PUBLISH or SUBSCRIBE waiting for the HTTP auth service is parked (see `authorize`): the
//! loop keeps writing, reads at most [`PARKED_READ_LIMIT`] more bytes, parses none of them, and
//! goes on once the answers are in.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::admission::PendingSlot;
use super::authorize::Identity;
use super::io::Io;
use super::persist::HeldAcks;
use super::publish::{message, route};
use super::registry::{arm_timers, finish_session, LinkSerial, SessionHandle, SessionRef, Signal};
use super::transport::Upgrade;
use super::Broker;
use super::{connect, keepalive};
use crate::auth::{Action, Verdict};
use crate::mqtt::{
    decode, encode, Disconnect, Packet, ProtocolVersion, PubAck, Publish, QoS, ReasonCode, Will,
};
use crate::router::validate_topic_name;
use crate::store::Ticket;

/// Stop taking messages from the session once this much is waiting to be written.
const WRITE_BUDGET: usize = 64 * 1024;
/// Stop reading from a client that leaves this much of our output unread.
const WRITE_BACKLOG_LIMIT: usize = 4 * WRITE_BUDGET;
/// While a packet waits for the HTTP auth service, read no further once this much is buffered.
const PARKED_READ_LIMIT: usize = 64 * 1024;

/// Serves one accepted connection from its first byte to its end: the transport's own
/// handshake (`upgrade`), CONNECT, then packets. `guard` is dropped when the connection is over.
/// `listener` names the listener for log lines, shared by all its connections.
pub(crate) fn serve<U, G>(
    broker: Arc<Broker>,
    tcp: TcpStream,
    peer: SocketAddr,
    listener: Arc<String>,
    guard: G,
    upgrade: U,
) -> ConnectionTask<U::Stream, G>
where
    U: Upgrade,
{
    let pending = PendingSlot::take(&broker);
    let handshake = async move {
        let _pending = pending;
        connect::handshake(broker, tcp, upgrade, peer, listener).await
    };
    ConnectionTask {
        phase: Phase::Handshake(Box::pin(handshake)),
        _guard: guard,
    }
}

/// The task of one connection, written as a plain state machine because it is what every idle
/// connection costs: an `async fn` would keep its arguments and the locals of every phase side
/// by side for the connection's whole life, where this keeps the serving phase's state only and
/// boxes the short-lived phases (handshake, goodbye).
pub(crate) struct ConnectionTask<S, G> {
    phase: Phase<S>,
    _guard: G,
}

type BoxedPhase<T> = Pin<Box<dyn Future<Output = T> + Send>>;

enum Phase<S> {
    Handshake(BoxedPhase<Option<(Connection, Io<S>)>>),
    Serving(Connection, Io<S>),
    Goodbye(BoxedPhase<()>),
    Done,
}

impl<S, G> Future for ConnectionTask<S, G>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    G: Unpin,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let next = match &mut self.phase {
                Phase::Handshake(f) => match ready!(f.as_mut().poll(cx)) {
                    Some((mut conn, mut io)) => match conn.start(&mut io) {
                        Ok(()) => Phase::Serving(conn, io),
                        Err(ending) => Phase::Goodbye(Box::pin(goodbye(conn, io, ending))),
                    },
                    None => Phase::Done,
                },
                Phase::Serving(conn, io) => {
                    let ending = ready!(conn.poll_serve(io, cx));
                    match std::mem::replace(&mut self.phase, Phase::Done) {
                        Phase::Serving(conn, io) => {
                            Phase::Goodbye(Box::pin(goodbye(conn, io, ending)))
                        }
                        _ => unreachable!("phase changed while serving"),
                    }
                }
                Phase::Goodbye(f) => {
                    ready!(f.as_mut().poll(cx));
                    Phase::Done
                }
                Phase::Done => return Poll::Ready(()),
            };
            self.phase = next;
        }
    }
}

/// Says goodbye (DISCONNECT with the reason to MQTT 5 clients), then settles the session.
async fn goodbye<S>(mut conn: Connection, mut io: Io<S>, ending: Ending)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(reason) = ending.disconnect_reason() {
        if conn.version.is_v5() {
            let d = Disconnect {
                reason,
                ..Disconnect::default()
            };
            encode(&Packet::Disconnect(d), conn.version, &mut io.wbuf);
        }
    }
    io.flush(&conn.broker).await;
    conn.ask_about_will(ending).await;
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
    /// Our session, as the subscription tree knows it.
    pub(crate) me: SessionRef,
    pub(crate) version: ProtocolVersion,
    pub(crate) peer: SocketAddr,
    /// The listener it came in on, as log lines name it (`tcp 0.0.0.0:1883`): one string per
    /// listener, shared, behind a thin pointer (`Arc<str>` would cost every idle connection
    /// 8 bytes more and push its task out of its cell).
    pub(crate) listener: Arc<String>,
    /// Effective keepalive in seconds (0: off); the connection is closed after 1.5 times it
    /// without a packet.
    pub(crate) keep_alive: u16,
    pub(crate) will: Option<Box<Will>>,
    /// Session Expiry Interval given in CONNECT, for the DISCONNECT rule MQTT-3.14.2-2.
    pub(crate) connect_expiry: u32,
    /// Our link serial in the session handle.
    pub(crate) serial: LinkSerial,
    /// Topic aliases the client set on this connection; allocated on the first, since most
    /// clients never set one and every idle connection pays for what is inline here.
    #[allow(clippy::box_collection)]
    pub(crate) inbound_aliases: Option<Box<BTreeMap<u16, Arc<str>>>>,
    /// Who the client is, as ACL rules name it, and the ACL it was last checked against.
    /// Boxed and optional, as every idle connection pays for this struct: None for a client
    /// with neither user name nor certificate until an ACL is in force.
    pub(crate) identity: Option<Box<Identity>>,
    /// PUBACK/PUBREC waiting for the state database (see `persist`); None almost always.
    pub(crate) held: Option<Box<HeldAcks>>,
}

impl Connection {
    /// Our session.
    pub(crate) fn handle(&self) -> &Arc<SessionHandle> {
        &self.me.0
    }

    /// Readies a connection just accepted for serving: arms keepalive and handles anything
    /// the client sent right behind CONNECT.
    fn start<S>(&mut self, io: &mut Io<S>) -> Result<(), Ending>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Shutdown kicks attached connections; one attached just after that sees the flag.
        if *self.broker.stop.borrow() {
            return Err(Ending::Shutdown);
        }
        // A session taken over from a connection with keepalive keeps no stale deadline.
        self.handle().set_keepalive_deadline(0);
        self.heard_from();
        self.on_bytes(io)
    }

    /// Moves the keepalive deadline on: the client just sent something.
    fn heard_from(&self) {
        if self.keep_alive > 0 {
            let now = self.broker.uptime_secs();
            self.handle()
                .set_keepalive_deadline(keepalive::deadline(now, self.keep_alive));
        }
    }

    /// One turn of the connection: leave if told to, queue what the session has, write, read,
    /// and keep going while anything moved. Returns `Pending` with every wake-up registered and
    /// empty buffers given back.
    fn poll_serve<S>(&mut self, io: &mut Io<S>, cx: &mut Context<'_>) -> Poll<Ending>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            if let Signal::Leave(reason) = self.handle().poll_signal(self.serial, cx.waker()) {
                return Poll::Ready(match reason {
                    ReasonCode::SERVER_SHUTTING_DOWN => Ending::Shutdown,
                    ReasonCode::KEEP_ALIVE_TIMEOUT => Ending::Violation(reason),
                    _ => Ending::Kicked(reason),
                });
            }
            let mut progressed = self.release_acks(io, cx);
            self.fill(io);
            if io.wants_write() && self.output_ready(cx) {
                match io.poll_write(cx, &self.broker) {
                    Poll::Ready(true) => progressed = true,
                    Poll::Ready(false) => return Poll::Ready(Ending::Closed),
                    Poll::Pending => {}
                }
            }
            let parked = match self.poll_parked(cx) {
                Poll::Ready(Some(packet)) => {
                    if let Err(end) = self.resume(packet, io) {
                        return Poll::Ready(end);
                    }
                    progressed = true;
                    self.is_parked()
                }
                Poll::Ready(None) => false,
                Poll::Pending => true,
            };
            // Acknowledgements held for the store pace a publisher like its Receive Maximum.
            let held = self.held_acks() > usize::from(self.broker.config.limits.receive_maximum);
            if io.wbuf.len() < WRITE_BACKLOG_LIMIT
                && (!parked || io.rbuf.len() < PARKED_READ_LIMIT)
                && !held
            {
                match io.poll_read(cx, &self.broker) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        if let Err(end) = self.on_bytes(io) {
                            return Poll::Ready(end);
                        }
                        progressed = true;
                    }
                    Poll::Ready(_) => return Poll::Ready(Ending::Closed),
                    Poll::Pending => {}
                }
            }
            if !progressed {
                io.release_empty_buffers();
                return Poll::Pending;
            }
        }
    }

    /// Moves what the session can send now into the write buffer.
    fn fill<S>(&mut self, io: &mut Io<S>) {
        if io.wbuf.len() >= WRITE_BUDGET {
            return;
        }
        let stats = {
            let mut s = self.handle().state();
            if !s.has_pending() {
                return;
            }
            let stats = s.write_pending(Instant::now(), &mut io.wbuf, WRITE_BUDGET);
            let ticket = super::persist::journal(&self.broker, self.handle(), &mut s);
            drop(s);
            self.hold_output(ticket);
            stats
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
                client_id = %self.handle().client_id,
                count = stats.too_large,
                "messages over the client's maximum packet size discarded"
            );
        }
    }

    /// Handles every complete packet in the read buffer, up to one that has to wait for the
    /// HTTP auth service. Only a complete packet counts for keepalive [MQTT-3.1.2-22]: a client
    /// dribbling the bytes of one never finished packet is still closed at 1.5 times its
    /// keepalive.
    pub(super) fn on_bytes<S>(&mut self, io: &mut Io<S>) -> Result<(), Ending> {
        let max = self.broker.config.limits.max_packet_size;
        let mut heard = false;
        loop {
            if self.is_parked() {
                return Ok(());
            }
            match decode(&mut io.rbuf, self.version, max) {
                Ok(Some(packet)) => {
                    if !heard {
                        heard = true;
                        self.heard_from();
                    }
                    self.on_packet(packet, &mut io.wbuf)?;
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::debug!(client_id = %self.handle().client_id, peer = %self.peer, "{e}");
                    return Err(Ending::Violation(e.reason_code()));
                }
            }
        }
    }

    pub(super) fn on_packet(&mut self, packet: Packet, out: &mut BytesMut) -> Result<(), Ending> {
        match packet {
            Packet::Publish(p) => self.on_publish(p, out),
            Packet::PubAck(a) => {
                self.with_session(|s| s.on_puback(a.packet_id));
                Ok(())
            }
            Packet::PubRec(a) => {
                let release = self.with_session(|s| s.on_pubrec(a.packet_id, a.reason.is_error()));
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
                self.with_session(|s| s.on_pubcomp(a.packet_id));
                Ok(())
            }
            Packet::PubRel(a) => {
                let (known, released) = {
                    let mut s = self.handle().state();
                    let known = s.on_pubrel(a.packet_id);
                    (
                        known,
                        super::persist::journal(&self.broker, self.handle(), &mut s),
                    )
                };
                let reason = if known {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                };
                // Once the client has PUBCOMP it may reuse the packet id: a restart must not
                // bring the released id back, or it would swallow the next message sent with it.
                self.ack_when_stored(Packet::PubComp, a.packet_id, reason, released, out);
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
            Packet::Auth(a) => self.on_auth(a, out),
            Packet::Connect(_) => Err(Ending::Violation(ReasonCode::PROTOCOL_ERROR)),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Err(Ending::Violation(ReasonCode::PROTOCOL_ERROR))
            }
        }
    }

    /// Runs `f` on the locked session, then hands what it journaled to the store.
    fn with_session<T>(&self, f: impl FnOnce(&mut crate::session::Session) -> T) -> T {
        let mut s = self.handle().state();
        let result = f(&mut s);
        super::persist::journal(&self.broker, self.handle(), &mut s);
        result
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
        // Borrowed, not cloned: a clone per message would bounce the broker's reference count
        // between every core publishing.
        let mqtt = &self.broker.config.mqtt;
        if p.qos as u8 > mqtt.max_qos {
            return Err(Ending::Violation(ReasonCode::QOS_NOT_SUPPORTED));
        }
        if p.retain && !mqtt.retain_available {
            return Err(Ending::Violation(ReasonCode::RETAIN_NOT_SUPPORTED));
        }
        // MQTT-3.3.4-6: subscription identifiers only flow from server to client.
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(Ending::Violation(ReasonCode::PROTOCOL_ERROR));
        }
        let topic = self.resolve_topic(&p)?;
        let limits = &self.broker.config.limits;
        if validate_topic_name(&topic, limits.max_topic_levels).is_err() {
            return Err(Ending::Violation(ReasonCode::TOPIC_NAME_INVALID));
        }
        let allowed = match self.acl_verdict(Action::Publish, &topic) {
            Verdict::Allow => true,
            Verdict::Deny => false,
            Verdict::Ask(question) => {
                // Handled again, from the top, once the answer is in.
                self.park(Packet::Publish(p), vec![question]);
                return Ok(());
            }
        };
        self.broker
            .metrics
            .messages_received
            .fetch_add(1, Ordering::Relaxed);
        if !allowed {
            self.acl_denied("publish", &topic);
        }
        // MQTT 5 refuses with 0x87, which ends a QoS 2 exchange at PUBREC. 3.x has no way to say
        // no: its acknowledgements go out as usual and the message is dropped.
        let refuse = !allowed && self.version.is_v5();
        // A QoS 2 message's packet id and the message itself reach the state database in one
        // commit: after a crash either both are there (a resend is known as one) or neither
        // (a resend is routed as new).
        let (route_now, matched, stored) = {
            let _unit = match (p.qos, &self.broker.store) {
                (QoS::ExactlyOnce, Some(store)) => Some(store.unit()),
                _ => None,
            };
            let (first_time, mut stored) = match p.qos {
                QoS::ExactlyOnce if !refuse => self.accept_qos2(p.packet_id)?,
                _ => (true, None),
            };
            let route_now = allowed && first_time;
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
                let routed = route(&self.broker, Arc::new(m), Some(&self.me));
                matched = routed.matched;
                stored = stored.max(routed.stored);
            }
            (route_now, matched, stored)
        };
        let reason = if refuse {
            ReasonCode::NOT_AUTHORIZED
        } else if matched == 0 && route_now {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        let id = p.packet_id;
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.ack_when_stored(Packet::PubAck, id, reason, stored, out),
            QoS::ExactlyOnce => self.ack_when_stored(Packet::PubRec, id, reason, stored, out),
        }
        Ok(())
    }

    /// Records an inbound QoS 2 packet id until its PUBREL; false for a duplicate, which is
    /// acknowledged but not routed again. Also returns the ticket of the packet id's record in
    /// the state database, for a persistent session.
    fn accept_qos2(&self, packet_id: u16) -> Result<(bool, Option<Ticket>), Ending> {
        let receive_max = usize::from(self.broker.config.limits.receive_maximum);
        let mut s = self.handle().state();
        if s.inbound_in_flight() >= receive_max && !s.has_inbound_qos2(packet_id) {
            return Err(Ending::Violation(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED));
        }
        let first_time = s.on_inbound_qos2(packet_id);
        let ticket = super::persist::journal(&self.broker, self.handle(), &mut s);
        Ok((first_time, ticket))
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
                .as_ref()
                .and_then(|a| a.get(&alias))
                .cloned()
                .ok_or(Ending::Violation(ReasonCode::PROTOCOL_ERROR));
        }
        let topic: Arc<str> = Arc::from(p.topic.as_str());
        self.inbound_aliases
            .get_or_insert_with(Box::default)
            .insert(alias, topic.clone());
        Ok(topic)
    }

    fn on_disconnect(&mut self, d: Disconnect) -> Ending {
        if let Some(expiry) = d.properties.session_expiry_interval {
            // MQTT-3.14.2-2: a session that was to end with the connection cannot be extended.
            if self.connect_expiry == 0 && expiry != 0 {
                return Ending::Violation(ReasonCode::PROTOCOL_ERROR);
            }
            let cap = self.broker.limits.max_session_expiry_secs();
            self.handle().state().expiry_interval = expiry.min(cap);
        }
        Ending::ClientDisconnect {
            with_will: d.reason == ReasonCode::DISCONNECT_WITH_WILL,
        }
    }

    /// Detaches the session and settles its future: will now or later, session ended now or at
    /// expiry. A successor that took the session over has already been waiting for this.
    fn finish(mut self, ending: Ending) {
        let will = match ending {
            Ending::ClientDisconnect { with_will: false } => None,
            _ => self.will.take(),
        };
        // As Mosquitto does, the CONNECT with a will is accepted and the will is checked when it
        // is due: here, with the ACL in force as the connection ends (for a delayed will too).
        let will = will.filter(|w| {
            let allowed = self.acl_allows(Action::Publish, &w.topic);
            if !allowed {
                self.acl_denied("will", &w.topic);
            }
            allowed
        });
        let broker = &self.broker;
        broker
            .metrics
            .clients_connected
            .fetch_sub(1, Ordering::Relaxed);
        let will_delay = will
            .as_ref()
            .map(|w| w.properties.will_delay_interval.unwrap_or(0));
        let (epoch, expiry) = {
            let mut s = self.handle().state();
            s.detach();
            s.set_pending_will(will);
            if let (Some(store), true, 1..) = (&broker.store, s.is_journaled(), s.expiry_interval) {
                store.detached(&self.handle().client_id, s.expiry_interval);
            }
            (self.handle().set_online(false), s.expiry_interval)
        };
        tracing::info!(
            client_id = %self.handle().client_id,
            peer = %self.peer,
            listener = %self.listener,
            reason = %ending,
            "{ending}"
        );
        if will_delay == Some(0) {
            let will = self.handle().state().take_pending_will();
            if let Some(w) = will {
                super::publish::publish_will(broker, *w);
            }
        }
        if expiry == 0 {
            if broker.sessions.end(self.handle(), None) {
                finish_session(broker, self.handle());
            }
        } else {
            arm_timers(broker, self.handle(), epoch, will_delay, expiry);
        }
        self.handle().set_keepalive_deadline(0);
        // A successor waiting to take the session over may go ahead now.
        broker.sessions.release(self.handle(), self.serial);
    }
}

#[cfg(test)]
mod tests {
    /// Every idle connection holds one task: keep it within the 384-byte tokio task cell
    /// (the cell is the future plus 136 bytes of header and trailer, rounded up to 128).
    #[test]
    fn connection_task_fits_its_cell() {
        type Guard = (
            super::super::admission::ConnectionSlot,
            tokio::sync::mpsc::Sender<()>,
        );
        let size = std::mem::size_of::<super::ConnectionTask<tokio::net::TcpStream, Guard>>();
        assert!(size <= 248, "ConnectionTask is {size} bytes");
    }
}
