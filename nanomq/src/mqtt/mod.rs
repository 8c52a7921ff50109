//! MQTT 3.1, 3.1.1 and 5.0 wire codec.
//!
//! Pure and allocation-aware: [`decode`] checks that a whole frame is buffered and that its
//! remaining length fits the maximum packet size *before* it allocates anything, then parses the
//! packet out of a frozen [`Bytes`] so a PUBLISH payload is a zero-copy slice of the read buffer.
//! Every malformed input becomes a [`DecodeError`] that maps to an MQTT 5 reason code; nothing here
//! panics on input from the network. Used by the broker (server side) and by the CLI and bridges
//! (client side): every packet decodes and encodes in both directions.
//!
//! One file per packet type; `properties` holds every MQTT 5 property, `reason` every reason code.

mod auth;
mod connack;
mod connect;
mod disconnect;
mod error;
mod frame;
mod primitives;
mod properties;
mod pub_ack;
mod publish;
mod reason;
mod suback;
mod subscribe;
mod unsuback;
mod unsubscribe;

pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub use disconnect::Disconnect;
pub use error::DecodeError;
pub use frame::{decode, encode, frame_size, FrameSize};
pub use properties::Properties;
pub use pub_ack::PubAck;
pub use publish::{OutgoingPublish, Publish};
pub use reason::ReasonCode;
pub use suback::SubAck;
pub use subscribe::{RetainHandling, Subscribe, SubscriptionOptions};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

/// The protocol level byte of CONNECT; it decides the wire format of every later packet.
/// Defaults to 3.1.1, the version most clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name "MQIsdp", level 3.
    V31 = 3,
    /// MQTT 3.1.1, protocol name "MQTT", level 4.
    #[default]
    V311 = 4,
    /// MQTT 5.0, protocol name "MQTT", level 5.
    V5 = 5,
}

impl ProtocolVersion {
    /// True for MQTT 5, the only version with properties and reason codes on every ack.
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

/// Quality of service of a PUBLISH or the maximum granted to a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    /// Fire and forget.
    #[default]
    AtMostOnce = 0,
    /// Acknowledged with PUBACK; may be duplicated.
    AtLeastOnce = 1,
    /// Four-way handshake; delivered exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// Parses the two QoS bits; 3 is not a QoS and is a malformed packet.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// Every MQTT control packet. PUBACK, PUBREC, PUBREL and PUBCOMP share one body shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// Client asks to open a session (type 1).
    Connect(Box<Connect>),
    /// Server answers CONNECT (type 2).
    ConnAck(ConnAck),
    /// Application message (type 3).
    Publish(Publish),
    /// QoS 1 acknowledgement (type 4).
    PubAck(PubAck),
    /// QoS 2 step 1 acknowledgement (type 5).
    PubRec(PubAck),
    /// QoS 2 release (type 6).
    PubRel(PubAck),
    /// QoS 2 completion (type 7).
    PubComp(PubAck),
    /// Subscription request (type 8).
    Subscribe(Subscribe),
    /// Subscription result per filter (type 9).
    SubAck(SubAck),
    /// Unsubscription request (type 10).
    Unsubscribe(Unsubscribe),
    /// Unsubscription result (type 11).
    UnsubAck(UnsubAck),
    /// Keepalive probe (type 12).
    PingReq,
    /// Keepalive answer (type 13).
    PingResp,
    /// Orderly close, with a reason in v5 (type 14).
    Disconnect(Disconnect),
    /// Enhanced authentication exchange, v5 only (type 15).
    Auth(Auth),
}

impl Packet {
    /// Control packet type name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

#[cfg(test)]
mod tests;
