//! A connection's ACL checks: the verdict on each PUBLISH, SUBSCRIBE and will, and the
//! packets parked while the HTTP auth service is asked.
//!
//! A PUBLISH or SUBSCRIBE that needs an answer from the HTTP auth service first is parked in
//! the connection's [`Identity`] while tasks on the runtime ask;
//! the serving loop keeps writing, reads a bounded amount more and parses none of it, and
//! handles the packet again, from the top, once the answers are in. So the client's packets
//! keep their order and no worker thread waits on the network.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;

use super::connection::{Connection, Ending};
use super::enhanced_auth::Reauthentication;
use super::io::Io;
use crate::auth::{AclAnswer, AclQuestion, AclView, Action, Authenticator, Subject, Verdict};
use crate::mqtt::Packet;

/// What the ACL knows of a client besides its client id and address, taken once at CONNECT.
#[derive(Debug)]
pub(crate) struct Identity {
    /// The user name from CONNECT (verified when there is a password file) or the certificate.
    pub(crate) username: Option<Box<str>>,
    /// Common name of the client certificate, on TLS listeners that verified one.
    pub(crate) cert_cn: Option<Box<str>>,
    /// The ACL in force, refreshed before each check.
    pub(crate) acl: AclView,
    /// Some for a client that authenticated with SCRAM at CONNECT: it may re-authenticate.
    pub(crate) reauthentication: Option<Reauthentication>,
    /// A packet waiting for the HTTP auth service's answers.
    pub(crate) parked: Option<super::authorize::Parked>,
}

impl Identity {
    /// The identity of a client just accepted: only when it has something to say.
    pub(crate) fn of(
        username: Option<Box<str>>,
        cert_cn: Option<Box<str>>,
        auth: &Authenticator,
    ) -> Option<Box<Identity>> {
        (username.is_some() || cert_cn.is_some()).then(|| Identity::new(username, cert_cn, auth))
    }

    /// An identity with the ACL in force now and nothing pending.
    pub(crate) fn new(
        username: Option<Box<str>>,
        cert_cn: Option<Box<str>>,
        auth: &Authenticator,
    ) -> Box<Identity> {
        Box::new(Identity {
            username,
            cert_cn,
            acl: auth.acl_view(),
            reauthentication: None,
            parked: None,
        })
    }
}

/// A PUBLISH or SUBSCRIBE waiting for answers, and the tasks asking (what each asks about, so
/// a task that failed still counts as "no answer" for its question).
pub(crate) struct Parked {
    packet: Packet,
    waiting: Vec<(Action, Box<str>, JoinHandle<AclAnswer>)>,
}

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked")
            .field("packet", &self.packet.name())
            .field("waiting", &self.waiting.len())
            .finish()
    }
}

impl Connection {
    /// What the ACL in force says about this client publishing to `topic` (a topic name) or
    /// subscribing to `topic` (a valid filter), or the question for the HTTP auth service
    /// when its answer is not known yet. Without any ACL this is one atomic load.
    pub(crate) fn acl_verdict(&mut self, action: Action, topic: &str) -> Verdict {
        let auth = &self.broker.auth;
        if self.identity.is_none() {
            if !auth.has_acl() {
                return Verdict::Allow;
            }
            self.identity = Some(Identity::new(None, None, auth));
        }
        let Some(identity) = self.identity.as_mut() else {
            return Verdict::Allow;
        };
        auth.refresh(&mut identity.acl);
        let subject = Subject {
            username: identity.username.as_deref(),
            client_id: &self.me.0.client_id,
            ip: self.peer.ip().to_canonical(),
            cert_cn: identity.cert_cn.as_deref(),
        };
        identity.acl.check(&subject, action, topic)
    }

    /// Whether the ACL allows it now; a question for the HTTP auth service counts as no (only
    /// for callers that asked it beforehand, as [`Connection::ask_about_will`] does).
    pub(crate) fn acl_allows(&mut self, action: Action, topic: &str) -> bool {
        matches!(self.acl_verdict(action, topic), Verdict::Allow)
    }

    /// Parks `packet` until `questions` are answered, each asked by a task of its own on the
    /// runtime: the connection goes on writing but parses nothing more until then.
    pub(crate) fn park(&mut self, packet: Packet, questions: Vec<AclQuestion>) {
        let waiting = questions
            .into_iter()
            .map(|q| (q.action(), Box::from(q.topic()), tokio::spawn(q.ask())))
            .collect();
        if let Some(identity) = self.identity.as_mut() {
            identity.parked = Some(Parked { packet, waiting });
        }
    }

    pub(super) fn is_parked(&self) -> bool {
        self.identity.as_ref().is_some_and(|i| i.parked.is_some())
    }

    /// Collects the answers a parked packet waits for: `Ready(Some(packet))` once all are in
    /// (recorded in the ACL view), `Ready(None)` when nothing is parked.
    pub(super) fn poll_parked(&mut self, cx: &mut Context<'_>) -> Poll<Option<Packet>> {
        let Some(identity) = self.identity.as_deref_mut() else {
            return Poll::Ready(None);
        };
        let Some(parked) = identity.parked.as_mut() else {
            return Poll::Ready(None);
        };
        let mut i = 0;
        while i < parked.waiting.len() {
            match Pin::new(&mut parked.waiting[i].2).poll(cx) {
                Poll::Ready(result) => {
                    let (action, topic, _) = parked.waiting.swap_remove(i);
                    identity.acl.answered(result.unwrap_or(AclAnswer {
                        action,
                        topic,
                        answer: None,
                        until: None,
                    }));
                }
                Poll::Pending => i += 1,
            }
        }
        if !parked.waiting.is_empty() {
            return Poll::Pending;
        }
        Poll::Ready(identity.parked.take().map(|p| p.packet))
    }

    /// Handles a packet whose answers came in, then what was buffered behind it.
    pub(super) fn resume<S>(&mut self, packet: Packet, io: &mut Io<S>) -> Result<(), Ending> {
        let handled = self.on_packet(packet, &mut io.wbuf);
        if let Some(identity) = self.identity.as_mut() {
            identity.acl.forget_fresh();
        }
        handled?;
        self.on_bytes(io)
    }

    /// Gets the HTTP auth service's answer about the will before [`Connection::finish`], which
    /// cannot wait, checks it. Bounded by the service's timeout.
    pub(super) async fn ask_about_will(&mut self, ending: Ending) {
        if matches!(ending, Ending::ClientDisconnect { with_will: false }) {
            return;
        }
        let Some(topic) = self.will.as_ref().map(|w| w.topic.clone()) else {
            return;
        };
        if let Verdict::Ask(question) = self.acl_verdict(Action::Publish, &topic) {
            let answer = question.ask().await;
            if let Some(identity) = self.identity.as_mut() {
                identity.acl.answered(answer);
            }
        }
    }

    /// Counts a request the ACL denied; logs it at debug, and at warn once per power of two so
    /// a client retrying in a loop cannot flood the log.
    pub(crate) fn acl_denied(&self, what: &str, topic: &str) {
        let total = self
            .broker
            .metrics
            .acl_denied
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        let client_id = &self.handle().client_id;
        if total.is_power_of_two() {
            tracing::warn!(%client_id, topic, denied_total = total, "ACL denied {what}");
        } else {
            tracing::debug!(%client_id, topic, "ACL denied {what}");
        }
    }
}
