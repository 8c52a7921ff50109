//! UNSUBACK (spec 3.11): reason codes per filter in v5, no payload in 3.x.

use super::{Properties, ReasonCode};

/// The server's answer to UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnsubAck {
    /// Packet id of the UNSUBSCRIBE.
    pub packet_id: u16,
    /// v5 properties.
    pub properties: Properties,
    /// v5 only: one code per filter; not encoded for 3.x and empty when decoded from 3.x.
    pub reasons: Vec<ReasonCode>,
}
