//! UNSUBACK (spec 3.11): reason codes per filter in v5, no payload in 3.x.

use super::frame::Body;
use super::primitives::{packet_id, Reader, Sink};
use super::properties::Context;
use super::reason::ReasonSet;
use super::{DecodeError, Properties, ProtocolVersion, ReasonCode};

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

impl UnsubAck {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let mut ack = UnsubAck {
            packet_id: packet_id(&mut r)?,
            ..UnsubAck::default()
        };
        if version.is_v5() {
            ack.properties = Properties::decode(&mut r, Context::UnsubAck)?;
            while !r.is_empty() {
                let code = ReasonCode::allowed_in(r.u8()?, ReasonSet::UnsubAck)?;
                ack.reasons.push(code);
            }
            if ack.reasons.is_empty() {
                return Err(DecodeError::Protocol("UNSUBACK without reason codes"));
            }
        }
        r.finish()?;
        Ok(ack)
    }
}

impl Body for UnsubAck {
    fn write_body<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        s.put_u16(self.packet_id);
        if version.is_v5() {
            self.properties.view(Context::UnsubAck).write(s);
            for reason in &self.reasons {
                s.put_u8(reason.0);
            }
        }
    }
}
