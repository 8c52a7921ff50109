//! DISCONNECT (spec 3.14): in v5 either side may send it, with a reason code.

use super::frame::Body;
use super::primitives::{Reader, Sink};
use super::properties::Context;
use super::reason::ReasonSet;
use super::{DecodeError, Properties, ProtocolVersion, ReasonCode};

/// An orderly end of the connection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Disconnect {
    /// v5 reason code; 0x00 and no properties encode as an empty body.
    pub reason: ReasonCode,
    /// v5 properties (Session Expiry Interval, Reason String, Server Reference, user).
    pub properties: Properties,
}

impl Disconnect {
    pub(crate) fn decode(r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        if !version.is_v5() {
            r.finish()?;
            return Ok(Disconnect::default());
        }
        let (reason, properties) =
            decode_reason_and_properties(r, ReasonSet::Disconnect, Context::Disconnect)?;
        Ok(Disconnect { reason, properties })
    }
}

impl Body for Disconnect {
    fn write_body<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        if version.is_v5() {
            write_reason_and_properties(self.reason, &self.properties, Context::Disconnect, s);
        }
    }
}

/// The v5 DISCONNECT and AUTH body: an empty body means reason 0x00 and no properties, and the
/// properties may be left out after the reason (spec 3.14.2.1, 3.15.2.1).
pub(crate) fn decode_reason_and_properties(
    mut r: Reader,
    set: ReasonSet,
    ctx: Context,
) -> Result<(ReasonCode, Properties), DecodeError> {
    let mut reason = ReasonCode::SUCCESS;
    let mut properties = Properties::default();
    if !r.is_empty() {
        reason = ReasonCode::allowed_in(r.u8()?, set)?;
        if !r.is_empty() {
            properties = Properties::decode(&mut r, ctx)?;
        }
    }
    r.finish()?;
    Ok((reason, properties))
}

/// The shortest of the forms [`decode_reason_and_properties`] accepts.
pub(crate) fn write_reason_and_properties<S: Sink>(
    reason: ReasonCode,
    properties: &Properties,
    ctx: Context,
    s: &mut S,
) {
    let props = properties.view(ctx);
    let props_len = props.list_len();
    if reason == ReasonCode::SUCCESS && props_len == 0 {
        return;
    }
    s.put_u8(reason.0);
    if props_len > 0 {
        s.put_varint(props_len);
        props.write_list(s);
    }
}
