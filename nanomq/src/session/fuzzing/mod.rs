//! A [`Session`] driven by arbitrary bytes and checked, after every step, against a model of its
//! client. The `session` fuzz target (`nanomq/fuzz`) and a unit test that replays the committed
//! corpus (`nanomq/fuzz/corpus/session/`) both call [`run`], so the invariants are checked by every
//! `cargo test`, not only under cargo-fuzz. Compiled for tests and with the `fuzzing` feature;
//! not an API.
//!
//! # Input
//!
//! Four header bytes set the broker's [`SessionLimits`]: `max_queued - 1`, the full policy (bit 0:
//! drop-oldest), `max_inflight - 1`, `max_outgoing_alias`. Then operations follow, each an opcode
//! byte (taken modulo 11) and a fixed number of argument bytes; bytes past the end read as zero, so
//! every input is valid. Integers are little-endian.
//!
//! - 0 connect: flags, Receive Maximum, Maximum Packet Size (2), Topic Alias Maximum. Attaches,
//!   taking over a link still attached. Flags: bits 0-1 version (0: 3.1, 1: 3.1.1, else 5),
//!   bit 2 clean start, bit 3 Receive Maximum given (`max(1, byte)`), bit 4 Maximum Packet Size
//!   given (`5 + u16`: a smaller client could not even take a CONNACK). 3.x ignores the rest.
//! - 1 disconnect.
//! - 2 enqueue: flags, topic, payload length (2), expiry, subscription ids, properties. Routes a
//!   message to the session. Flags: bits 0-1 QoS (3 reads as 1), bit 2 retain, bit 3 expiry
//!   given (seconds; 255: u32::MAX), bit 4 a content type and a user property sized by the
//!   properties byte. The low 2 bits of the subscription ids byte are how many.
//! - 3 write: budget. `write_pending` with a budget of 64 × byte (255: unlimited).
//! - 4 advance: tens of milliseconds (2). The clock moves on.
//! - 5 PUBACK, 7 PUBCOMP: pick (3). 6 PUBREC: pick (3), reason code (0x80 and up: failure).
//! - 8 inbound QoS 2 PUBLISH, 9 inbound PUBREL: id. Packet id `1 + byte % 16`.
//! - 10 flush. Writes without a budget, then acknowledges everything received on this link.
//!
//! A pick is a selector byte and a raw packet id: a selector below 0x80 names an id in flight
//! (modulo their number) if there is one, anything else uses the raw id. At the end of the input
//! the client comes back (if away) and flushes until nothing is left: every message must then be
//! delivered or accounted for, so none can be stuck.
//!
//! # Invariants
//!
//! Checked by `client` after every operation; any breach panics.
//! - Every byte written decodes, in the link's version, as PUBLISH or PUBREL packets each within
//!   the client's Maximum Packet Size; nothing is written while detached.
//! - QoS 1/2 PUBLISH packets sent on the link and not acknowledged (PUBACK, PUBCOMP, failed
//!   PUBREC) never exceed the client's Receive Maximum nor the broker's `max_inflight`; the
//!   session never holds more than `max_inflight` in flight nor `max_queued` in its queue.
//! - Packet ids in flight are non-zero and distinct; acknowledgements are accepted exactly for
//!   the flows in the matching phase.
//! - Messages go out in the order queued, each once: a message is published new at most once,
//!   resent (DUP, same packet id, full topic) only after a reconnect and at most once per link,
//!   before any new QoS 1/2 message; a QoS 2 message past PUBREC is never published again,
//!   only released (PUBREL). Everything queued ends delivered, expired, too large, or dropped
//!   by the queue policy, and `WriteStats` counts exactly those.
//! - Topic aliases are within the client's Topic Alias Maximum and the broker's cap, only in
//!   MQTT 5, and resolve to the message's topic; expiry intervals count down and expired
//!   messages are not sent new; payload, QoS, retain, subscription ids and properties arrive
//!   unchanged; a message is discarded as too large only if no form of it fits.
//! - `has_pending` is true exactly when `write_pending` would do something.

mod client;

use std::time::Duration;

use super::{FullPolicy, SessionLimits};
use crate::mqtt::{ProtocolVersion, QoS, ReasonCode};

/// Runs the operations that `data` encodes against a new session; panics on the first broken
/// invariant.
pub fn run(data: &[u8]) {
    let mut input = Input(data);
    let limits = SessionLimits {
        max_queued: u32::from(input.u8()) + 1,
        full_policy: if input.u8() & 1 == 0 {
            FullPolicy::DropNew
        } else {
            FullPolicy::DropOldest
        },
        max_inflight: u16::from(input.u8()) + 1,
        max_outgoing_alias: u16::from(input.u8()),
    };
    let mut client = client::Client::new(limits);
    while !input.0.is_empty() {
        client.apply(Op::read(&mut input));
        client.check();
    }
    client.drain();
}

/// The unread input; reads past its end give zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
}

/// One step of the client or of the broker around the session.
#[derive(Debug)]
enum Op {
    Connect(Connect),
    Disconnect,
    Enqueue(MessageSpec),
    Write { budget: usize },
    Advance(Duration),
    PubAck(Pick),
    PubRec(Pick, ReasonCode),
    PubComp(Pick),
    InboundQos2(u16),
    InboundPubRel(u16),
    Flush,
}

/// A CONNECT as far as the session sees it: what `broker::connect` negotiates from it.
#[derive(Debug, Clone, Copy)]
struct Connect {
    version: ProtocolVersion,
    clean_start: bool,
    receive_maximum: Option<u16>,
    max_packet_size: Option<u32>,
    topic_alias_maximum: u16,
}

/// A message to route to the session.
#[derive(Debug, Clone, Copy)]
struct MessageSpec {
    qos: QoS,
    retain: bool,
    topic: u8,
    payload_len: u16,
    expiry_secs: Option<u32>,
    subscription_ids: u8,
    properties: Option<u8>,
}

/// Which packet id an acknowledgement carries: one in flight, or any.
#[derive(Debug, Clone, Copy)]
struct Pick {
    selector: u8,
    raw: u16,
}

impl Op {
    fn read(input: &mut Input<'_>) -> Op {
        match input.u8() % 11 {
            0 => {
                let flags = input.u8();
                let receive_maximum = input.u8();
                let max_packet_size = input.u16();
                let topic_alias_maximum = input.u8();
                Op::Connect(Connect {
                    version: match flags & 3 {
                        0 => ProtocolVersion::V31,
                        1 => ProtocolVersion::V311,
                        _ => ProtocolVersion::V5,
                    },
                    clean_start: flags & 0x04 != 0,
                    receive_maximum: (flags & 0x08 != 0).then(|| u16::from(receive_maximum.max(1))),
                    max_packet_size: (flags & 0x10 != 0).then(|| 5 + u32::from(max_packet_size)),
                    topic_alias_maximum: u16::from(topic_alias_maximum),
                })
            }
            1 => Op::Disconnect,
            2 => {
                let flags = input.u8();
                let topic = input.u8();
                let payload_len = input.u16();
                let expiry = input.u8();
                let subscription_ids = input.u8();
                let properties = input.u8();
                Op::Enqueue(MessageSpec {
                    qos: match flags & 3 {
                        0 => QoS::AtMostOnce,
                        2 => QoS::ExactlyOnce,
                        _ => QoS::AtLeastOnce,
                    },
                    retain: flags & 0x04 != 0,
                    topic,
                    payload_len,
                    expiry_secs: (flags & 0x08 != 0).then_some(match expiry {
                        255 => u32::MAX,
                        s => u32::from(s),
                    }),
                    subscription_ids,
                    properties: (flags & 0x10 != 0).then_some(properties),
                })
            }
            3 => Op::Write {
                budget: match input.u8() {
                    255 => usize::MAX,
                    b => usize::from(b) * 64,
                },
            },
            4 => Op::Advance(Duration::from_millis(u64::from(input.u16()) * 10)),
            5 => Op::PubAck(Pick::read(input)),
            6 => Op::PubRec(Pick::read(input), ReasonCode(input.u8())),
            7 => Op::PubComp(Pick::read(input)),
            8 => Op::InboundQos2(1 + u16::from(input.u8() % 16)),
            9 => Op::InboundPubRel(1 + u16::from(input.u8() % 16)),
            _ => Op::Flush,
        }
    }
}

impl Pick {
    fn read(input: &mut Input<'_>) -> Pick {
        Pick {
            selector: input.u8(),
            raw: input.u16(),
        }
    }

    /// The packet id, given the ids in flight in send order.
    fn packet_id(self, in_flight: &[u16]) -> u16 {
        if self.selector < 0x80 && !in_flight.is_empty() {
            in_flight[usize::from(self.selector) % in_flight.len()]
        } else {
            self.raw
        }
    }
}
