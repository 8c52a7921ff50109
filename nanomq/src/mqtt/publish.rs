//! PUBLISH (spec 3.3). Decoding slices the payload out of the read buffer without copying;
//! [`OutgoingPublish`] encodes one shared message for one subscriber, whose only per-subscriber
//! parts are the fixed-header flags, packet id, topic alias, expiry and subscription ids.

use bytes::{Bytes, BytesMut};

use super::primitives::{check_topic_name, packet_id, string_len, varint_len, Reader, Sink};
use super::properties::{Context, PropertyView};
use super::{DecodeError, Properties, ProtocolVersion, QoS};

/// An application message as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Publish {
    /// Redelivery of an earlier attempt.
    pub dup: bool,
    /// Delivery guarantee.
    pub qos: QoS,
    /// Keep as the topic's retained message.
    pub retain: bool,
    /// Topic name; may be empty in v5 when a Topic Alias property names the topic.
    pub topic: String,
    /// Non-zero for QoS 1 and 2, zero for QoS 0.
    pub packet_id: u16,
    /// v5 PUBLISH properties.
    pub properties: Properties,
    /// Application payload, shared not copied.
    pub payload: Bytes,
}

/// A borrowed view that encodes a shared message for one subscriber without cloning it.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingPublish<'a> {
    /// Redelivery flag.
    pub dup: bool,
    /// Delivery QoS (after downgrade to the subscription's maximum).
    pub qos: QoS,
    /// Retain flag as delivered.
    pub retain: bool,
    /// Topic name, or "" when only `topic_alias` is sent.
    pub topic: &'a str,
    /// Zero for QoS 0.
    pub packet_id: u16,
    /// Topic Alias property for this subscriber.
    pub topic_alias: Option<u16>,
    /// Remaining Message Expiry Interval for this subscriber.
    pub message_expiry_interval: Option<u32>,
    /// Subscription Identifiers of every matching subscription.
    pub subscription_identifiers: &'a [u32],
    /// Properties passed through unchanged; its topic alias, message expiry and subscription
    /// identifier fields are ignored in favour of the fields above.
    pub properties: &'a Properties,
    /// Application payload.
    pub payload: &'a Bytes,
}

impl Publish {
    /// This message exactly as it is, as the view every PUBLISH is encoded through. The broker
    /// starts from here and overrides the per-subscriber fields.
    pub fn as_outgoing(&self) -> OutgoingPublish<'_> {
        OutgoingPublish {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            packet_id: self.packet_id,
            topic_alias: self.properties.topic_alias,
            message_expiry_interval: self.properties.message_expiry_interval,
            subscription_identifiers: &self.properties.subscription_identifiers,
            properties: &self.properties,
            payload: &self.payload,
        }
    }

    /// Parses a PUBLISH whose fixed-header flags are `flags`; the payload shares `r`'s buffer.
    pub(crate) fn decode(
        flags: u8,
        mut r: Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let qos =
            QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::Malformed("PUBLISH QoS 3"))?;
        let dup = flags & 0x08 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH"));
        }
        let topic = r.string()?;
        check_topic_name(&topic)?;
        if topic.is_empty() && !version.is_v5() {
            return Err(DecodeError::TopicNameInvalid);
        }
        let packet_id = match qos {
            QoS::AtMostOnce => 0,
            _ => packet_id(&mut r)?,
        };
        let properties = if version.is_v5() {
            Properties::decode(&mut r, Context::Publish)?
        } else {
            Properties::default()
        };
        if topic.is_empty() && properties.topic_alias.is_none() {
            return Err(DecodeError::Protocol(
                "empty topic name without a topic alias",
            ));
        }
        Ok(Publish {
            dup,
            qos,
            retain: flags & 0x01 != 0,
            topic,
            packet_id,
            properties,
            payload: r.rest(),
        })
    }
}

impl OutgoingPublish<'_> {
    /// Appends the packet to `out`. Nothing is allocated except growth of `out`, which is
    /// reserved once for the whole packet; the payload is copied in exactly once. DUP is left
    /// clear at QoS 0, where the spec forbids it (3.3.1.1), so a downgraded redelivery is valid.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) {
        self.write(version, out);
    }

    /// Total bytes [`Self::encode`] writes, computed without encoding: what the subscriber's
    /// Maximum Packet Size is compared with.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let props_len = self.properties_len(version);
        let body = self.body_len(version, props_len);
        1 + varint_len(body) + body
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        let props_len = self.properties_len(version);
        let body = self.body_len(version, props_len);
        s.reserve(1 + varint_len(body) + body);
        let dup = self.dup && self.qos != QoS::AtMostOnce;
        let flags = u8::from(dup) << 3 | (self.qos as u8) << 1 | u8::from(self.retain);
        s.put_u8(0x30 | flags);
        s.put_varint(body);
        s.put_string(self.topic);
        if self.qos != QoS::AtMostOnce {
            s.put_u16(self.packet_id);
        }
        if version.is_v5() {
            s.put_varint(props_len);
            self.view().write_list(s);
        }
        s.put_slice(self.payload);
    }

    fn view(&self) -> PropertyView<'_> {
        PropertyView {
            props: self.properties,
            ctx: Context::Publish,
            message_expiry_interval: self.message_expiry_interval,
            subscription_identifiers: self.subscription_identifiers,
            topic_alias: self.topic_alias,
        }
    }

    /// Length of the property list (without its length prefix); 0 and unused for 3.x.
    fn properties_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            self.view().list_len()
        } else {
            0
        }
    }

    fn body_len(&self, version: ProtocolVersion, props_len: usize) -> usize {
        let packet_id = if self.qos == QoS::AtMostOnce { 0 } else { 2 };
        let props = if version.is_v5() {
            varint_len(props_len) + props_len
        } else {
            0
        };
        string_len(self.topic) + packet_id + props + self.payload.len()
    }
}
