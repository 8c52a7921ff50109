//! The publish path: retained store update and fan-out to every matching session's queue.
//! The payload is shared by reference; per subscriber only the small [`Outgoing`] header is built.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::{Broker, Subscriber};
use crate::mqtt::{Properties, QoS, Will};
use crate::session::{Message, Outgoing};
use crate::store::Ticket;

/// Builds the routed form of a message: expiry turned into a deadline, and the properties that
/// are per hop (topic alias, subscription ids, expiry, will delay) removed from the pass-through.
pub(crate) fn message(
    topic: Arc<str>,
    payload: bytes::Bytes,
    qos: QoS,
    retain: bool,
    mut properties: Properties,
    now: Instant,
) -> Message {
    let expires_at = properties
        .message_expiry_interval
        .take()
        .map(|s| now + std::time::Duration::from_secs(s.into()));
    properties.topic_alias = None;
    properties.will_delay_interval = None;
    properties.subscription_identifiers.clear();
    Message {
        topic,
        payload,
        qos,
        retain,
        properties,
        expires_at,
        store_id: Default::default(),
    }
}

/// What became of a routed message.
pub(crate) struct Routed {
    /// Subscribers it was queued for.
    pub(crate) matched: usize,
    /// The last change it made to the state database (retained, or queued for a persistent
    /// session), if any: an acknowledgement that promises it is kept waits for this.
    pub(crate) stored: Option<Ticket>,
}

/// The publisher of messages the broker originates (`$SYS`, wills): nobody, so No Local
/// filters none of them.
pub(crate) const FROM_BROKER: Option<&Subscriber> = None;

/// Routes a message to every matching subscriber and updates the retained store. `publisher`
/// is the sending session or bridge (for No Local), None for broker-originated messages.
pub(crate) fn route<P>(broker: &Broker, message: Arc<Message>, publisher: Option<&P>) -> Routed
where
    Subscriber: PartialEq<P>,
{
    let mut stored = None;
    if message.retain && broker.config.mqtt.retain_available {
        let keep = (!message.payload.is_empty()).then(|| message.clone());
        // $SYS statistics are the broker's own, published again after a restart.
        match broker
            .store
            .as_ref()
            .filter(|_| !message.topic.starts_with("$SYS/"))
        {
            Some(store) => broker.retained.set_and(&message.topic, keep.clone(), || {
                stored = Some(store.retain(&message.topic, keep.as_ref()));
            }),
            None => broker.retained.set(&message.topic, keep),
        }
    }
    let mut deliveries = Vec::new();
    broker.subscriptions.match_topic(
        &message.topic,
        publisher,
        |s| s.is_online(),
        &mut deliveries,
    );
    let matched = deliveries.len();
    for d in deliveries {
        let item = Outgoing {
            message: message.clone(),
            qos: message.qos.min(d.qos),
            retain: message.retain && d.retain_as_published,
            subscription_identifiers: d.subscription_identifiers,
            stored: false,
        };
        let ticket = match &d.subscriber {
            Subscriber::Session(session) => deliver(broker, session, item),
            #[cfg(feature = "bridge")]
            Subscriber::Bridge(bridge) => bridge.accept(item),
        };
        stored = stored.max(ticket);
    }
    Routed { matched, stored }
}

/// Routes a message a bridge brought down from its upstream, published locally by the bridge:
/// No Local keeps it out of the bridge's own forwards. Returns what routing stored, for the
/// acknowledgement to wait for.
#[cfg(feature = "bridge")]
pub(crate) fn publish_from_bridge(
    broker: &Broker,
    bridge: &Subscriber,
    topic: Arc<str>,
    publish: crate::mqtt::Publish,
) -> Routed {
    let m = message(
        topic,
        publish.payload,
        publish.qos,
        publish.retain,
        publish.properties,
        Instant::now(),
    );
    route_received(broker, m, Some(bridge))
}

/// Counts a message that enters the broker without a client connection (a will, a bridge's
/// downlink) as received, and routes it.
fn route_received<P>(broker: &Broker, m: Message, publisher: Option<&P>) -> Routed
where
    Subscriber: PartialEq<P>,
{
    broker
        .metrics
        .messages_received
        .fetch_add(1, Ordering::Relaxed);
    route(broker, Arc::new(m), publisher)
}

/// Queues one delivery for a session and wakes its connection, counting what the queue limit
/// (or the state database's) made it drop. A QoS 1/2 message for a persistent session is
/// stored first; returns the ticket of what this wrote to the state database.
pub(crate) fn deliver(
    broker: &Broker,
    session: &super::registry::SessionHandle,
    mut item: Outgoing,
) -> Option<Ticket> {
    let (dropped, ticket) = {
        let mut s = session.state();
        let mut ticket = None;
        if let (Some(store), true) = (&broker.store, s.is_journaled()) {
            if item.qos != QoS::AtMostOnce {
                match store.enqueue(&session.client_id, &item) {
                    Some(t) => {
                        item.stored = true;
                        ticket = Some(t);
                    }
                    None => {
                        drop(s);
                        count_drop(broker, session, &item, "state database bound reached");
                        return None;
                    }
                }
            }
        }
        let dropped = s.enqueue(item);
        (
            dropped,
            super::persist::journal(broker, session, &mut s).max(ticket),
        )
    };
    if let Some(d) = dropped {
        count_drop(broker, session, &d, "session queue full");
    }
    session.wake();
    ticket
}

/// Counts a delivery dropped for `why`, logging the first and then every power of two.
fn count_drop(broker: &Broker, session: &super::registry::SessionHandle, d: &Outgoing, why: &str) {
    let total = broker
        .metrics
        .messages_dropped
        .fetch_add(1, Ordering::Relaxed)
        + 1;
    // One line per power of two keeps a flood of drops from flooding the log.
    if total.is_power_of_two() {
        tracing::warn!(
            client_id = %session.client_id,
            topic = %d.message.topic,
            qos = d.qos as u8,
            dropped_total = total,
            "{why}: message dropped"
        );
    }
}

/// Publishes a will message on behalf of a client that is gone.
pub(crate) fn publish_will(broker: &Broker, will: Will) {
    let m = message(
        Arc::from(will.topic.as_str()),
        will.payload,
        will.qos,
        will.retain,
        will.properties,
        Instant::now(),
    );
    route_received(broker, m, FROM_BROKER);
}
