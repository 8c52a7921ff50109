//! Outbound QoS 1/2 messages sent and not yet acknowledged, in the order they were sent.

use std::collections::VecDeque;

use bytes::BytesMut;
use tokio::time::Instant;

use super::{Outgoing, WriteStats};
use crate::mqtt::{encode, OutgoingPublish, Packet, ProtocolVersion, PubAck};

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

#[derive(Debug)]
struct Entry {
    packet_id: u16,
    item: Outgoing,
    phase: Phase,
}

/// The outbound in-flight window. Packet ids are per session and never reused while in flight;
/// send order is kept so a resend after reconnect repeats the original order (MQTT-4.6.0-1).
#[derive(Debug, Default)]
pub struct Inflight {
    entries: VecDeque<Entry>,
    last_id: u16,
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
        });
    }

    fn position(&self, packet_id: u16, phase: Phase) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.packet_id == packet_id && e.phase == phase)
    }

    /// Ends the flow of `packet_id` if it is in `phase`; false if there is no such flow.
    pub fn complete(&mut self, packet_id: u16, phase: Phase) -> bool {
        match self.position(packet_id, phase) {
            Some(i) => self.entries.remove(i).is_some(),
            None => false,
        }
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

    /// Re-sends everything in flight after a reconnect: PUBLISH with DUP set and the full topic
    /// (aliases do not survive the connection), or PUBREL for flows already past PUBREC.
    pub fn resend_all(
        &self,
        version: ProtocolVersion,
        now: Instant,
        out: &mut BytesMut,
        stats: &mut WriteStats,
    ) {
        for e in &self.entries {
            if e.phase == Phase::AwaitComp {
                let rel = PubAck {
                    packet_id: e.packet_id,
                    ..PubAck::default()
                };
                encode(&Packet::PubRel(rel), version, out);
                continue;
            }
            let m = &e.item.message;
            // Delivery has started: an expiry that ran out since is sent as 1 s, not dropped.
            let expiry = m.remaining_expiry(now).unwrap_or(Some(1));
            OutgoingPublish {
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
            }
            .encode(version, out);
            stats.published += 1;
        }
    }
}
