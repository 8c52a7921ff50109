//! CONNACK (spec 3.2). In 3.x the reason byte is a return code 0..=5; [`ConnAck`] always holds
//! the v5 reason code and the encoder maps it to the nearest 3.x return code.

use super::{Properties, ReasonCode};

/// The server's answer to CONNECT.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnAck {
    /// The server resumed a stored session.
    pub session_present: bool,
    /// v5 reason code (3.x return codes are mapped on encode and decode).
    pub reason: ReasonCode,
    /// v5 CONNACK properties; ignored for 3.x.
    pub properties: Properties,
}
