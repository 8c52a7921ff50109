//! SUBACK (spec 3.9): one reason code per requested filter, in order.

use super::{Properties, ReasonCode};

/// The server's answer to SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubAck {
    /// Packet id of the SUBSCRIBE.
    pub packet_id: u16,
    /// v5 properties.
    pub properties: Properties,
    /// Granted QoS (0x00..=0x02) or a failure code per filter. 3.x only knows 0x80 as failure;
    /// the encoder maps every error code to 0x80 there.
    pub reasons: Vec<ReasonCode>,
}
