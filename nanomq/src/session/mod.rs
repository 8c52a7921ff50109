//! Per-client MQTT session state, sans I/O (the quinn-proto habit): messages go in, packets come
//! out into a buffer, and the clock is a parameter. The broker's connection task is a thin driver
//! around it, and the same core serves every transport.
//!
//! A [`Session`] outlives its connections: subscriptions, queued messages, outbound QoS 1/2
//! messages in flight and inbound QoS 2 packet ids all stay here while the client is away, so a
//! resumed session continues exactly where it stopped. Its fields are plain data so a store can
//! persist them.

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod inflight;
mod queue;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

pub use inflight::{Inflight, Phase};
pub use queue::{FullPolicy, OutboundQueue};

use crate::mqtt::{OutgoingPublish, Properties, ProtocolVersion, QoS, SubscriptionOptions, Will};

/// An application message as the broker routes it: read once, then shared by every subscriber.
#[derive(Debug)]
pub struct Message {
    /// Topic name.
    pub topic: Arc<str>,
    /// Payload, a slice of the publisher's read buffer.
    pub payload: Bytes,
    /// QoS it was published with; deliveries are downgraded from it.
    pub qos: QoS,
    /// RETAIN flag as published.
    pub retain: bool,
    /// Properties passed through unchanged (topic alias, expiry and subscription ids removed).
    pub properties: Properties,
    /// When the Message Expiry Interval runs out, if one was given.
    pub expires_at: Option<Instant>,
    /// Its row in the state database, given when it is first stored (see `store`).
    pub store_id: StoreId,
}

/// The id of a message's row in the state database: 0 until the message is first stored. Only
/// stored messages pay for giving one out; the publish path never touches it otherwise.
#[derive(Debug, Default)]
pub struct StoreId(portable_atomic::AtomicU64);

impl StoreId {
    /// An id read back from the database.
    pub fn new(id: u64) -> Self {
        StoreId(portable_atomic::AtomicU64::new(id))
    }

    /// The id, given by `assign` the first time (several threads may store the same message
    /// at once: one id wins and all of them use it).
    pub fn get_or_assign(&self, assign: impl FnOnce() -> u64) -> u64 {
        use std::sync::atomic::Ordering;
        let id = self.0.load(Ordering::Acquire);
        if id != 0 {
            return id;
        }
        match self
            .0
            .compare_exchange(0, assign(), Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => self.0.load(Ordering::Acquire),
            Err(winner) => winner,
        }
    }

    /// The id, 0 when the message was never stored.
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Message {
    /// Seconds of life left to put in the forwarded Message Expiry Interval, or `Err` if the
    /// message has expired and must not be sent.
    pub fn remaining_expiry(&self, now: Instant) -> Result<Option<u32>, Expired> {
        match self.expires_at {
            None => Ok(None),
            Some(at) if at <= now => Err(Expired),
            Some(at) => {
                let left = at - now;
                // Round up so a message never reaches a client with 0 (= no expiry) left.
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                Ok(Some(secs.min(u64::from(u32::MAX)) as u32))
            }
        }
    }
}

/// The message's Message Expiry Interval has run out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired;

/// One message on its way to one subscriber: the shared message plus what is per subscriber.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The shared message.
    pub message: Arc<Message>,
    /// Delivery QoS, already downgraded to the subscription's maximum.
    pub qos: QoS,
    /// RETAIN flag as delivered (Retain As Published, or a retained message sent at subscribe).
    pub retain: bool,
    /// Identifiers of every matching subscription.
    pub subscription_identifiers: Vec<u32>,
    /// Also written to the state database: what becomes of it is journaled (see
    /// [`StoreEvent`]).
    pub stored: bool,
}

/// What happened to a session's stored state, for the state database to follow. A session
/// records these only while journaled ([`Session::set_journaled`]); the broker drains them
/// ([`Session::take_journal`]) under the same lock, so the database sees them in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreEvent {
    /// A stored QoS 2 message went out with this packet id: a resend after a restart must use
    /// it, or the client would take it for a new message.
    Sent {
        /// The message's [`StoreId`].
        message: u64,
        /// The packet id it went out with.
        packet_id: u16,
    },
    /// PUBREC came for a stored QoS 2 message: after a restart, PUBREL is owed, not PUBLISH.
    Released {
        /// The flow's packet id.
        packet_id: u16,
    },
    /// A stored message is done with: acknowledged, expired, too large or dropped. `packet_id`
    /// names it among copies of the same message when it was a QoS 2 flow in progress.
    Settled {
        /// The message's [`StoreId`].
        message: u64,
        /// The packet id of its QoS 2 flow, if one was under way.
        packet_id: Option<u16>,
    },
    /// An inbound QoS 2 packet id now awaits PUBREL: a resend after a restart is a duplicate.
    InboundAdded(u16),
    /// PUBREL came for an inbound QoS 2 packet id.
    InboundReleased(u16),
}

/// One subscription as the session remembers it, to restore and to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionEntry {
    /// Options granted (QoS already capped by the broker's maximum).
    pub options: SubscriptionOptions,
    /// Subscription Identifier, if the client gave one.
    pub identifier: Option<u32>,
}

/// A session as the state database keeps it; see [`Session::restore`].
#[derive(Debug, Default)]
pub struct SavedSession {
    /// Session Expiry Interval left, in seconds.
    pub expiry_interval: u32,
    /// The user name that started it.
    pub owner: Option<String>,
    /// Its subscriptions by filter.
    pub subscriptions: BTreeMap<String, SubscriptionEntry>,
    /// QoS 2 flows under way: packet id, phase (`AwaitRec` or `AwaitComp`) and message.
    pub inflight: Vec<(u16, Phase, Outgoing)>,
    /// Messages waiting, oldest first (QoS 1 messages sent but not acknowledged among them).
    pub queue: Vec<Outgoing>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub inbound_qos2: BTreeSet<u16>,
}

/// Limits from the configuration that shape a session's queues.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Maximum messages waiting in the queue (u32 keeps every session a word smaller).
    pub max_queued: u32,
    /// What to drop when the queue is full.
    pub full_policy: FullPolicy,
    /// The broker's cap on outbound QoS 1/2 messages in flight.
    pub max_inflight: u16,
    /// The broker's cap on outgoing topic aliases (0 disables them).
    pub max_outgoing_alias: u16,
}

/// What was negotiated for the connection currently attached to the session.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionParams {
    /// Protocol version of the connection.
    pub version: ProtocolVersion,
    /// The client's Receive Maximum (65535 when it gave none).
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size (u32::MAX when it gave none).
    pub max_packet_size: u32,
    /// The client's Topic Alias Maximum (0 when it gave none).
    pub topic_alias_maximum: u16,
}

/// State of the attached connection that does not survive it.
#[derive(Debug)]
struct Attached {
    params: ConnectionParams,
    /// Allocated on the first alias: most clients never ask for aliases, and every session pays
    /// for what is inline here (8 bytes instead of an empty map's 24).
    #[allow(clippy::box_collection)]
    aliases: Option<Box<BTreeMap<Arc<str>, u16>>>,
    alias_limit: u16,
}

/// Counters of what a [`Session::write_pending`] call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// PUBLISH packets written (resends included).
    pub published: u64,
    /// Messages dropped because their Message Expiry Interval ran out.
    pub expired: u64,
    /// Messages dropped because they exceed the client's Maximum Packet Size.
    pub too_large: u64,
}

/// A client's session; see the module documentation.
#[derive(Debug)]
pub struct Session {
    limits: SessionLimits,
    queue: OutboundQueue,
    inflight: Inflight,
    inbound_qos2: BTreeSet<u16>,
    /// Subscriptions by filter (shared filters keep their `$share/group/` prefix).
    pub subscriptions: BTreeMap<String, SubscriptionEntry>,
    /// Session Expiry Interval in seconds (0: ends with the connection; u32::MAX: never).
    pub expiry_interval: u32,
    /// What many sessions never have, behind one pointer: every session is kept in memory, so
    /// those without a pending will or an owner pay 8 bytes for both.
    extras: Option<Box<Extras>>,
    attached: Option<Attached>,
}

/// The rarer parts of a session.
#[derive(Debug, Default)]
struct Extras {
    /// A will waiting for its Will Delay Interval or for the session to end.
    pending_will: Option<Box<Will>>,
    /// The user name of the connection that started the session (None: anonymous). Only a
    /// connection with the same user name resumes it, so what was granted to one user (its
    /// subscriptions, its queued messages) never goes to another.
    owner: Option<Box<str>>,
    /// The session is in the state database: changes to what it stores are journaled.
    journaled: bool,
    /// Changes not yet handed to the state database.
    journal: Vec<StoreEvent>,
}

impl Session {
    /// A new, empty, detached session.
    pub fn new(limits: SessionLimits) -> Self {
        Session {
            limits,
            queue: OutboundQueue::default(),
            inflight: Inflight::default(),
            inbound_qos2: BTreeSet::new(),
            subscriptions: BTreeMap::new(),
            expiry_interval: 0,
            extras: None,
            attached: None,
        }
    }

    /// A detached session read back from the state database: journaled, its in-flight flows
    /// owed a resend on the next connection, its queue in the order it was stored (which may
    /// exceed today's queue limit: nothing read back is dropped).
    pub fn restore(limits: SessionLimits, saved: SavedSession) -> Self {
        let mut s = Session::new(limits);
        s.expiry_interval = saved.expiry_interval;
        s.subscriptions = saved.subscriptions;
        s.inbound_qos2 = saved.inbound_qos2;
        for (packet_id, phase, item) in saved.inflight {
            s.inflight.restore(packet_id, phase, item);
        }
        for item in saved.queue {
            s.queue.push(item, usize::MAX, limits.full_policy);
        }
        s.set_owner(saved.owner.as_deref());
        s.set_journaled(true);
        s
    }

    /// The user name that started the session (None: anonymous).
    pub fn owner(&self) -> Option<&str> {
        self.extras.as_ref()?.owner.as_deref()
    }

    /// Records the user name that starts the session.
    pub fn set_owner(&mut self, owner: Option<&str>) {
        if owner.is_none() && self.extras.is_none() {
            return;
        }
        self.extras_mut().owner = owner.map(Box::from);
        self.drop_empty_extras();
    }

    /// Parks a will until its delay runs out or the session ends (None cancels one).
    pub fn set_pending_will(&mut self, will: Option<Box<Will>>) {
        if will.is_none() && self.extras.is_none() {
            return;
        }
        self.extras_mut().pending_will = will;
        self.drop_empty_extras();
    }

    /// Takes the pending will, if any.
    pub fn take_pending_will(&mut self) -> Option<Box<Will>> {
        let will = self.extras.as_mut()?.pending_will.take();
        self.drop_empty_extras();
        will
    }

    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    fn drop_empty_extras(&mut self) {
        if self
            .extras
            .as_ref()
            .is_some_and(|e| e.pending_will.is_none() && e.owner.is_none() && !e.journaled)
        {
            self.extras = None;
        }
    }

    /// Starts (or stops) journaling what becomes of stored messages and inbound QoS 2 packet
    /// ids: the session is (or is no longer) in the state database.
    pub fn set_journaled(&mut self, journaled: bool) {
        if !journaled && self.extras.is_none() {
            return;
        }
        let extras = self.extras_mut();
        extras.journaled = journaled;
        if !journaled {
            extras.journal = Vec::new();
        }
        self.drop_empty_extras();
    }

    /// True while the session is in the state database.
    pub fn is_journaled(&self) -> bool {
        self.extras.as_ref().is_some_and(|e| e.journaled)
    }

    /// Hands over the changes journaled since the last call.
    pub fn take_journal(&mut self) -> Vec<StoreEvent> {
        match &mut self.extras {
            Some(e) if !e.journal.is_empty() => std::mem::take(&mut e.journal),
            _ => Vec::new(),
        }
    }

    /// Journals `event` when the session is journaled.
    fn journal(&mut self, event: StoreEvent) {
        if let Some(e) = &mut self.extras {
            if e.journaled {
                e.journal.push(event);
            }
        }
    }

    /// Journals that a stored `item` is done with.
    fn settle(&mut self, item: &Outgoing, packet_id: Option<u16>) {
        if item.stored {
            let message = item.message.store_id.get();
            self.journal(StoreEvent::Settled { message, packet_id });
        }
    }

    /// True while a connection is attached.
    pub fn is_online(&self) -> bool {
        self.attached.is_some()
    }

    /// Attaches a new connection: aliases start afresh and everything in flight is resent
    /// (PUBLISH with DUP, or PUBREL) before any new QoS 1/2 message, within the client's Receive
    /// Maximum (new QoS 0 messages may pass resends that wait for it, as MQTT-4.6.0-6 allows).
    pub fn attach(&mut self, params: ConnectionParams) {
        let alias_limit = if params.version.is_v5() {
            params
                .topic_alias_maximum
                .min(self.limits.max_outgoing_alias)
        } else {
            0
        };
        self.attached = Some(Attached {
            params,
            aliases: None,
            alias_limit,
        });
        self.inflight.owe_resend();
    }

    /// Detaches the connection. QoS 0 messages are not kept for an offline session; the number
    /// dropped is returned.
    pub fn detach(&mut self) -> usize {
        self.attached = None;
        self.queue.drop_qos0()
    }

    /// Queues a message for delivery. An offline session does not take QoS 0. Returns the
    /// message dropped to respect the queue limit, if any.
    pub fn enqueue(&mut self, item: Outgoing) -> Option<Outgoing> {
        if self.attached.is_none() && item.qos == QoS::AtMostOnce {
            return None;
        }
        let dropped = self.queue.push(
            item,
            self.limits.max_queued as usize,
            self.limits.full_policy,
        );
        if let Some(d) = &dropped {
            self.settle(d, None);
        }
        dropped
    }

    /// Messages waiting (not yet in flight).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// True when `write_pending` has something to write now.
    pub fn has_pending(&self) -> bool {
        match &self.attached {
            None => false,
            Some(a) => {
                self.inflight.resend_ready(self.window(a))
                    || (!self.queue.is_empty() && self.window_open(a))
            }
        }
    }

    /// The client's Receive Maximum capped by the broker's `max_inflight`.
    fn window(&self, a: &Attached) -> usize {
        usize::from(a.params.receive_maximum.min(self.limits.max_inflight))
    }

    /// True when the oldest queued message may go now. While resends wait for the window, the
    /// messages in flight fill it, so no new QoS 1/2 message overtakes them.
    fn window_open(&self, a: &Attached) -> bool {
        let window = self.window(a);
        match self.queue.front() {
            Some(m) if m.qos == QoS::AtMostOnce => true,
            Some(_) => self.inflight.len() < window,
            None => false,
        }
    }

    /// Encodes what can be sent now into `out`, stopping once `out` holds `budget` bytes:
    /// first the resends after a reconnect, then queued messages in order while the in-flight
    /// window (the client's Receive Maximum, capped by the broker's) has room.
    pub fn write_pending(&mut self, now: Instant, out: &mut BytesMut, budget: usize) -> WriteStats {
        let mut stats = WriteStats::default();
        let Some(mut a) = self.attached.take() else {
            return stats;
        };
        let window = self.window(&a);
        let mut discarded = Vec::new();
        self.inflight
            .resend(&a.params, window, now, out, &mut stats, &mut |item, id| {
                discarded.push((item, id))
            });
        for (item, id) in discarded {
            let qos2 = item.qos == QoS::ExactlyOnce;
            self.settle(&item, qos2.then_some(id));
        }
        while out.len() < budget && self.window_open(&a) {
            let Some(item) = self.queue.pop() else { break };
            let expiry = match item.message.remaining_expiry(now) {
                Ok(e) => e,
                Err(Expired) => {
                    stats.expired += 1;
                    self.settle(&item, None);
                    continue;
                }
            };
            let packet_id = if item.qos == QoS::AtMostOnce {
                0
            } else {
                self.inflight.next_packet_id()
            };
            let topic = &item.message.topic;
            let alias = outgoing_alias(&mut a, topic);
            let topic_field = if alias.is_some_and(|al| !al.new) {
                ""
            } else {
                topic
            };
            let mut publish = OutgoingPublish {
                dup: false,
                qos: item.qos,
                retain: item.retain,
                topic: topic_field,
                packet_id,
                topic_alias: alias.map(|al| al.alias),
                message_expiry_interval: expiry,
                subscription_identifiers: &item.subscription_identifiers,
                properties: &item.message.properties,
                payload: &item.message.payload,
            };
            let max = a.params.max_packet_size as usize;
            if publish.encoded_len(a.params.version) > max && alias.is_some() {
                // The alias property may be what does not fit: try the full topic without
                // it. An alias assigned just now would be unknown to the client: forget it.
                if let (Some(AliasUse { new: true, .. }), Some(aliases)) = (alias, &mut a.aliases) {
                    aliases.remove(topic);
                }
                publish.topic = topic;
                publish.topic_alias = None;
            }
            if publish.encoded_len(a.params.version) > max {
                // MQTT-3.1.2-25: discard as if delivered.
                stats.too_large += 1;
                self.settle(&item, None);
                continue;
            }
            publish.encode(a.params.version, out);
            stats.published += 1;
            if item.stored && item.qos == QoS::ExactlyOnce {
                let message = item.message.store_id.get();
                self.journal(StoreEvent::Sent { message, packet_id });
            }
            if packet_id != 0 {
                self.inflight.insert(packet_id, item);
            }
        }
        self.attached = Some(a);
        stats
    }

    /// PUBACK from the client. Returns false for an unknown packet id.
    pub fn on_puback(&mut self, packet_id: u16) -> bool {
        self.complete(packet_id, Phase::AwaitAck)
    }

    /// PUBREC from the client: true when a PUBREL must be sent. A failure reason ends the flow.
    pub fn on_pubrec(&mut self, packet_id: u16, failed: bool) -> bool {
        if failed {
            self.complete(packet_id, Phase::AwaitRec);
            return false;
        }
        let stored = self.is_journaled() && self.inflight.awaits(packet_id, Phase::AwaitRec);
        let release = self.inflight.released(packet_id);
        if stored {
            self.journal(StoreEvent::Released { packet_id });
        }
        release
    }

    /// PUBCOMP from the client. Returns false for an unknown packet id.
    pub fn on_pubcomp(&mut self, packet_id: u16) -> bool {
        self.complete(packet_id, Phase::AwaitComp)
    }

    /// Ends the outbound flow of `packet_id` in `phase`, journaling it when it was stored.
    fn complete(&mut self, packet_id: u16, phase: Phase) -> bool {
        let Some(item) = self.inflight.complete(packet_id, phase) else {
            return false;
        };
        let qos2 = item.qos == QoS::ExactlyOnce;
        self.settle(&item, qos2.then_some(packet_id));
        true
    }

    /// An inbound QoS 2 PUBLISH: true if this packet id is new and the message must be routed,
    /// false if it is a retransmission of one already received (exactly once).
    pub fn on_inbound_qos2(&mut self, packet_id: u16) -> bool {
        let new = self.inbound_qos2.insert(packet_id);
        if new {
            self.journal(StoreEvent::InboundAdded(packet_id));
        }
        new
    }

    /// True if an inbound QoS 2 message with this packet id awaits PUBREL.
    pub fn has_inbound_qos2(&self, packet_id: u16) -> bool {
        self.inbound_qos2.contains(&packet_id)
    }

    /// PUBREL from the client: true if the packet id was known.
    pub fn on_pubrel(&mut self, packet_id: u16) -> bool {
        let known = self.inbound_qos2.remove(&packet_id);
        if known {
            self.journal(StoreEvent::InboundReleased(packet_id));
        }
        known
    }

    /// Inbound QoS 2 messages awaiting PUBREL: they count against the broker's Receive Maximum.
    pub fn inbound_in_flight(&self) -> usize {
        self.inbound_qos2.len()
    }

    /// Outbound QoS 1/2 messages awaiting acknowledgement.
    pub fn outbound_in_flight(&self) -> usize {
        self.inflight.len()
    }
}

/// A Topic Alias chosen for one outgoing PUBLISH.
#[derive(Debug, Clone, Copy)]
struct AliasUse {
    alias: u16,
    /// Assigned by this PUBLISH, which must then carry the topic too; later ones send "".
    new: bool,
}

/// Picks the Topic Alias for one PUBLISH: a new alias while aliases remain, then the same alias
/// for every later message on the topic; none once the client's maximum is used up.
fn outgoing_alias(a: &mut Attached, topic: &Arc<str>) -> Option<AliasUse> {
    if a.alias_limit == 0 {
        return None;
    }
    let aliases = a.aliases.get_or_insert_with(Box::default);
    if let Some(&alias) = aliases.get(topic) {
        return Some(AliasUse { alias, new: false });
    }
    // Aliases run from 1 to the limit; once all are taken, later topics go without one.
    let next = match u16::try_from(aliases.len() + 1) {
        Ok(next) if next <= a.alias_limit => next,
        _ => return None,
    };
    aliases.insert(topic.clone(), next);
    Some(AliasUse {
        alias: next,
        new: true,
    })
}

#[cfg(test)]
pub(crate) mod tests;
