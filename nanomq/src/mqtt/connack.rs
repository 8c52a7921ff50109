//! CONNACK (spec 3.2). In 3.x the reason byte is a return code 0..=5; [`ConnAck`] always holds
//! the v5 reason code and the encoder maps it to the nearest 3.x return code.

use super::frame::Body;
use super::primitives::{Reader, Sink};
use super::properties::Context;
use super::reason::ReasonSet;
use super::{DecodeError, Properties, ProtocolVersion, ReasonCode};

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

/// 3.x return code for a v5 reason; failures 3.x has no word for become "server unavailable".
fn return_code(reason: ReasonCode) -> u8 {
    match reason.0 {
        0x00 => 0,
        0x84 => 1,
        0x85 => 2,
        0x86 => 4,
        0x87 => 5,
        _ => 3,
    }
}

fn from_return_code(code: u8) -> Result<ReasonCode, DecodeError> {
    Ok(match code {
        0 => ReasonCode::SUCCESS,
        1 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        2 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        3 => ReasonCode::SERVER_UNAVAILABLE,
        4 => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        5 => ReasonCode::NOT_AUTHORIZED,
        _ => return Err(DecodeError::Protocol("reserved CONNACK return code")),
    })
}

impl ConnAck {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        let code = r.u8()?;
        let mut ack = ConnAck::default();
        // In 3.1 the first byte is unused; from 3.1.1 on bit 0 is Session Present.
        if version != ProtocolVersion::V31 {
            if flags & 0xFE != 0 {
                return Err(DecodeError::Malformed("reserved CONNACK flags"));
            }
            ack.session_present = flags & 1 != 0;
        }
        if version.is_v5() {
            ack.reason = ReasonCode::allowed_in(code, ReasonSet::ConnAck)?;
            ack.properties = Properties::decode(&mut r, Context::ConnAck)?;
        } else {
            ack.reason = from_return_code(code)?;
        }
        r.finish()?;
        Ok(ack)
    }
}

impl Body for ConnAck {
    fn write_body<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        let session_present = self.session_present && version != ProtocolVersion::V31;
        s.put_u8(u8::from(session_present));
        if version.is_v5() {
            s.put_u8(self.reason.0);
            self.properties.view(Context::ConnAck).write(s);
        } else {
            s.put_u8(return_code(self.reason));
        }
    }
}
