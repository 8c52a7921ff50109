//! The fuzzed session's counterpart: a model of the client and of what the session owes it,
//! compared with every packet the session writes and every answer it gives.

mod written;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{Connect, MessageSpec, Op, Pick};
use crate::config::MAX_PACKET_SIZE;
use crate::mqtt::{Properties, ProtocolVersion, QoS, ReasonCode};
use crate::session::{
    ConnectionParams, FullPolicy, Message, Outgoing, Phase, Session, SessionLimits,
};

/// The client, the session under test, and the clock.
pub(super) struct Client {
    limits: SessionLimits,
    session: Session,
    now: Instant,
    next_serial: u32,
    /// What the session should hold in its queue, oldest first.
    queue: VecDeque<Queued>,
    /// What the session should hold in flight, in send order.
    in_flight: Vec<Flight>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    inbound: BTreeSet<u16>,
    link: Option<Link>,
}

/// A queued message; its payload starts with `serial`, which names it in what is written.
struct Queued {
    serial: u32,
    item: Outgoing,
}

struct Flight {
    packet_id: u16,
    item: Outgoing,
    phase: Phase,
    on_link: OnLink,
}

/// What the current link has seen of a message in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnLink {
    /// Sent on an earlier link: the session owes a resend on this one.
    Due,
    /// PUBLISH sent on this link: it counts against the client's Receive Maximum until acked.
    Published,
    /// PUBREL resent on this link for a PUBLISH of an earlier one, which no longer counts.
    Released,
}

/// The attached connection, as the client sees it.
struct Link {
    params: ConnectionParams,
    /// Largest outgoing alias allowed: the client's maximum capped by the broker's.
    alias_limit: u16,
    /// Topic Aliases the session has established on this link.
    aliases: BTreeMap<u16, Arc<str>>,
}

impl Client {
    pub(super) fn new(limits: SessionLimits) -> Self {
        Client {
            limits,
            session: Session::new(limits),
            now: Instant::now(),
            next_serial: 0,
            queue: VecDeque::new(),
            in_flight: Vec::new(),
            inbound: BTreeSet::new(),
            link: None,
        }
    }

    pub(super) fn apply(&mut self, op: Op) {
        let online = self.link.is_some();
        match op {
            Op::Connect(c) => self.connect(c),
            Op::Disconnect if online => self.disconnect(),
            Op::Enqueue(spec) => self.enqueue(spec),
            Op::Write { budget } => self.write(budget),
            Op::Advance(d) => self.now += d,
            // The rest arrives from a client, so only over a link.
            Op::PubAck(pick) if online => self.puback(self.pick(pick)),
            Op::PubRec(pick, reason) if online => self.pubrec(self.pick(pick), reason),
            Op::PubComp(pick) if online => self.pubcomp(self.pick(pick)),
            Op::InboundQos2(id) if online => {
                assert_eq!(
                    self.session.has_inbound_qos2(id),
                    self.inbound.contains(&id)
                );
                let new = self.inbound.insert(id);
                assert_eq!(
                    self.session.on_inbound_qos2(id),
                    new,
                    "inbound QoS 2 id {id}"
                );
            }
            Op::InboundPubRel(id) if online => {
                let known = self.inbound.remove(&id);
                assert_eq!(self.session.on_pubrel(id), known, "inbound PUBREL {id}");
            }
            Op::Flush if online => self.flush(),
            _ => {}
        }
    }

    /// What must hold between any two operations.
    pub(super) fn check(&self) {
        let s = &self.session;
        assert_eq!(s.is_online(), self.link.is_some());
        assert_eq!(s.queued(), self.queue.len(), "messages queued");
        assert!(
            s.queued() <= self.limits.max_queued as usize,
            "queue over max_queued"
        );
        assert_eq!(
            s.outbound_in_flight(),
            self.in_flight.len(),
            "messages in flight"
        );
        assert!(s.outbound_in_flight() <= usize::from(self.limits.max_inflight));
        assert_eq!(s.inbound_in_flight(), self.inbound.len());
        let Some(link) = &self.link else { return };
        assert!(
            self.published_on_link() <= self.window(),
            "over the Receive Maximum"
        );
        // The session's own alias table is the one the client was told about.
        let a = s.attached.as_ref().expect("online");
        assert_eq!(a.alias_limit, link.alias_limit, "alias limit");
        let table = a.aliases.as_deref().cloned().unwrap_or_default();
        assert_eq!(table.len(), link.aliases.len(), "aliases {table:?}");
        for (topic, alias) in table {
            assert!((1..=link.alias_limit).contains(&alias), "alias {alias}");
            assert_eq!(link.aliases.get(&alias), Some(&topic), "alias {alias}");
        }
    }

    /// Comes back if away and lets everything out: nothing may stay stuck.
    pub(super) fn drain(&mut self) {
        if self.link.is_none() {
            self.connect(Connect {
                version: ProtocolVersion::V5,
                clean_start: false,
                receive_maximum: None,
                max_packet_size: None,
                topic_alias_maximum: 0,
            });
        }
        // Each round delivers at least one message (the window is at least 1) or ends.
        for _ in 0..self.queue.len() + self.in_flight.len() + 2 {
            if self.queue.is_empty() && self.in_flight.is_empty() {
                break;
            }
            self.flush();
            self.check();
        }
        assert!(
            self.queue.is_empty() && self.in_flight.is_empty(),
            "stuck: {} queued, {} in flight",
            self.queue.len(),
            self.in_flight.len()
        );
    }

    /// CONNECT, negotiated the way `broker::connect` does; a link still attached is taken over.
    fn connect(&mut self, c: Connect) {
        if self.link.is_some() {
            self.disconnect();
        }
        if c.clean_start {
            self.session = Session::new(self.limits);
            self.queue.clear();
            self.in_flight.clear();
            self.inbound.clear();
        }
        // MQTT 3.x has no properties: no Receive Maximum, Maximum Packet Size or aliases.
        let v5 = c.version.is_v5();
        let params = ConnectionParams {
            version: c.version,
            receive_maximum: c.receive_maximum.filter(|_| v5).unwrap_or(u16::MAX),
            max_packet_size: c
                .max_packet_size
                .filter(|_| v5)
                .unwrap_or(u32::MAX)
                .min(MAX_PACKET_SIZE),
            topic_alias_maximum: if v5 { c.topic_alias_maximum } else { 0 },
        };
        self.session.attach(params);
        for f in &mut self.in_flight {
            f.on_link = OnLink::Due;
        }
        self.link = Some(Link {
            params,
            alias_limit: params
                .topic_alias_maximum
                .min(self.limits.max_outgoing_alias),
            aliases: BTreeMap::new(),
        });
    }

    fn disconnect(&mut self) {
        let qos0 = self.queue.iter().filter(|q| q.item.qos == QoS::AtMostOnce);
        let expected = qos0.count();
        assert_eq!(self.session.detach(), expected, "QoS 0 dropped at detach");
        self.queue.retain(|q| q.item.qos != QoS::AtMostOnce);
        self.link = None;
    }

    fn enqueue(&mut self, spec: MessageSpec) {
        let serial = self.next_serial;
        self.next_serial += 1;
        let item = self.message(serial, spec);
        let dropped = self.session.enqueue(item.clone());
        let expected = self.queue_policy(Queued { serial, item });
        let dropped = dropped.map(|d| serial_of(&d.message.payload));
        assert_eq!(dropped, expected, "message dropped when queueing {serial}");
    }

    /// Queues `new` as the documented policy says; returns the serial it drops.
    fn queue_policy(&mut self, new: Queued) -> Option<u32> {
        if self.link.is_none() && new.item.qos == QoS::AtMostOnce {
            return None; // not taken
        }
        if self.queue.len() < self.limits.max_queued as usize {
            self.queue.push_back(new);
            return None;
        }
        if new.item.qos == QoS::AtMostOnce {
            return Some(new.serial);
        }
        let qos0 = self
            .queue
            .iter()
            .position(|q| q.item.qos == QoS::AtMostOnce);
        let victim = match (qos0, self.limits.full_policy) {
            (Some(i), _) => self.queue.remove(i),
            (None, FullPolicy::DropOldest) => self.queue.pop_front(),
            (None, FullPolicy::DropNew) => return Some(new.serial),
        };
        self.queue.push_back(new);
        victim.map(|v| v.serial)
    }

    fn message(&self, serial: u32, spec: MessageSpec) -> Outgoing {
        let mut payload = vec![0u8; 4 + usize::from(spec.payload_len)];
        payload[..4].copy_from_slice(&serial.to_le_bytes());
        let mut properties = Properties::default();
        if let Some(n) = spec.properties {
            properties.content_type = Some("c".repeat(n.into()));
            let value = "v".repeat(usize::from(n / 2));
            properties.user_properties.push(("k".to_owned(), value));
        }
        let ids = spec.subscription_ids;
        Outgoing {
            message: Arc::new(Message {
                topic: Arc::from(topic_name(spec.topic)),
                payload: Bytes::from(payload),
                qos: spec.qos,
                retain: spec.retain,
                properties,
                expires_at: spec
                    .expiry_secs
                    .map(|s| self.now + Duration::from_secs(s.into())),
                store_id: Default::default(),
            }),
            qos: spec.qos,
            retain: spec.retain,
            subscription_identifiers: (0..u32::from(ids & 3))
                .map(|i| 1 + (u32::from(ids) << 20) + i)
                .collect(),
            stored: false,
        }
    }

    fn flush(&mut self) {
        self.write(usize::MAX);
        // A client acknowledges what it received on this link.
        let acks: Vec<(u16, Phase)> = self
            .in_flight
            .iter()
            .filter(|f| f.on_link != OnLink::Due)
            .map(|f| (f.packet_id, f.phase))
            .collect();
        for (id, phase) in acks {
            match phase {
                Phase::AwaitAck => self.puback(id),
                Phase::AwaitRec => {
                    self.pubrec(id, ReasonCode::SUCCESS);
                    self.pubcomp(id);
                }
                Phase::AwaitComp => self.pubcomp(id),
            }
        }
    }

    fn puback(&mut self, id: u16) {
        let at = self.position(id, Phase::AwaitAck);
        assert_eq!(self.session.on_puback(id), at.is_some(), "PUBACK {id}");
        if let Some(i) = at {
            self.in_flight.remove(i);
        }
    }

    fn pubrec(&mut self, id: u16, reason: ReasonCode) {
        if reason.is_error() {
            let at = self.position(id, Phase::AwaitRec);
            assert!(
                !self.session.on_pubrec(id, true),
                "PUBREL after a failed PUBREC"
            );
            if let Some(i) = at {
                self.in_flight.remove(i);
            }
            return;
        }
        let release = match self.position(id, Phase::AwaitRec) {
            Some(i) => {
                self.in_flight[i].phase = Phase::AwaitComp;
                true
            }
            None => self.position(id, Phase::AwaitComp).is_some(),
        };
        assert_eq!(self.session.on_pubrec(id, false), release, "PUBREC {id}");
    }

    fn pubcomp(&mut self, id: u16) {
        let at = self.position(id, Phase::AwaitComp);
        assert_eq!(self.session.on_pubcomp(id), at.is_some(), "PUBCOMP {id}");
        if let Some(i) = at {
            self.in_flight.remove(i);
        }
    }

    fn position(&self, id: u16, phase: Phase) -> Option<usize> {
        let i = self.in_flight.iter().position(|f| f.packet_id == id)?;
        (self.in_flight[i].phase == phase).then_some(i)
    }

    fn pick(&self, pick: Pick) -> u16 {
        let ids: Vec<u16> = self.in_flight.iter().map(|f| f.packet_id).collect();
        pick.packet_id(&ids)
    }

    /// The client's Receive Maximum capped by the broker's `max_inflight`.
    fn window(&self) -> usize {
        let link = self.link.as_ref().expect("online");
        usize::from(link.params.receive_maximum.min(self.limits.max_inflight))
    }

    /// QoS 1/2 PUBLISH packets sent on this link and not yet acknowledged.
    fn published_on_link(&self) -> usize {
        let on_link = self
            .in_flight
            .iter()
            .filter(|f| f.on_link == OnLink::Published);
        on_link.count()
    }
}

/// The serial a payload starts with.
fn serial_of(payload: &[u8]) -> u32 {
    let head = payload.get(..4).expect("payloads start with a serial");
    u32::from_le_bytes(head.try_into().expect("4 bytes"))
}

/// Topics of several shapes: short ones that reuse aliases, one-letter ones that an alias
/// makes longer, long ones, and enough distinct ones to run out of aliases.
fn topic_name(t: u8) -> String {
    match t >> 6 {
        0 => format!("t/{}", t & 0x0f),
        1 => char::from(b'a' + (t & 0x0f)).to_string(),
        2 => format!("long/{}/{}", "x".repeat(usize::from(t & 0x3c) * 4), t & 3),
        _ => format!("u/{}", t & 0x3f),
    }
}
