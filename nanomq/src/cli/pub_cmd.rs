//! `nanomq pub`: connect, publish a message `--repeat` times, wait until the broker has
//! acknowledged every QoS 1/2 publication, disconnect.

use std::collections::HashMap;
use std::io::Read;

use anyhow::{bail, Context};
use bytes::Bytes;

use super::client::Connection;
use super::client_args::PubArgs;
use crate::mqtt::{Packet, PubAck, Publish, QoS, ReasonCode};

/// Publications in flight at once, further capped by the broker's Receive Maximum; the same
/// default as mosquitto's clients.
const MAX_INFLIGHT: u16 = 20;

/// Runs `nanomq pub`. Exits with an error if the connection fails or the broker refuses any
/// publication (a PUBACK or PUBREC reason code of 0x80 or above).
pub(super) fn run(args: PubArgs) -> anyhow::Result<()> {
    let payload = if let Some(message) = &args.message {
        Bytes::from(message.clone())
    } else if args.stdin_message {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read the message from standard input")?;
        Bytes::from(buf)
    } else {
        Bytes::new()
    };
    super::client_runtime()?.block_on(publish(&args, payload))
}

async fn publish(args: &PubArgs, payload: Bytes) -> anyhow::Result<()> {
    let default_id = format!("nanomq-pub-{}", std::process::id());
    let (mut conn, connack) = Connection::open(&args.connect, &default_id).await?;
    let window = connack
        .properties
        .receive_maximum
        .unwrap_or(u16::MAX)
        .min(MAX_INFLIGHT);
    let mut flight = InFlight::new(window);
    let mut sent = 0;
    while sent < args.repeat || !flight.is_empty() {
        while sent < args.repeat && flight.has_room() {
            let publish = Publish {
                qos: args.qos,
                retain: args.retain,
                topic: args.topic.clone(),
                packet_id: flight.start(args.qos),
                payload: payload.clone(),
                ..Publish::default()
            };
            conn.send(&Packet::Publish(publish)).await?;
            sent += 1;
        }
        if !flight.is_empty() {
            let packet = conn.next_packet().await?;
            if let Some(reply) = flight.on_packet(packet)? {
                conn.send(&reply).await?;
            }
        }
    }
    conn.disconnect().await?;
    if let Some(reason) = flight.refused.first() {
        bail!(
            "the broker refused {} of {} publications: {}",
            flight.refused.len(),
            args.repeat,
            reason.describe()
        );
    }
    Ok(())
}

/// Where a QoS 1/2 publication is in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// QoS 1 PUBLISH sent: PUBACK due.
    Qos1Sent,
    /// QoS 2 PUBLISH sent: PUBREC due.
    Qos2Sent,
    /// QoS 2 PUBREL sent: PUBCOMP due.
    Released,
}

/// Outgoing QoS 1/2 publications not yet completed, without I/O: packets in, replies out.
#[derive(Debug, Clone)]
struct InFlight {
    window: usize,
    next_id: u16,
    stages: HashMap<u16, Stage>,
    /// Reason codes of publications the broker refused.
    refused: Vec<ReasonCode>,
}

impl InFlight {
    fn new(window: u16) -> Self {
        InFlight {
            window: window.max(1).into(),
            next_id: 1,
            stages: HashMap::new(),
            refused: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    fn has_room(&self) -> bool {
        self.stages.len() < self.window
    }

    /// Registers a publication about to be sent and returns its packet id (0 for QoS 0, which
    /// is never tracked). Call only when [`InFlight::has_room`].
    fn start(&mut self, qos: QoS) -> u16 {
        let stage = match qos {
            QoS::AtMostOnce => return 0,
            QoS::AtLeastOnce => Stage::Qos1Sent,
            QoS::ExactlyOnce => Stage::Qos2Sent,
        };
        while self.next_id == 0 || self.stages.contains_key(&self.next_id) {
            self.next_id = self.next_id.wrapping_add(1);
        }
        let id = self.next_id;
        self.next_id = id.wrapping_add(1);
        self.stages.insert(id, stage);
        id
    }

    /// Advances the handshake an acknowledgement belongs to; returns the PUBREL to send after a
    /// successful PUBREC. Other packets (a PUBLISH from an old persistent session) are ignored.
    fn on_packet(&mut self, packet: Packet) -> anyhow::Result<Option<Packet>> {
        let (ack, expected) = match packet {
            Packet::PubAck(ack) => (ack, Stage::Qos1Sent),
            Packet::PubRec(ack) => (ack, Stage::Qos2Sent),
            Packet::PubComp(ack) => (ack, Stage::Released),
            _ => return Ok(None),
        };
        let id = ack.packet_id;
        if self.stages.get(&id) != Some(&expected) {
            bail!("broker sent an unexpected acknowledgement for packet id {id}");
        }
        if ack.reason.is_error() {
            self.refused.push(ack.reason);
            self.stages.remove(&id);
            return Ok(None);
        }
        if expected == Stage::Qos2Sent {
            self.stages.insert(id, Stage::Released);
            let release = PubAck {
                packet_id: id,
                ..PubAck::default()
            };
            return Ok(Some(Packet::PubRel(release)));
        }
        self.stages.remove(&id);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(packet_id: u16) -> PubAck {
        PubAck {
            packet_id,
            ..PubAck::default()
        }
    }

    #[test]
    fn qos0_is_not_tracked() {
        let mut f = InFlight::new(1);
        assert_eq!(f.start(QoS::AtMostOnce), 0);
        assert!(f.is_empty() && f.has_room());
    }

    #[test]
    fn qos1_completes_on_puback() {
        let mut f = InFlight::new(2);
        assert_eq!(f.start(QoS::AtLeastOnce), 1);
        assert_eq!(f.start(QoS::AtLeastOnce), 2);
        assert!(!f.has_room());
        assert_eq!(f.on_packet(Packet::PubAck(ack(2))).unwrap(), None);
        assert!(f.has_room());
        assert_eq!(f.start(QoS::AtLeastOnce), 3);
        f.on_packet(Packet::PubAck(ack(1))).unwrap();
        f.on_packet(Packet::PubAck(ack(3))).unwrap();
        assert!(f.is_empty() && f.refused.is_empty());
    }

    #[test]
    fn qos2_sends_pubrel_then_completes_on_pubcomp() {
        let mut f = InFlight::new(20);
        let id = f.start(QoS::ExactlyOnce);
        // PUBCOMP before PUBREC is out of order.
        assert!(f.clone().on_packet(Packet::PubComp(ack(id))).is_err());
        let reply = f.on_packet(Packet::PubRec(ack(id))).unwrap();
        assert_eq!(reply, Some(Packet::PubRel(ack(id))));
        assert!(!f.is_empty());
        assert_eq!(f.on_packet(Packet::PubComp(ack(id))).unwrap(), None);
        assert!(f.is_empty());
    }

    #[test]
    fn refusals_are_recorded_and_end_the_handshake() {
        let mut f = InFlight::new(20);
        let a = f.start(QoS::AtLeastOnce);
        let b = f.start(QoS::ExactlyOnce);
        let refused = |id| PubAck {
            packet_id: id,
            reason: ReasonCode::NOT_AUTHORIZED,
            ..PubAck::default()
        };
        f.on_packet(Packet::PubAck(refused(a))).unwrap();
        assert_eq!(f.on_packet(Packet::PubRec(refused(b))).unwrap(), None);
        assert!(f.is_empty());
        assert_eq!(f.refused, [ReasonCode::NOT_AUTHORIZED; 2]);
        // "No matching subscribers" is success.
        let c = f.start(QoS::AtLeastOnce);
        let no_match = PubAck {
            packet_id: c,
            reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
            ..PubAck::default()
        };
        f.on_packet(Packet::PubAck(no_match)).unwrap();
        assert_eq!(f.refused.len(), 2);
    }

    #[test]
    fn unknown_ids_are_errors_and_other_packets_ignored() {
        let mut f = InFlight::new(20);
        assert!(f.on_packet(Packet::PubAck(ack(7))).is_err());
        assert_eq!(f.on_packet(Packet::PingResp).unwrap(), None);
    }

    #[test]
    fn packet_ids_skip_zero_and_ids_in_use() {
        let mut f = InFlight::new(20);
        f.next_id = u16::MAX;
        assert_eq!(f.start(QoS::AtLeastOnce), u16::MAX);
        assert_eq!(f.start(QoS::AtLeastOnce), 1);
        f.next_id = u16::MAX;
        assert_eq!(f.start(QoS::AtLeastOnce), 2);
    }
}
