//! The check of everything `write_pending` writes: packet by packet against the model, then
//! what it dropped and what it counted.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::time::Instant;

use super::{serial_of, Client, Flight, Link, OnLink, Queued};
use crate::mqtt::{decode, OutgoingPublish, Packet, PubAck, Publish, QoS, ReasonCode};
use crate::session::{ConnectionParams, Message, Outgoing, Phase, WriteStats};

impl Client {
    /// `write_pending` with `budget`, and everything it wrote checked packet by packet.
    pub(super) fn write(&mut self, budget: usize) {
        let pending = self.session.has_pending();
        let mut out = BytesMut::new();
        let stats = self.session.write_pending(self.now, &mut out, budget);
        let moved = !out.is_empty() || stats != WriteStats::default();
        assert!(pending || !moved, "not pending, yet wrote: {stats:?}");
        assert!(
            !pending || budget == 0 || moved,
            "pending, yet nothing moved"
        );
        let Some(params) = self.link.as_ref().map(|l| l.params) else {
            assert!(!moved, "a detached session wrote");
            return;
        };
        let mut packets = decode_all(out, params).into_iter().peekable();
        let (mut published, mut expired, mut too_large) = (0, 0, 0);
        let window = self.window();

        // Resends come first, in send order; one waits while the window is full, which holds
        // back everything after it.
        let mut i = 0;
        while i < self.in_flight.len() {
            let f = &self.in_flight[i];
            if f.on_link != OnLink::Due {
                i += 1;
                continue;
            }
            let id = f.packet_id;
            if f.phase == Phase::AwaitComp {
                match packets.next() {
                    Some((
                        _,
                        Packet::PubRel(PubAck {
                            packet_id, reason, ..
                        }),
                    )) if packet_id == id && reason == ReasonCode::SUCCESS => {}
                    other => panic!("PUBREL {id} is due; written instead: {other:?}"),
                }
                self.in_flight[i].on_link = OnLink::Released;
                i += 1;
                continue;
            }
            let resent = match packets.peek() {
                Some((_, Packet::Publish(p))) => p.dup && p.packet_id == id,
                _ => false,
            };
            if resent {
                let Some((_, Packet::Publish(p))) = packets.next() else {
                    unreachable!()
                };
                let item = f.item.clone();
                self.check_publish(&p, &item, true);
                self.in_flight[i].on_link = OnLink::Published;
                published += 1;
                assert!(
                    self.published_on_link() <= window,
                    "resending {id} exceeds the window of {window}"
                );
                i += 1;
            } else if self.published_on_link() >= window {
                break;
            } else if self.resend_len(f) > params.max_packet_size as usize {
                self.in_flight.remove(i);
                too_large += 1;
            } else {
                let next = packets.peek().map(|p| &p.1);
                panic!("{id} was due for resend with room in the window; written: {next:?}");
            }
        }

        // Then new messages, oldest first; those skipped must have expired or be too large.
        for (offset, packet) in packets {
            let Packet::Publish(p) = packet else {
                panic!("only resends are PUBREL; written: {packet:?}");
            };
            assert!(
                !p.dup,
                "DUP on a new message, or a resend out of order: {p:?}"
            );
            assert!(
                offset < budget,
                "PUBLISH at byte {offset}, over the budget {budget}"
            );
            // MQTT-4.6.0-6 orders messages of the same QoS only: QoS 0 may pass a waiting resend.
            let due = self.in_flight.iter().any(|f| f.on_link == OnLink::Due);
            assert!(
                !due || p.qos == QoS::AtMostOnce,
                "a new message overtook a resend"
            );
            let serial = serial_of(&p.payload);
            let Some(at) = self.queue.iter().position(|q| q.serial == serial) else {
                panic!("message {serial} published new but not queued: sent twice?");
            };
            for skipped in self.queue.drain(..at).collect::<Vec<_>>() {
                match self.justify_drop(&skipped) {
                    Dropped::Expired => expired += 1,
                    Dropped::TooLarge => too_large += 1,
                }
            }
            let q = self.queue.pop_front().expect("found above");
            self.check_publish(&p, &q.item, false);
            published += 1;
            if q.item.qos == QoS::AtMostOnce {
                continue;
            }
            let id = p.packet_id;
            assert_ne!(id, 0, "QoS {:?} with packet id 0", q.item.qos);
            let in_use = self.in_flight.iter().any(|f| f.packet_id == id);
            assert!(!in_use, "packet id {id} reused while in flight");
            self.in_flight.push(Flight {
                packet_id: id,
                phase: match q.item.qos {
                    QoS::ExactlyOnce => Phase::AwaitRec,
                    _ => Phase::AwaitAck,
                },
                item: q.item,
                on_link: OnLink::Published,
            });
            assert!(
                self.published_on_link() <= window,
                "over the window of {window}"
            );
        }
        // Messages dropped after the last one written.
        let left = self.session.queued();
        assert!(left <= self.queue.len(), "the queue grew while writing");
        for skipped in self
            .queue
            .drain(..self.queue.len() - left)
            .collect::<Vec<_>>()
        {
            match self.justify_drop(&skipped) {
                Dropped::Expired => expired += 1,
                Dropped::TooLarge => too_large += 1,
            }
        }

        let counted = (stats.published, stats.expired, stats.too_large);
        assert_eq!(counted, (published, expired, too_large), "WriteStats");
        assert_eq!(self.session.outbound_in_flight(), self.in_flight.len());
        if budget == usize::MAX {
            self.check_all_written();
        }
    }

    /// After a write without budget only the client's window holds anything back.
    fn check_all_written(&self) {
        assert!(
            !self.session.has_pending(),
            "still pending after an unbounded write"
        );
        let window = self.window();
        if let Some(f) = self.in_flight.iter().find(|f| f.on_link == OnLink::Due) {
            assert_ne!(
                f.phase,
                Phase::AwaitComp,
                "PUBREL {} not resent",
                f.packet_id
            );
            assert!(
                self.published_on_link() >= window,
                "resend held back with room"
            );
        }
        if let Some(q) = self.queue.front() {
            assert_ne!(
                q.item.qos,
                QoS::AtMostOnce,
                "QoS 0 message {} held back",
                q.serial
            );
            assert!(
                self.in_flight.len() >= window,
                "message {} held back",
                q.serial
            );
        }
    }

    /// Why the session may have dropped a message it did not write: it expired, or no form of
    /// it (full topic without alias, or the alias the client already knows) fits.
    fn justify_drop(&self, q: &Queued) -> Dropped {
        if expiry_left(&q.item.message, self.now).is_err() {
            return Dropped::Expired;
        }
        let link = self.link.as_ref().expect("online");
        let m = &q.item.message;
        let known = link.aliases.iter().find(|(_, t)| **t == m.topic);
        let plain = publish_len(&q.item, link, &m.topic, None, self.now);
        let aliased = known.map(|(&a, _)| publish_len(&q.item, link, "", Some(a), self.now));
        let smallest = aliased.map_or(plain, |a| a.min(plain));
        let max = link.params.max_packet_size as usize;
        assert!(
            smallest > max,
            "message {} dropped, yet {smallest} bytes fit the client's {max}",
            q.serial
        );
        Dropped::TooLarge
    }

    /// A PUBLISH written for `item`: a resend of it, or its first delivery.
    fn check_publish(&mut self, p: &Publish, item: &Outgoing, resend: bool) {
        let link = self.link.as_mut().expect("online");
        let m = &item.message;
        let serial = serial_of(&m.payload);
        assert_eq!(
            (p.qos, p.retain, p.dup),
            (item.qos, item.retain, resend),
            "{serial}"
        );
        assert!(p.payload == m.payload, "payload of {serial}");
        let topic = match p.properties.topic_alias {
            None => Arc::from(p.topic.as_str()),
            Some(a) => {
                let limit = link.alias_limit;
                assert!((1..=limit).contains(&a), "alias {a} over the limit {limit}");
                if p.topic.is_empty() {
                    let known = link.aliases.get(&a);
                    known.unwrap_or_else(|| panic!("alias {a} unknown")).clone()
                } else {
                    let topic: Arc<str> = Arc::from(p.topic.as_str());
                    link.aliases.insert(a, topic.clone());
                    topic
                }
            }
        };
        assert_eq!(topic, m.topic, "topic of {serial}");
        if !link.params.version.is_v5() {
            return;
        }
        let expiry = match expiry_left(m, self.now) {
            Ok(left) => left,
            Err(()) if resend => Some(1),
            Err(()) => panic!("message {serial} sent after it expired"),
        };
        let props = &p.properties;
        assert_eq!(props.message_expiry_interval, expiry, "expiry of {serial}");
        assert_eq!(
            props.subscription_identifiers,
            item.subscription_identifiers
        );
        assert_eq!(props.content_type, m.properties.content_type);
        assert_eq!(props.user_properties, m.properties.user_properties);
    }

    /// Bytes of the resend of `f`: DUP, full topic, no alias.
    fn resend_len(&self, f: &Flight) -> usize {
        let link = self.link.as_ref().expect("online");
        let m = &f.item.message;
        let expiry = expiry_left(m, self.now).unwrap_or(Some(1));
        outgoing(&f.item, &m.topic, None, expiry).encoded_len(link.params.version)
    }
}

enum Dropped {
    Expired,
    TooLarge,
}

/// Every packet in `out` with its offset; each must decode whole within the client's maximum.
fn decode_all(mut out: BytesMut, params: ConnectionParams) -> Vec<(usize, Packet)> {
    let (version, max) = (params.version, params.max_packet_size);
    let total = out.len();
    let mut packets = Vec::new();
    while !out.is_empty() {
        let offset = total - out.len();
        match decode(&mut out, version, max) {
            Ok(Some(p)) => packets.push((offset, p)),
            Ok(None) => panic!("{} bytes at {offset} are not a whole packet", out.len()),
            Err(e) => panic!("packet at byte {offset} ({version:?}, maximum {max}): {e}"),
        }
    }
    packets
}

/// The Message Expiry Interval to send now, rounded up; `Err` once it has run out.
fn expiry_left(m: &Message, now: Instant) -> Result<Option<u32>, ()> {
    let Some(at) = m.expires_at else {
        return Ok(None);
    };
    if at <= now {
        return Err(());
    }
    let left = (at - now).as_nanos().div_ceil(1_000_000_000);
    Ok(Some(u32::try_from(left).unwrap_or(u32::MAX)))
}

fn publish_len(
    item: &Outgoing,
    link: &Link,
    topic: &str,
    alias: Option<u16>,
    now: Instant,
) -> usize {
    let expiry = expiry_left(&item.message, now).unwrap_or(None);
    outgoing(item, topic, alias, expiry).encoded_len(link.params.version)
}

/// `item` as a PUBLISH, for its size: the packet id's value does not change it.
fn outgoing<'a>(
    item: &'a Outgoing,
    topic: &'a str,
    alias: Option<u16>,
    expiry: Option<u32>,
) -> OutgoingPublish<'a> {
    let m = &item.message;
    OutgoingPublish {
        dup: false,
        qos: item.qos,
        retain: item.retain,
        topic,
        packet_id: u16::from(item.qos != QoS::AtMostOnce),
        topic_alias: alias,
        message_expiry_interval: expiry,
        subscription_identifiers: &item.subscription_identifiers,
        properties: &m.properties,
        payload: &m.payload,
    }
}
