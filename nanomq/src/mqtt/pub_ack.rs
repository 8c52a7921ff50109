//! PUBACK, PUBREC, PUBREL and PUBCOMP (spec 3.4 to 3.7): one body shape, four packet types.
//! PUBREL carries fixed-header flags 0b0010; the others 0.

use super::frame::Body;
use super::primitives::{packet_id, Reader, Sink};
use super::properties::Context;
use super::reason::ReasonSet;
use super::{DecodeError, Properties, ProtocolVersion, ReasonCode};

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

impl PubAck {
    /// `release` selects the PUBREL/PUBCOMP reason codes instead of PUBACK/PUBREC's.
    pub(crate) fn decode(
        mut r: Reader,
        version: ProtocolVersion,
        release: bool,
    ) -> Result<Self, DecodeError> {
        let mut ack = PubAck {
            packet_id: packet_id(&mut r)?,
            ..PubAck::default()
        };
        if version.is_v5() && !r.is_empty() {
            let set = if release {
                ReasonSet::PubRel
            } else {
                ReasonSet::PubAck
            };
            ack.reason = ReasonCode::allowed_in(r.u8()?, set)?;
            if !r.is_empty() {
                ack.properties = Properties::decode(&mut r, Context::PubAck)?;
            }
        }
        r.finish()?;
        Ok(ack)
    }
}

impl Body for PubAck {
    fn write_body<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        s.put_u16(self.packet_id);
        if !version.is_v5() {
            return;
        }
        let props = self.properties.view(Context::PubAck);
        let props_len = props.list_len();
        if props_len > 0 {
            s.put_u8(self.reason.0);
            s.put_varint(props_len);
            props.write_list(s);
        } else if self.reason != ReasonCode::SUCCESS {
            s.put_u8(self.reason.0);
        }
    }
}
