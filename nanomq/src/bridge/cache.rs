//! A bridge's queue of messages on their way up, sans I/O: arrival order, bounds with a
//! policy when full, the in-flight window and its acknowledgements, resends after a reconnect.
//!
//! Every message the bridge accepts stays here until the upstream has acknowledged it (PUBACK,
//! or PUBCOMP at QoS 2), or is dropped by a bound (counted by the caller). Messages waiting and
//! messages in flight both count against the bounds; only waiting ones are ever dropped to make
//! room, so what is in flight is never lost.
//!
//! With a state database behind it, at most `memory_messages` waiting messages are held in
//! memory: once that many wait, later ones are only rows on disk ("spilled"), counted here,
//! and read back in row order ([`Cache::needs_refill`], [`Cache::refilled`]) as the memory
//! window empties. Until every spilled message is back, new ones are spilled too, so the order
//! holds; a QoS 0 message, which has no row, is dropped then.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use crate::config::{BridgeCacheConfig, CacheFullPolicy};
use crate::mqtt::{encode, OutgoingPublish, Packet, ProtocolVersion, PubAck, QoS, ReasonCode};
use crate::session::Message;

/// One message on its way up.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Topic at the upstream (already renamed by the forward's template).
    pub(crate) topic: Arc<str>,
    /// The routed message: payload and properties, shared with local subscribers.
    pub(crate) message: Arc<Message>,
    /// QoS it goes up with.
    pub(crate) qos: QoS,
    /// RETAIN flag it goes up with.
    pub(crate) retain: bool,
    /// When the bridge accepted it (for `max_age_secs`).
    pub(crate) at: Instant,
    /// Its row in the state database (0: memory only).
    pub(crate) row: u64,
    /// Packet id at the upstream, 0 until first sent at QoS 1/2.
    packet_id: u16,
    /// QoS 2: PUBREC came, PUBCOMP is awaited.
    released: bool,
    /// Sent on an earlier connection whose upstream session lives on: resend with DUP (or
    /// PUBREL) under the same packet id (MQTT-4.4.0-1).
    resend: bool,
}

impl Entry {
    /// A message accepted now.
    pub(crate) fn new(topic: Arc<str>, message: Arc<Message>, qos: QoS, retain: bool) -> Self {
        Entry {
            topic,
            message,
            qos,
            retain,
            at: Instant::now(),
            row: 0,
            packet_id: 0,
            released: false,
            resend: false,
        }
    }

    /// Bytes it counts against `max_bytes`: topic and payload.
    pub(crate) fn size(&self) -> u64 {
        (self.topic.len() + self.message.payload.len()) as u64
    }
}

/// Why an entry left the cache without being acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The cache was full.
    Full,
    /// Older than `max_age_secs`, or past its Message Expiry Interval.
    Expired,
    /// Larger than the upstream's Maximum Packet Size.
    TooLarge,
    /// QoS 0 while the upstream is away, and `cache.qos0` is off.
    Offline,
    /// QoS 0 while the cache's backlog is on disk, where only QoS 1/2 messages go.
    NoRow,
    /// The upstream answered PUBACK or PUBREC with this failure.
    Refused(ReasonCode),
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropReason::Full => f.write_str("cache full"),
            DropReason::Expired => f.write_str("too old"),
            DropReason::TooLarge => f.write_str("larger than the upstream's maximum packet size"),
            DropReason::Offline => f.write_str("QoS 0 while the upstream is away"),
            DropReason::NoRow => f.write_str("QoS 0 while the backlog is on disk"),
            DropReason::Refused(code) => write!(f, "refused by the upstream: {}", code.describe()),
        }
    }
}

/// What a [`Cache::write`] call did.
#[derive(Debug, Default)]
pub(crate) struct Written {
    /// PUBLISH packets written (resends included).
    pub(crate) published: u64,
    /// Payload bytes in them.
    pub(crate) bytes: u64,
    /// Of them, sent again after a reconnect.
    pub(crate) resent: u64,
    /// Stored entries sent at QoS 0 (capped by the upstream's Maximum QoS): their rows can go.
    pub(crate) done: Vec<Entry>,
    /// Entries dropped instead of sent.
    pub(crate) dropped: Vec<(Entry, DropReason)>,
}

/// The queue; see the module documentation.
#[derive(Debug)]
pub(crate) struct Cache {
    config: BridgeCacheConfig,
    waiting: VecDeque<Entry>,
    in_flight: VecDeque<Entry>,
    bytes: u64,
    last_id: u16,
    online: bool,
    /// Waiting messages held in memory at most (unbounded without a state database).
    memory_limit: usize,
    spilled: Spilled,
}

/// Messages that wait only as rows on disk, all after what is in memory.
#[derive(Debug, Default, Clone, Copy)]
struct Spilled {
    messages: u64,
    bytes: u64,
    /// The last row held in memory: spilled rows are the bridge's rows after it.
    after_row: u64,
}

impl Cache {
    /// An empty cache with the bounds of `config`; `on_disk` when a state database keeps its
    /// QoS 1/2 messages, so that only a window of them needs memory.
    pub(crate) fn new(config: BridgeCacheConfig, on_disk: bool) -> Self {
        let memory_limit = if on_disk {
            config.memory_messages
        } else {
            usize::MAX
        };
        Cache {
            config,
            waiting: VecDeque::new(),
            in_flight: VecDeque::new(),
            bytes: 0,
            last_id: 0,
            online: false,
            memory_limit,
            spilled: Spilled::default(),
        }
    }

    /// Messages held, waiting (in memory or on disk) or in flight.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len() + self.in_flight.len() + self.spilled.messages as usize
    }

    /// True when nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Topic and payload bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Takes `entry` in behind everything else, dropping what the bounds and the policy say
    /// (the newcomer itself, or the oldest waiting entries). Returns what was dropped.
    pub(crate) fn push(&mut self, entry: Entry) -> Vec<(Entry, DropReason)> {
        if entry.qos == QoS::AtMostOnce && !self.online && !self.config.qos0 {
            return vec![(entry, DropReason::Offline)];
        }
        let size = entry.size();
        let fits = |c: &Cache| {
            (c.len() as u64) < c.config.max_messages && c.bytes + size <= c.config.max_bytes
        };
        let spill = self.spilled.messages > 0 || self.waiting.len() >= self.memory_limit;
        if spill && entry.row == 0 {
            return vec![(entry, DropReason::NoRow)];
        }
        let mut dropped = Vec::new();
        if !fits(self) {
            let make_room = self.config.full_policy == CacheFullPolicy::DropOldest
                && size <= self.config.max_bytes;
            while make_room && !fits(self) {
                match self.waiting.pop_front() {
                    Some(old) => {
                        self.bytes -= old.size();
                        dropped.push((old, DropReason::Full));
                    }
                    // Everything left in memory is in flight, which is never dropped; what
                    // is on disk is younger than the newcomer's elders: the newcomer goes.
                    None => break,
                }
            }
            if !fits(self) {
                dropped.push((entry, DropReason::Full));
                return dropped;
            }
        }
        self.bytes += size;
        if spill {
            self.spilled.messages += 1;
            self.spilled.bytes += size;
        } else {
            self.spilled.after_row = self.spilled.after_row.max(entry.row);
            self.waiting.push_back(entry);
        }
        dropped
    }

    /// Counts what the state database held for this bridge at start: all of it spilled, read
    /// back as the link needs it. Nothing read back is dropped, whatever the bounds say.
    #[cfg(feature = "persistence")]
    pub(crate) fn restore_spilled(&mut self, messages: u64, bytes: u64) {
        self.spilled.messages += messages;
        self.spilled.bytes += bytes;
        self.bytes += bytes;
    }

    /// When the memory window is half empty and messages wait on disk: the row to read after
    /// and how many rows to read.
    #[cfg(any(test, feature = "persistence"))]
    pub(crate) fn needs_refill(&self) -> Option<(u64, usize)> {
        let low = self.waiting.len() < self.memory_limit / 2 + 1;
        (self.spilled.messages > 0 && low).then(|| {
            (
                self.spilled.after_row,
                self.memory_limit - self.waiting.len(),
            )
        })
    }

    /// Takes rows read back after [`Cache::needs_refill`]'s row, in row order, behind what
    /// waits in memory. An empty answer while messages are counted on disk means the count is
    /// wrong (rows deleted behind the broker's back): it is set to what was found.
    #[cfg(any(test, feature = "persistence"))]
    pub(crate) fn refilled(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            self.bytes -= self.spilled.bytes.min(self.bytes);
            self.spilled = Spilled {
                after_row: self.spilled.after_row,
                ..Spilled::default()
            };
            return;
        }
        for e in entries {
            if e.row <= self.spilled.after_row {
                continue;
            }
            let size = e.size();
            self.spilled.messages = self.spilled.messages.saturating_sub(1);
            self.spilled.bytes = self.spilled.bytes.saturating_sub(size);
            self.spilled.after_row = e.row;
            self.waiting.push_back(e);
        }
        if self.spilled.messages == 0 {
            // Whatever the counts said, memory now holds everything.
            self.bytes -= self.spilled.bytes.min(self.bytes);
            self.spilled.bytes = 0;
        }
    }

    /// Takes over everything `old` holds: a reload replaced its bridge by this cache's, which
    /// is new and empty. What was in flight on the old link goes first again, as new
    /// messages; the bounds are this cache's from now on.
    pub(crate) fn adopt(&mut self, mut old: Cache) {
        debug_assert!(self.is_empty(), "only a new bridge adopts a cache");
        old.connected(false);
        self.waiting = old.waiting;
        self.bytes = old.bytes;
        self.spilled = old.spilled;
    }

    /// A connection to the upstream is up. What was in flight goes first, in its original
    /// order: as a resend under its packet id when the upstream kept the session, as new
    /// messages when it did not.
    pub(crate) fn connected(&mut self, session_present: bool) {
        self.online = true;
        while let Some(mut e) = self.in_flight.pop_back() {
            e.resend = session_present;
            if !session_present {
                e.packet_id = 0;
                e.released = false;
            }
            self.waiting.push_front(e);
        }
    }

    /// The connection is gone. QoS 0 messages waiting are dropped unless `cache.qos0` is set;
    /// they are returned.
    pub(crate) fn disconnected(&mut self) -> Vec<(Entry, DropReason)> {
        self.online = false;
        if self.config.qos0 {
            return Vec::new();
        }
        let mut dropped = Vec::new();
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        for e in self.waiting.drain(..) {
            if e.qos == QoS::AtMostOnce {
                self.bytes -= e.size();
                dropped.push((e, DropReason::Offline));
            } else {
                kept.push_back(e);
            }
        }
        self.waiting = kept;
        dropped
    }

    /// True when [`Cache::write`] has something to send within `window`.
    pub(crate) fn has_sendable(&self, window: usize) -> bool {
        self.online
            && self
                .waiting
                .front()
                .is_some_and(|e| e.qos == QoS::AtMostOnce || self.in_flight.len() < window)
    }

    /// Encodes what may go now into `out`, oldest first, until `out` holds `budget` bytes or
    /// `window` QoS 1/2 messages are in flight: resends (PUBLISH with DUP, or PUBREL), then
    /// new messages.
    pub(crate) fn write(&mut self, link: &Link, now: Instant, out: &mut BytesMut) -> Written {
        let mut w = Written::default();
        let max_age =
            (self.config.max_age_secs > 0).then(|| Duration::from_secs(self.config.max_age_secs));
        while out.len() < link.budget && self.has_sendable(link.window) {
            let Some(mut e) = self.waiting.pop_front() else {
                break;
            };
            if e.released {
                // Only a resend is released while waiting: PUBREL goes out again.
                let rel = PubAck {
                    packet_id: e.packet_id,
                    ..PubAck::default()
                };
                encode(&Packet::PubRel(rel), link.version, out);
                e.resend = false;
                self.in_flight.push_back(e);
                continue;
            }
            let too_old = max_age.is_some_and(|age| now.saturating_duration_since(e.at) > age);
            let expiry = match e.message.remaining_expiry(now) {
                Ok(expiry) if !too_old => expiry,
                _ => {
                    self.bytes -= e.size();
                    w.dropped.push((e, DropReason::Expired));
                    continue;
                }
            };
            if e.qos > link.max_qos {
                e.qos = link.max_qos;
                e.packet_id = 0;
                e.resend = false;
            }
            if e.qos != QoS::AtMostOnce && e.packet_id == 0 {
                e.packet_id = self.next_packet_id();
            }
            let publish = OutgoingPublish {
                dup: e.resend,
                qos: e.qos,
                retain: e.retain && link.retain_available,
                topic: &e.topic,
                packet_id: e.packet_id,
                topic_alias: None,
                message_expiry_interval: expiry,
                subscription_identifiers: &[],
                properties: &e.message.properties,
                payload: &e.message.payload,
            };
            if publish.encoded_len(link.version) > link.max_packet_size {
                self.bytes -= e.size();
                w.dropped.push((e, DropReason::TooLarge));
                continue;
            }
            publish.encode(link.version, out);
            w.published += 1;
            w.bytes += e.message.payload.len() as u64;
            w.resent += u64::from(e.resend);
            e.resend = false;
            if e.qos == QoS::AtMostOnce {
                self.bytes -= e.size();
                if e.row != 0 {
                    w.done.push(e);
                }
            } else {
                self.in_flight.push_back(e);
            }
        }
        w
    }

    /// A packet id not in use: neither in flight nor owed a resend.
    fn next_packet_id(&mut self) -> u16 {
        loop {
            self.last_id = self.last_id.wrapping_add(1);
            let id = self.last_id;
            let taken = |e: &Entry| e.packet_id == id;
            let resends = self.waiting.iter().take_while(|e| e.resend);
            if id != 0 && !self.in_flight.iter().any(taken) && !resends.clone().any(taken) {
                return id;
            }
        }
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2): the flow of `packet_id` is over. Returns its entry,
    /// None for an unknown packet id.
    pub(crate) fn acknowledged(&mut self, packet_id: u16, pubcomp: bool) -> Option<Entry> {
        let at = self.in_flight.iter().position(|e| {
            e.packet_id == packet_id
                && if pubcomp {
                    e.released
                } else {
                    e.qos == QoS::AtLeastOnce
                }
        })?;
        let e = self.in_flight.remove(at)?;
        self.bytes -= e.size();
        Some(e)
    }

    /// PUBREC: true when a PUBREL is due (also for a repeated PUBREC). A failure reason code
    /// ends the flow: the upstream refused the message, which is returned.
    pub(crate) fn received(&mut self, packet_id: u16, failed: bool) -> (bool, Option<Entry>) {
        let Some(at) = self
            .in_flight
            .iter()
            .position(|e| e.packet_id == packet_id && e.qos == QoS::ExactlyOnce)
        else {
            return (false, None);
        };
        if failed {
            let e = self.in_flight.remove(at);
            if let Some(e) = &e {
                self.bytes -= e.size();
            }
            return (false, e);
        }
        self.in_flight[at].released = true;
        (true, None)
    }
}

/// What the current connection allows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    /// Protocol version spoken.
    pub(crate) version: ProtocolVersion,
    /// QoS 1/2 messages in flight at most.
    pub(crate) window: usize,
    /// The upstream's Maximum Packet Size.
    pub(crate) max_packet_size: usize,
    /// Bytes to encode per turn before writing.
    pub(crate) budget: usize,
    /// The upstream's Maximum QoS (AWS IoT, for one, takes no QoS 2): higher goes down to it.
    pub(crate) max_qos: QoS,
    /// Whether the upstream takes retained messages; if not, RETAIN is cleared.
    pub(crate) retain_available: bool,
}

#[cfg(test)]
mod tests;
