//! PUBLISH (spec 3.3). Decoding slices the payload out of the read buffer without copying;
//! [`OutgoingPublish`] encodes one shared message for one subscriber, whose only per-subscriber
//! parts are the fixed-header flags, packet id, topic alias, expiry and subscription ids.

use bytes::Bytes;

use super::{Properties, QoS};

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
