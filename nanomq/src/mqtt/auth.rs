//! AUTH (spec 3.15): v5 enhanced authentication exchange.

use super::{Properties, ReasonCode};

/// One step of an enhanced authentication exchange.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Auth {
    /// 0x00 success, 0x18 continue, 0x19 re-authenticate.
    pub reason: ReasonCode,
    /// Authentication Method and Data, Reason String, user properties.
    pub properties: Properties,
}
