//! Outbound QoS 1/2 messages sent and not yet acknowledged, in the order they were sent.

use std::collections::VecDeque;

use bytes::BytesMut;
use tokio::time::Instant;

use super::{ConnectionParams, Outgoing, WriteStats};
use crate::mqtt::{encode, OutgoingPublish, Packet, PubAck};

/// Where an outbound QoS 1/2 message is in its acknowledgement flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    AwaitAck,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    AwaitRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitComp,
}

/// What the attached connection has carried of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Sent on an earlier connection: owed a resend on this one.
    Earlier,
    /// PUBLISH sent on this connection: it counts against the client's Receive Maximum until
    /// acknowledged (MQTT-3.3.4-9).
    Publish,
    /// Only the PUBREL went out on this connection, which does not count.
    Release,
}

#[derive(Debug)]
struct Entry {
    packet_id: u16,
    item: Outgoing,
    phase: Phase,
    sent: Sent,
}

/// The outbound in-flight window. Packet ids are per session and never reused while in flight;
/// send order is kept so a resend after reconnect repeats the original order (MQTT-4.6.0-1).
#[derive(Debug, Default)]
pub struct Inflight {
    entries: VecDeque<Entry>,
    last_id: u16,
    /// Entries in [`Sent::Earlier`], so that a session owing nothing answers at once. u32
    /// fits beside `last_id`: every session is a word smaller than with usize.
    owed: u32,
}

impl Inflight {
    /// Number of messages in flight.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The next packet id not in flight. The window is far smaller than 65535, so the loop ends
    /// after at most `len() + 1` probes.
    pub fn next_packet_id(&mut self) -> u16 {
        loop {
            self.last_id = self.last_id.wrapping_add(1);
            if self.last_id != 0 && !self.entries.iter().any(|e| e.packet_id == self.last_id) {
                return self.last_id;
            }
        }
    }

    /// Records a PUBLISH just sent with `packet_id`.
    pub fn insert(&mut self, packet_id: u16, item: Outgoing) {
        let phase = match item.qos {
            crate::mqtt::QoS::ExactlyOnce => Phase::AwaitRec,
            _ => Phase::AwaitAck,
        };
        self.entries.push_back(Entry {
            packet_id,
            item,
            phase,
            sent: Sent::Publish,
        });
    }

    fn position(&self, packet_id: u16, phase: Phase) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.packet_id == packet_id && e.phase == phase)
    }

    /// Ends the flow of `packet_id` if it is in `phase`, returning its message; None if there
    /// is no such flow.
    pub fn complete(&mut self, packet_id: u16, phase: Phase) -> Option<Outgoing> {
        let e = self
            .position(packet_id, phase)
            .and_then(|i| self.entries.remove(i))?;
        if e.sent == Sent::Earlier {
            self.owed -= 1;
        }
        Some(e.item)
    }

    /// Puts back a flow read from the state database, owed a resend like every flow after a
    /// reconnect. Packet ids stay as they were sent.
    pub fn restore(&mut self, packet_id: u16, phase: Phase, item: Outgoing) {
        self.entries.push_back(Entry {
            packet_id,
            item,
            phase,
            sent: Sent::Earlier,
        });
        self.owed += 1;
        self.last_id = self.last_id.max(packet_id);
    }

    /// True if `packet_id` is in flight in `phase`.
    pub fn awaits(&self, packet_id: u16, phase: Phase) -> bool {
        self.position(packet_id, phase).is_some()
    }

    /// PUBREC received: moves the flow to [`Phase::AwaitComp`]. True if a PUBREL is due, which
    /// is also the case for a repeated PUBREC of a flow already released.
    pub fn released(&mut self, packet_id: u16) -> bool {
        if let Some(i) = self.position(packet_id, Phase::AwaitRec) {
            self.entries[i].phase = Phase::AwaitComp;
            return true;
        }
        self.position(packet_id, Phase::AwaitComp).is_some()
    }

    /// A new connection is attached: everything in flight is owed to it again.
    pub fn owe_resend(&mut self) {
        for e in &mut self.entries {
            e.sent = Sent::Earlier;
        }
        // In flight is bounded by max_inflight, a u16.
        self.owed = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
    }

    /// True when [`Self::resend`] has something to do within `window`.
    pub fn resend_ready(&self, window: usize) -> bool {
        if self.owed == 0 {
            return false;
        }
        match self.entries.iter().find(|e| e.sent == Sent::Earlier) {
            None => false,
            Some(e) => e.phase == Phase::AwaitComp || self.published() < window,
        }
    }

    /// PUBLISH packets sent on this connection and not yet acknowledged.
    fn published(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.sent == Sent::Publish)
            .count()
    }

    /// Re-sends what is owed to a new connection, in the original order: PUBLISH with DUP set
    /// and the full topic (aliases do not survive the connection), or PUBREL for flows already
    /// past PUBREC. Re-sent PUBLISH packets count against the client's Receive Maximum like new
    /// ones (`window`): once it is reached the rest waits for acknowledgements. One that has
    /// become too large for the client (a smaller Maximum Packet Size, or no alias) is
    /// discarded as if delivered (MQTT-3.1.2-25) and handed to `discarded` with its packet id.
    pub fn resend(
        &mut self,
        params: &ConnectionParams,
        window: usize,
        now: Instant,
        out: &mut BytesMut,
        stats: &mut WriteStats,
        discarded: &mut impl FnMut(Outgoing, u16),
    ) {
        if self.owed == 0 {
            return;
        }
        let version = params.version;
        let mut published = self.published();
        let mut i = 0;
        while let Some(e) = self.entries.get_mut(i) {
            if e.sent != Sent::Earlier {
                i += 1;
                continue;
            }
            if e.phase == Phase::AwaitComp {
                let rel = PubAck {
                    packet_id: e.packet_id,
                    ..PubAck::default()
                };
                encode(&Packet::PubRel(rel), version, out);
                e.sent = Sent::Release;
                self.owed -= 1;
                i += 1;
                continue;
            }
            if published >= window {
                break;
            }
            let m = &e.item.message;
            // Delivery has started: an expiry that ran out since is sent as 1 s, not dropped.
            let expiry = m.remaining_expiry(now).unwrap_or(Some(1));
            let publish = OutgoingPublish {
                dup: true,
                qos: e.item.qos,
                retain: e.item.retain,
                topic: &m.topic,
                packet_id: e.packet_id,
                topic_alias: None,
                message_expiry_interval: expiry,
                subscription_identifiers: &e.item.subscription_identifiers,
                properties: &m.properties,
                payload: &m.payload,
            };
            if publish.encoded_len(version) > params.max_packet_size as usize {
                if let Some(e) = self.entries.remove(i) {
                    discarded(e.item, e.packet_id);
                }
                self.owed -= 1;
                stats.too_large += 1;
                continue;
            }
            publish.encode(version, out);
            e.sent = Sent::Publish;
            self.owed -= 1;
            published += 1;
            stats.published += 1;
            i += 1;
        }
    }
}
