//! From the first byte to CONNACK: the CONNECT timeout, validation of CONNECT, enhanced
//! authentication (the AUTH exchange, in `enhanced_auth`), client id assignment, session
//! takeover and resumption, and the negotiated limits.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use portable_atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::authorize::Identity;
use super::connection::Connection;
use super::enhanced_auth::{self, Reauthentication};
use super::io::Io;
use super::registry::{finish_session, Claim, SessionRef};
use super::transport::{CertificateUsername, ClientCertificate, Upgrade};
use super::Broker;
use crate::auth::{scram, Refusal};
use crate::mqtt::{
    decode, encode, ConnAck, Connect, DecodeError, Packet, Properties, ProtocolVersion, ReasonCode,
};
use crate::router::validate_topic_name;
use crate::session::{ConnectionParams, Session};

/// Runs the transport's handshake and waits for CONNECT, both within the CONNECT timeout;
/// accepts or refuses it, and returns the connection attached to its session with CONNACK
/// already in the write buffer.
pub(crate) async fn handshake<U: Upgrade>(
    broker: Arc<Broker>,
    tcp: TcpStream,
    upgrade: U,
    peer: SocketAddr,
    listener: Arc<String>,
) -> Option<(Connection, Io<U::Stream>)> {
    let timeout = Duration::from_secs(broker.limits.connect_timeout_secs());
    let deadline = Instant::now() + timeout;
    let mut stop = broker.stop.clone();
    let upgraded = tokio::select! {
        r = tokio::time::timeout_at(deadline, upgrade.upgrade(tcp)) => r,
        _ = stop.wait_for(|s| *s) => return None,
    };
    let (stream, certificate) = match upgraded {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err(e)) => {
            tracing::debug!(%peer, %listener, "transport handshake failed: {e}");
            return None;
        }
        Err(_) => {
            tracing::debug!(
                %peer,
                %listener,
                "transport handshake not done within {timeout:?}: closing"
            );
            return None;
        }
    };
    let mut io = Io::new(stream);
    let conn = negotiate(&broker, &mut io, peer, listener, certificate, deadline).await?;
    Some((conn, io))
}

async fn negotiate<S>(
    broker: &Arc<Broker>,
    io: &mut Io<S>,
    peer: SocketAddr,
    listener: Arc<String>,
    certificate: Option<ClientCertificate>,
    deadline: Instant,
) -> Option<Connection>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stop = broker.stop.clone();
    let read = tokio::select! {
        r = tokio::time::timeout_at(deadline, read_connect(broker, io)) => r,
        _ = stop.wait_for(|s| *s) => return None,
    };
    let connect = match read {
        Ok(Ok(c)) => c,
        Ok(Err(refusal)) => {
            if let Some(code) = refusal {
                // The version is unknown: answer in 3.1.1 form, which every client can read.
                refuse(io, ProtocolVersion::V311, code);
                io.flush(broker).await;
            }
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, %listener, "no CONNECT within the CONNECT timeout: closing");
            return None;
        }
    };
    match accept(broker, io, *connect, peer, &listener, certificate, deadline).await {
        Ok(conn) => Some(conn),
        Err(version) => {
            io.flush(broker).await;
            tracing::debug!(%peer, %listener, ?version, "connection refused");
            None
        }
    }
}

/// Reads until a whole first packet is there. `Err(Some(code))` asks for a refusing CONNACK.
async fn read_connect<S>(
    broker: &Broker,
    io: &mut Io<S>,
) -> Result<Box<Connect>, Option<ReasonCode>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match read_packet(broker, io).await? {
        Packet::Connect(c) => Ok(c),
        other => {
            tracing::debug!(
                "first packet is {} instead of CONNECT: closing",
                other.name()
            );
            Err(None)
        }
    }
}

/// Reads until a whole packet is there, before CONNACK: CONNECT, or AUTH during enhanced
/// authentication (only MQTT 5 has it, so v5 framing). `Err(Some(code))` asks for a refusing
/// CONNACK; `Err(None)` closes: end of stream or a malformed packet.
pub(super) async fn read_packet<S>(
    broker: &Broker,
    io: &mut Io<S>,
) -> Result<Packet, Option<ReasonCode>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max = broker.config.limits.max_packet_size;
    loop {
        match decode(&mut io.rbuf, ProtocolVersion::V5, max) {
            Ok(Some(packet)) => return Ok(packet),
            Ok(None) => match io.read_more(broker).await {
                Ok(n) if n > 0 => {}
                _ => return Err(None),
            },
            Err(e @ DecodeError::UnsupportedProtocol { .. }) => {
                tracing::debug!("{e}");
                return Err(Some(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION));
            }
            Err(e) => {
                tracing::debug!("bad CONNECT: {e}");
                return Err(None);
            }
        }
    }
}

fn refuse<S>(io: &mut Io<S>, version: ProtocolVersion, reason: ReasonCode) {
    let ack = ConnAck {
        reason,
        ..ConnAck::default()
    };
    encode(&Packet::ConnAck(ack), version, &mut io.wbuf);
}

/// A client id for a client that sent none: unique (a counter) and not guessable (hashed with
/// the process's random keys).
fn assign_client_id() -> String {
    static ASSIGNED: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(ASSIGNED.fetch_add(1, Ordering::Relaxed));
    format!("nanomq-{:016x}", h.finish())
}

/// Checks CONNECT against the configuration; the reason code refuses it.
fn check(broker: &Broker, c: &Connect) -> Result<(), ReasonCode> {
    let cfg = &broker.config;
    // Enhanced authentication: SCRAM-SHA-256 is the one method offered.
    if c.properties
        .authentication_method
        .as_deref()
        .is_some_and(|m| m != scram::METHOD)
    {
        return Err(ReasonCode::BAD_AUTHENTICATION_METHOD);
    }
    if c.client_id.is_empty()
        && !(c.protocol.is_v5() || (c.protocol == ProtocolVersion::V311 && c.clean_start))
    {
        return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    }
    // 3.x clients cannot be told another keepalive: refuse what is out of bounds, like Mosquitto.
    let l = &cfg.limits;
    let (min_keepalive, max_keepalive) = broker.limits.keepalive();
    if !c.protocol.is_v5() && (c.keep_alive > max_keepalive || (c.keep_alive < min_keepalive)) {
        return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    }
    if let Some(w) = &c.will {
        if validate_topic_name(&w.topic, l.max_topic_levels).is_err() {
            return Err(ReasonCode::TOPIC_NAME_INVALID);
        }
        if w.qos as u8 > cfg.mqtt.max_qos {
            return Err(ReasonCode::QOS_NOT_SUPPORTED);
        }
        if w.retain && !cfg.mqtt.retain_available {
            return Err(ReasonCode::RETAIN_NOT_SUPPORTED);
        }
    }
    Ok(())
}

/// Checks the user name and password (the HTTP auth service first, when configured), within
/// what is left of the CONNECT timeout.
async fn authenticate(
    broker: &Broker,
    c: &Connect,
    peer: SocketAddr,
    deadline: Instant,
) -> Result<(), Refusal> {
    let subject = crate::auth::Subject {
        username: c.username.as_deref(),
        client_id: &c.client_id,
        ip: peer.ip().to_canonical(),
        cert_cn: None,
    };
    let check = broker
        .auth
        .authenticate_client(&subject, c.password.as_ref());
    tokio::time::timeout_at(deadline, check)
        .await
        .unwrap_or(Err(Refusal::Busy))
}

/// Accepts a CONNECT: checks it and its credentials, takes the session over from an older
/// connection if needed, resumes or starts it, and queues CONNACK. On refusal, a CONNACK with
/// the reason is queued instead. Nothing of the session is touched before the credentials
/// are verified.
async fn accept<S>(
    broker: &Arc<Broker>,
    io: &mut Io<S>,
    mut c: Connect,
    peer: SocketAddr,
    listener: &Arc<String>,
    certificate: Option<ClientCertificate>,
    deadline: Instant,
) -> Result<Connection, ProtocolVersion>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let v = c.protocol;
    if let Err(code) = check(broker, &c) {
        tracing::debug!(
            client_id = %c.client_id,
            %peer,
            %listener,
            reason = format_args!("CONNECT refused (0x{:02x})", code.0),
            "connection refused"
        );
        refuse(io, v, code);
        return Err(v);
    }
    let certificate = certificate.unwrap_or_default();
    // Enhanced authentication: the AUTH exchange, before anything of the session is touched.
    let mut enhanced = None;
    if c.properties.authentication_method.is_some() {
        match enhanced_auth::at_connect(broker, io, &c, &certificate.username, deadline).await {
            Ok(done) => {
                c.username = Some(done.user.clone());
                enhanced = Some(done);
            }
            Err(failure) => {
                failure.report(broker, io, &c, peer, listener);
                return Err(v);
            }
        }
    }
    // A listener that takes user names from certificates: the certificate is the credential.
    let verified = match certificate.username {
        _ if enhanced.is_some() => Ok(()),
        CertificateUsername::NotUsed => authenticate(broker, &c, peer, deadline).await,
        CertificateUsername::Name(name) => {
            c.username = Some(name.into());
            Ok(())
        }
        CertificateUsername::Missing => Err(Refusal::CertificateWithoutName),
    };
    if let Err(refusal) = verified {
        broker
            .metrics
            .connects_refused_auth
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            client_id = %c.client_id,
            username = c.username.as_deref().unwrap_or(""),
            %peer,
            %listener,
            reason = %refusal,
            "connection refused: {refusal}"
        );
        refuse(io, v, refusal.reason_code());
        return Err(v);
    }
    let assigned = c.client_id.is_empty().then(assign_client_id);
    let client_id = assigned.clone().unwrap_or(c.client_id);

    let requested_ka = c.keep_alive;
    let (min_keepalive, max_keepalive) = broker.limits.keepalive();
    let keep_alive = if requested_ka > max_keepalive || (requested_ka == 0 && min_keepalive > 0) {
        max_keepalive
    } else {
        requested_ka.max(min_keepalive)
    };
    let max_expiry = broker.limits.max_session_expiry_secs();
    let requested_expiry = if v.is_v5() {
        c.properties.session_expiry_interval.unwrap_or(0)
    } else if c.clean_start {
        0
    } else {
        max_expiry
    };
    let expiry = requested_expiry.min(max_expiry);

    let (handle, serial, existed) = loop {
        match broker.sessions.claim(&client_id, broker.session_limits) {
            Claim::Claimed {
                handle,
                serial,
                existed,
            } => break (handle, serial, existed),
            Claim::Busy(old) => {
                tracing::info!(client_id = %client_id, "session taken over by a new connection");
                old.take_over(&broker.sessions, ReasonCode::SESSION_TAKEN_OVER)
                    .await;
            }
        }
    };
    // A session is resumed only by its owner: a client id taken by another user (or by an
    // anonymous client) starts afresh, as with Clean Start.
    let fresh = c.clean_start || (existed && handle.state().owner() != c.username.as_deref());
    if fresh && existed {
        finish_session(broker, &handle);
    }
    let params = ConnectionParams {
        version: v,
        receive_maximum: c.properties.receive_maximum.unwrap_or(u16::MAX),
        // Also the protocol's own ceiling, which extra per-subscriber properties could cross.
        max_packet_size: c
            .properties
            .maximum_packet_size
            .unwrap_or(u32::MAX)
            .min(crate::config::MAX_PACKET_SIZE),
        topic_alias_maximum: c.properties.topic_alias_maximum.unwrap_or(0),
    };
    let session_present = existed && !fresh;
    {
        let mut s = handle.state();
        if !session_present {
            *s = Session::new(broker.session_limits);
            s.set_owner(c.username.as_deref());
        }
        s.expiry_interval = expiry;
        // A session that may outlive the connection is kept in the state database; one that
        // may not (a resumed session given expiry 0) leaves it now.
        if let Some(store) = &broker.store {
            if expiry > 0 {
                store.put_session(&handle.client_id, expiry, s.owner());
                s.set_journaled(true);
            } else if s.is_journaled() {
                store.end_session(&handle.client_id);
                s.set_journaled(false);
            }
        }
        // A client back before its Will Delay Interval ran out cancels the will.
        s.set_pending_will(None);
        s.attach(params);
        handle.set_online(true);
    }
    let m = &broker.metrics;
    let connected = m.clients_connected.fetch_add(1, Ordering::Relaxed) + 1;
    m.clients_maximum.fetch_max(connected, Ordering::Relaxed);
    tracing::info!(
        %client_id,
        %peer,
        %listener,
        version = v as u8,
        session_present,
        "client connected"
    );

    let mut properties = Properties::default();
    if v.is_v5() {
        properties = connack_properties(broker, assigned);
        properties.server_keep_alive = (keep_alive != requested_ka).then_some(keep_alive);
        properties.session_expiry_interval = (expiry != requested_expiry).then_some(expiry);
        if let Some(done) = &enhanced {
            enhanced_auth::connack_properties(done, &mut properties);
        }
    }
    let ack = ConnAck {
        session_present,
        reason: ReasonCode::SUCCESS,
        properties,
    };
    encode(&Packet::ConnAck(ack), v, &mut io.wbuf);

    let mut identity = Identity::of(
        c.username.map(String::into_boxed_str),
        certificate.common_name,
        &broker.auth,
    );
    if let (Some(identity), Some(_)) = (identity.as_mut(), &enhanced) {
        identity.reauthentication = Some(Reauthentication::Idle);
    }
    Ok(Connection {
        broker: broker.clone(),
        me: SessionRef(handle),
        version: v,
        peer,
        listener: listener.clone(),
        keep_alive,
        will: c.will.map(Box::new),
        connect_expiry: expiry,
        serial,
        inbound_aliases: None,
        identity,
        held: None,
    })
}

/// CONNACK properties that advertise the broker's limits and capabilities (MQTT 5 3.2.2.3).
fn connack_properties(broker: &Broker, assigned: Option<String>) -> Properties {
    let cfg = &broker.config;
    let l = &cfg.limits;
    let off = |enabled: bool| (!enabled).then_some(0);
    Properties {
        assigned_client_identifier: assigned,
        receive_maximum: (l.receive_maximum != u16::MAX).then_some(l.receive_maximum),
        maximum_packet_size: Some(l.max_packet_size),
        topic_alias_maximum: (l.max_topic_alias > 0).then_some(l.max_topic_alias),
        maximum_qos: (cfg.mqtt.max_qos < 2).then_some(cfg.mqtt.max_qos),
        retain_available: off(cfg.mqtt.retain_available),
        wildcard_subscription_available: off(cfg.mqtt.wildcard_subscriptions),
        subscription_identifier_available: off(cfg.mqtt.subscription_identifiers),
        shared_subscription_available: off(cfg.mqtt.shared_subscriptions),
        ..Properties::default()
    }
}
