//! UNSUBSCRIBE (spec 3.10): fixed-header flags 0b0010, at least one filter.

use super::frame::Body;
use super::primitives::{packet_id, Reader, Sink};
use super::properties::Context;
use super::{DecodeError, Properties, ProtocolVersion};

/// A request to remove subscriptions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Unsubscribe {
    /// Non-zero packet id echoed by UNSUBACK.
    pub packet_id: u16,
    /// v5 properties (user properties).
    pub properties: Properties,
    /// Topic filters to remove; never empty.
    pub filters: Vec<String>,
}

impl Unsubscribe {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = packet_id(&mut r)?;
        let properties = if version.is_v5() {
            Properties::decode(&mut r, Context::Unsubscribe)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(r.string()?);
        }
        if filters.is_empty() {
            return Err(DecodeError::Protocol("UNSUBSCRIBE without topic filters"));
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    }
}

impl Body for Unsubscribe {
    fn write_body<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        s.put_u16(self.packet_id);
        if version.is_v5() {
            self.properties.view(Context::Unsubscribe).write(s);
        }
        for filter in &self.filters {
            s.put_string(filter);
        }
    }
}
