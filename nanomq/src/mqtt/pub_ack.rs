//! PUBACK, PUBREC, PUBREL and PUBCOMP (spec 3.4 to 3.7): one body shape, four packet types.
//! PUBREL carries fixed-header flags 0b0010; the others 0.

use super::{Properties, ReasonCode};

/// Body of PUBACK, PUBREC, PUBREL and PUBCOMP; [`super::Packet`] says which.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PubAck {
    /// The packet id being acknowledged.
    pub packet_id: u16,
    /// v5 reason code; omitted on the wire when Success and no properties.
    pub reason: ReasonCode,
    /// v5 properties (Reason String, User Property).
    pub properties: Properties,
}
