//! AUTH (spec 3.15): v5 enhanced authentication exchange.

use super::disconnect::{decode_reason_and_properties, write_reason_and_properties};
use super::frame::Body;
use super::primitives::{Reader, Sink};
use super::properties::Context;
use super::reason::ReasonSet;
use super::{DecodeError, Properties, ProtocolVersion, ReasonCode};

/// One step of an enhanced authentication exchange.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Auth {
    /// 0x00 success, 0x18 continue, 0x19 re-authenticate.
    pub reason: ReasonCode,
    /// Authentication Method and Data, Reason String, user properties.
    pub properties: Properties,
}

impl Auth {
    pub(crate) fn decode(r: Reader) -> Result<Self, DecodeError> {
        let (reason, properties) = decode_reason_and_properties(r, ReasonSet::Auth, Context::Auth)?;
        Ok(Auth { reason, properties })
    }
}

/// Always the v5 form: AUTH does not exist in 3.x.
impl Body for Auth {
    fn write_body<S: Sink>(&self, _: ProtocolVersion, s: &mut S) {
        write_reason_and_properties(self.reason, &self.properties, Context::Auth, s);
    }
}
