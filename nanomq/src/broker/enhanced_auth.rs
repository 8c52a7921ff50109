//! Enhanced authentication (MQTT 5 AUTH, spec 4.12): SCRAM-SHA-256 against the password file's
//! verifiers (see [`crate::auth::scram`]), after CONNECT and before the session is touched, and
//! again on a live connection when the client re-authenticates (spec 4.12.1).
//!
//! At CONNECT the client names the method `SCRAM-SHA-256` and sends client-first; the broker
//! answers AUTH 0x18 with server-first, the client AUTH 0x18 with client-final, and the broker
//! CONNACK 0x00 with server-final, or a refusing CONNACK: 0x86 for a wrong proof, an unknown
//! user or a user without a verifier (all alike, see [`crate::auth::scram`]), 0x87 for a
//! malformed SCRAM message, 0x8C for AUTH with another method or when nothing can verify SCRAM
//! (no password file, or a listener that takes user names from certificates), 0x82 for a packet
//! other than AUTH or DISCONNECT before CONNACK (MQTT-3.1.2-30). The whole exchange, reads and
//! writes, runs within the CONNECT timeout of the connection's first byte: a client that
//! stalls is closed at the deadline without CONNACK. The proven user name (`n=`) becomes the
//! client's user name for the ACL and the session owner; a CONNECT that also sends a User Name
//! must send the same one (else 0x86), and a Password in it is not looked at.
//!
//! Re-authentication: a client that authenticated with SCRAM may send AUTH 0x19 with a new
//! client-first at any time; the same exchange follows and ends with AUTH 0x00 carrying
//! server-final, while other packets flow as usual. It must prove the same user (the ACL
//! identity and session owner do not change under a live connection), against the password
//! file in force, so a re-authentication after a reload checks the new password. A failure
//! ends the connection with DISCONNECT 0x87 Not authorized; AUTH with another method gets
//! DISCONNECT 0x8C (MQTT-4.12.1-1), and AUTH out of turn, or from a client that did not use
//! enhanced authentication at CONNECT (MQTT-4.12.0-7), 0x82 Protocol error. A re-authentication
//! left half done costs the connection its small state and nothing else; keepalive still
//! applies.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::task::{ready, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::connect::read_packet;
use super::connection::{Connection, Ending};
use super::io::Io;
use super::transport::CertificateUsername;
use super::Broker;
use crate::auth::scram::{self, ClientFirst, ScramError, ServerState, METHOD};
use crate::mqtt::{
    encode, Auth, ConnAck, Connect, Packet, Properties, ProtocolVersion, ReasonCode,
};

/// A completed exchange at CONNECT.
pub(super) struct Authenticated {
    /// The user name proven, from client-first's `n=`.
    pub(super) user: String,
    /// server-final, for CONNACK's Authentication Data.
    pub(super) server_final: String,
}

/// How an exchange at CONNECT failed.
pub(super) enum Failure {
    /// Refused with this CONNACK reason, for the reason given (logged, never sent).
    Refuse(ReasonCode, String),
    /// The client left, stalled past the CONNECT timeout, or broke the framing: closed without
    /// CONNACK.
    Close(&'static str),
}

/// Where a connection that authenticated with SCRAM stands in re-authentication.
#[derive(Debug)]
pub(crate) enum Reauthentication {
    /// No exchange under way.
    Idle,
    /// server-first sent, client-final awaited.
    Exchanging(Box<ServerState>),
}

/// Runs the exchange for a CONNECT that names an Authentication Method (`check` let only
/// SCRAM-SHA-256 through), within `deadline`.
pub(super) async fn at_connect<S>(
    broker: &Broker,
    io: &mut Io<S>,
    c: &Connect,
    certificate: &CertificateUsername,
    deadline: Instant,
) -> Result<Authenticated, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if *certificate != CertificateUsername::NotUsed {
        return Err(Failure::Refuse(
            ReasonCode::BAD_AUTHENTICATION_METHOD,
            "SCRAM-SHA-256 on a listener that takes user names from client certificates".into(),
        ));
    }
    let data = c
        .properties
        .authentication_data
        .as_deref()
        .unwrap_or_default();
    let first = ClientFirst::parse(data).map_err(|e| refused(e, None))?;
    if c.username.as_deref().is_some_and(|u| u != first.user()) {
        return Err(Failure::Refuse(
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            format!(
                "the SCRAM-SHA-256 user `{}` is not CONNECT's User Name",
                first.user()
            ),
        ));
    }
    let Some(verifier) = broker.auth.scram_verifier(first.user()) else {
        return Err(Failure::Refuse(
            ReasonCode::BAD_AUTHENTICATION_METHOD,
            "SCRAM-SHA-256 without a password file".into(),
        ));
    };
    let nonce = scram::server_nonce().map_err(|e| {
        Failure::Refuse(
            ReasonCode::SERVER_UNAVAILABLE,
            format!("no random bytes for a SCRAM nonce: {e}"),
        )
    })?;
    let (state, server_first) = scram::start(first, verifier, &nonce);
    let mut stop = broker.stop.clone();
    let answer = tokio::select! {
        r = tokio::time::timeout_at(deadline, challenge(broker, io, server_first)) => match r {
            Ok(answer) => answer?,
            Err(_) => return Err(Failure::Close("SCRAM exchange not done within the CONNECT timeout")),
        },
        _ = stop.wait_for(|s| *s) => return Err(Failure::Close("broker shutting down")),
    };
    let user = state.user().to_owned();
    let server_final = scram::finish(state, &answer).map_err(|e| refused(e, Some(&user)))?;
    Ok(Authenticated { user, server_final })
}

/// The refusal for a failed SCRAM step; the log names the user once client-first named one.
fn refused(e: ScramError, user: Option<&str>) -> Failure {
    let code = match e.is_bad_credentials() {
        true => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        false => ReasonCode::NOT_AUTHORIZED,
    };
    let why = match user {
        Some(user) => format!("SCRAM-SHA-256 as `{user}`: {e}"),
        None => format!("SCRAM-SHA-256: {e}"),
    };
    Failure::Refuse(code, why)
}

/// Sends server-first in AUTH 0x18 and reads the client's answer, on the CONNECT read path:
/// client-final.
async fn challenge<S>(
    broker: &Broker,
    io: &mut Io<S>,
    server_first: String,
) -> Result<Bytes, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let auth = auth(ReasonCode::CONTINUE_AUTHENTICATION, server_first);
    encode(&auth, ProtocolVersion::V5, &mut io.wbuf);
    if !write_out(broker, io).await {
        return Err(Failure::Close("socket failed during the SCRAM exchange"));
    }
    match read_packet(broker, io).await {
        Ok(Packet::Auth(a)) if a.properties.authentication_method.as_deref() != Some(METHOD) => {
            Err(Failure::Refuse(
                ReasonCode::BAD_AUTHENTICATION_METHOD,
                "AUTH with another method during the SCRAM-SHA-256 exchange".into(),
            ))
        }
        Ok(Packet::Auth(a)) if a.reason != ReasonCode::CONTINUE_AUTHENTICATION => {
            Err(Failure::Refuse(
                ReasonCode::PROTOCOL_ERROR,
                format!("AUTH reason 0x{:02x} instead of 0x18", a.reason.0),
            ))
        }
        Ok(Packet::Auth(a)) => Ok(a.properties.authentication_data.unwrap_or_default()),
        Ok(Packet::Disconnect(_)) => Err(Failure::Close(
            "client disconnected during the SCRAM exchange",
        )),
        // MQTT-3.1.2-30: nothing but AUTH or DISCONNECT before CONNACK.
        Ok(other) => Err(Failure::Refuse(
            ReasonCode::PROTOCOL_ERROR,
            format!("{} during the SCRAM-SHA-256 exchange", other.name()),
        )),
        Err(_) => Err(Failure::Close(
            "closed or malformed packet during the SCRAM exchange",
        )),
    }
}

/// An AUTH packet of our method.
fn auth(reason: ReasonCode, data: String) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: Properties {
            authentication_method: Some(METHOD.into()),
            authentication_data: Some(data.into()),
            ..Properties::default()
        },
    })
}

/// Writes and flushes the write buffer, keeping the connection open; false when the socket
/// failed.
async fn write_out<S>(broker: &Broker, io: &mut Io<S>) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    poll_fn(|cx| {
        while io.wants_write() {
            if !ready!(io.poll_write(cx, broker)) {
                return Poll::Ready(false);
            }
        }
        Poll::Ready(true)
    })
    .await
}

impl Failure {
    /// Logs the failure; for a refusal, counts it and queues the CONNACK (MQTT 5: only v5
    /// clients have Authentication Methods) for the caller's flush. `peer` and `listener` are
    /// where the connection came from and in.
    pub(super) fn report<S>(
        self,
        broker: &Broker,
        io: &mut Io<S>,
        c: &Connect,
        peer: SocketAddr,
        listener: &str,
    ) {
        let client_id = c.client_id.as_str();
        match self {
            Failure::Refuse(reason, why) => {
                broker
                    .metrics
                    .connects_refused_auth
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    client_id,
                    username = c.username.as_deref().unwrap_or(""),
                    %peer,
                    listener,
                    reason = %why,
                    "connection refused (0x{:02x}): {why}",
                    reason.0
                );
                let ack = ConnAck {
                    reason,
                    ..ConnAck::default()
                };
                encode(&Packet::ConnAck(ack), ProtocolVersion::V5, &mut io.wbuf);
            }
            Failure::Close(why) => {
                tracing::debug!(client_id, %peer, listener, reason = %why, "{why}: closing")
            }
        }
    }
}

/// CONNACK's Authentication Method and Data for a completed exchange.
pub(super) fn connack_properties(done: &Authenticated, properties: &mut Properties) {
    properties.authentication_method = Some(METHOD.into());
    properties.authentication_data = Some(Bytes::copy_from_slice(done.server_final.as_bytes()));
}

impl Connection {
    /// AUTH on a live connection: a re-authentication step (see the module doc).
    pub(super) fn on_auth(&mut self, a: Auth, out: &mut BytesMut) -> Result<(), Ending> {
        let client_id = &self.me.0.client_id;
        let peer = self.peer;
        let failed = |why: &dyn std::fmt::Display| {
            tracing::warn!(%client_id, %peer, "re-authentication failed: {why}");
            Ending::Violation(ReasonCode::NOT_AUTHORIZED)
        };
        let Some(identity) = self.identity.as_deref_mut() else {
            return Err(Ending::Violation(ReasonCode::PROTOCOL_ERROR));
        };
        // MQTT-4.12.0-7: no AUTH from a client that named no method in CONNECT.
        let Some(step) = identity.reauthentication.as_mut() else {
            return Err(Ending::Violation(ReasonCode::PROTOCOL_ERROR));
        };
        if a.properties.authentication_method.as_deref() != Some(METHOD) {
            tracing::warn!(%client_id, %peer, "re-authentication with another method");
            return Err(Ending::Violation(ReasonCode::BAD_AUTHENTICATION_METHOD));
        }
        let data = a.properties.authentication_data.unwrap_or_default();
        let reply = match (a.reason, std::mem::replace(step, Reauthentication::Idle)) {
            (ReasonCode::RE_AUTHENTICATE, Reauthentication::Idle) => {
                let first = ClientFirst::parse(&data).map_err(|e| failed(&e))?;
                if Some(first.user()) != identity.username.as_deref() {
                    return Err(failed(&format_args!("another user, `{}`", first.user())));
                }
                let verifier = self
                    .broker
                    .auth
                    .scram_verifier(first.user())
                    .ok_or_else(|| failed(&"no password file any more"))?;
                let nonce = scram::server_nonce().map_err(|e| failed(&e))?;
                let (state, server_first) = scram::start(first, verifier, &nonce);
                *step = Reauthentication::Exchanging(Box::new(state));
                auth(ReasonCode::CONTINUE_AUTHENTICATION, server_first)
            }
            (ReasonCode::CONTINUE_AUTHENTICATION, Reauthentication::Exchanging(state)) => {
                let server_final = scram::finish(*state, &data).map_err(|e| failed(&e))?;
                tracing::debug!(%client_id, %peer, "re-authenticated");
                auth(ReasonCode::SUCCESS, server_final)
            }
            _ => return Err(Ending::Violation(ReasonCode::PROTOCOL_ERROR)),
        };
        encode(&reply, self.version, out);
        Ok(())
    }
}
