//! DISCONNECT (spec 3.14): in v5 either side may send it, with a reason code.

use super::{Properties, ReasonCode};

/// An orderly end of the connection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Disconnect {
    /// v5 reason code; 0x00 and no properties encode as an empty body.
    pub reason: ReasonCode,
    /// v5 properties (Session Expiry Interval, Reason String, Server Reference, user).
    pub properties: Properties,
}
