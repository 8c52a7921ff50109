//! Where the broker meets the state database: putting back what it held at start, handing
//! sessions' journals over, and holding acknowledgements until what they promise is on disk.

use std::collections::VecDeque;
#[cfg(feature = "persistence")]
use std::sync::Arc;
use std::task::Context;

use super::connection::Connection;
use super::io::Io;
use super::registry::SessionHandle;
use super::Broker;
use crate::mqtt::{Packet, PubAck, ReasonCode};
use crate::session::Session;
use crate::store::Ticket;

#[cfg(feature = "persistence")]
/// Puts back the retained messages and persistent sessions read at start: each session
/// detached, in the subscription tree, with its expiry timer running.
pub(crate) fn restore(broker: &Arc<Broker>, restored: crate::store::Restored) {
    use super::registry::arm_timers;
    use super::subscriber::Subscriber;
    use crate::router::Subscription;

    let retained = restored.retained.len();
    for m in restored.retained {
        broker.retained.set(&m.topic.clone(), Some(m));
    }
    let sessions = restored.sessions.len();
    let mut queued = 0;
    for (client_id, saved) in restored.sessions {
        let expiry = saved.expiry_interval;
        let session = Session::restore(broker.session_limits, saved);
        queued += session.queued() + session.outbound_in_flight();
        let filters: Vec<_> = session
            .subscriptions
            .iter()
            .map(|(f, e)| (f.clone(), *e))
            .collect();
        let handle = broker.sessions.restore(&client_id, session);
        for (filter, entry) in filters {
            let subscription = Subscription {
                subscriber: Subscriber::Session(handle.clone()),
                options: entry.options,
                identifier: entry.identifier,
            };
            broker.subscriptions.subscribe(&filter, subscription);
        }
        let epoch = handle.set_online(false);
        arm_timers(broker, &handle, epoch, None, expiry);
    }
    let bridged = restore_bridge_caches(broker, restored.bridge_cache);
    tracing::info!(
        retained,
        sessions,
        queued,
        bridged,
        expired_sessions = restored.expired_sessions,
        "state restored"
    );
}

#[cfg(feature = "persistence")]
/// Hands each bridge what it held for its upstream, in order; rows of bridges no longer
/// configured are deleted (and counted in the log). Returns how many were handed back.
#[cfg_attr(not(feature = "bridge"), allow(unused_mut, unused_variables))]
fn restore_bridge_caches(broker: &Broker, cached: Vec<(String, u64, u64)>) -> u64 {
    let mut restored = 0;
    for (name, messages, bytes) in cached {
        #[cfg(feature = "bridge")]
        if let Some(bridge) = broker.bridges.running().iter().find(|b| *b.name == *name) {
            bridge.restore(messages, bytes);
            restored += messages;
            continue;
        }
        tracing::warn!(
            bridge = %name,
            messages,
            "bridge {name} is no longer configured: its {messages} cached messages are dropped"
        );
        if let Some(store) = &broker.store {
            store.bridge_forget(&name);
        }
    }
    restored
}

/// Hands what `session` journaled to the store; call with the session locked, so the store
/// sees each session's changes in order. Returns the last change's ticket.
pub(crate) fn journal(broker: &Broker, handle: &SessionHandle, s: &mut Session) -> Option<Ticket> {
    let store = broker.store.as_ref()?;
    store.journal(&handle.client_id, s.take_journal())
}

/// Acknowledgements of one connection waiting for the store, in the order the PUBLISH
/// packets came (MQTT 4.6): once one waits, those behind it wait too.
/// Also holds back all output while a QoS 2 PUBLISH's packet id is not yet on disk.
#[derive(Default)]
pub(crate) struct HeldAcks {
    acks: VecDeque<HeldAck>,
    /// Nothing is written until this is durable.
    output: Option<Ticket>,
}

struct HeldAck {
    /// None: waits only for those ahead of it.
    ticket: Option<Ticket>,
    kind: fn(PubAck) -> Packet,
    packet_id: u16,
    reason: ReasonCode,
}

impl Connection {
    /// Sends a PUBACK, PUBREC or PUBCOMP now, or once `ticket` is durable when acknowledgements
    /// wait for the store ([`crate::store::Store::acks_wait`]) or others are already waiting.
    pub(crate) fn ack_when_stored(
        &mut self,
        kind: fn(PubAck) -> Packet,
        packet_id: u16,
        reason: ReasonCode,
        ticket: Option<Ticket>,
        out: &mut bytes::BytesMut,
    ) {
        let waits = self.broker.store.as_ref().is_some_and(|s| s.acks_wait());
        let ticket = ticket.filter(|_| waits);
        if ticket.is_none() && self.held.is_none() {
            self.ack(kind, packet_id, reason, out);
            return;
        }
        self.held
            .get_or_insert_with(Box::default)
            .acks
            .push_back(HeldAck {
                ticket,
                kind,
                packet_id,
                reason,
            });
    }

    /// Holds back the output until `ticket` (packet ids given to stored QoS 2 messages in the
    /// write buffer) is durable: a QoS 2 message must never reach a client under a packet id
    /// that a restart would forget, or the client would take its resend for a new message.
    pub(crate) fn hold_output(&mut self, ticket: Option<Ticket>) {
        let waits = self.broker.store.as_ref().is_some_and(|s| s.acks_wait());
        if let (Some(ticket), true) = (ticket, waits) {
            let held = self.held.get_or_insert_with(Box::default);
            held.output = held.output.max(Some(ticket));
        }
    }

    /// True when the output may be written (see [`Connection::hold_output`]).
    pub(crate) fn output_ready(&mut self, cx: &mut Context<'_>) -> bool {
        let (Some(held), Some(store)) = (&mut self.held, &self.broker.store) else {
            return true;
        };
        let Some(ticket) = held.output else {
            return true;
        };
        if store.poll_durable(ticket, cx).is_pending() {
            return false;
        }
        held.output = None;
        if held.acks.is_empty() {
            self.held = None;
        }
        true
    }

    /// Writes the held acknowledgements whose messages are now on disk; the store wakes the
    /// task when more are. Returns true if any went out.
    pub(crate) fn release_acks<S>(&mut self, io: &mut Io<S>, cx: &mut Context<'_>) -> bool {
        let (Some(held), Some(store)) = (&mut self.held, &self.broker.store) else {
            return false;
        };
        let mut released = Vec::new();
        while let Some(front) = held.acks.front() {
            if let Some(ticket) = front.ticket {
                if store.poll_durable(ticket, cx).is_pending() {
                    break;
                }
            }
            released.extend(held.acks.pop_front());
        }
        if held.acks.is_empty() && held.output.is_none() {
            self.held = None;
        }
        for a in &released {
            self.ack(a.kind, a.packet_id, a.reason, &mut io.wbuf);
        }
        !released.is_empty()
    }

    /// Acknowledgements waiting for the store.
    pub(crate) fn held_acks(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.acks.len())
    }
}
