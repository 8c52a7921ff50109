//! Session state machine tests: the outbound flow decoded back with the codec.

use super::*;

/// A QoS `qos` delivery of a one-byte message `tag` on topic "t".
pub(crate) fn outgoing(tag: u8, qos: QoS) -> Outgoing {
    Outgoing {
        message: Arc::new(Message {
            topic: Arc::from("t"),
            payload: Bytes::from(vec![tag]),
            qos,
            retain: false,
            properties: Properties::default(),
            expires_at: None,
        }),
        qos,
        retain: false,
        subscription_identifiers: Vec::new(),
    }
}
