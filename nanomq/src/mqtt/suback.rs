//! SUBACK (spec 3.9): one reason code per requested filter, in order.

use super::frame::Body;
use super::primitives::{packet_id, Reader, Sink};
use super::properties::Context;
use super::reason::ReasonSet;
use super::{DecodeError, Properties, ProtocolVersion, ReasonCode};

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

impl SubAck {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = packet_id(&mut r)?;
        let properties = if version.is_v5() {
            Properties::decode(&mut r, Context::SubAck)?
        } else {
            Properties::default()
        };
        let mut reasons = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = r.u8()?;
            reasons.push(if version.is_v5() {
                ReasonCode::allowed_in(code, ReasonSet::SubAck)?
            } else {
                match code {
                    0x00..=0x02 | 0x80 => ReasonCode(code),
                    _ => return Err(DecodeError::Protocol("reserved SUBACK return code")),
                }
            });
        }
        if reasons.is_empty() {
            return Err(DecodeError::Protocol("SUBACK without return codes"));
        }
        Ok(SubAck {
            packet_id,
            properties,
            reasons,
        })
    }
}

impl Body for SubAck {
    fn write_body<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        s.put_u16(self.packet_id);
        if version.is_v5() {
            self.properties.view(Context::SubAck).write(s);
        }
        for reason in &self.reasons {
            let code = if !version.is_v5() && reason.is_error() {
                0x80
            } else {
                reason.0
            };
            s.put_u8(code);
        }
    }
}
