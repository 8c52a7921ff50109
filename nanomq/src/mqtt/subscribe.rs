//! SUBSCRIBE (spec 3.8): fixed-header flags 0b0010, at least one filter.

use super::frame::Body;
use super::primitives::{packet_id, Reader, Sink};
use super::properties::Context;
use super::{DecodeError, Properties, ProtocolVersion, QoS};

/// A request to add one or more subscriptions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subscribe {
    /// Non-zero packet id echoed by SUBACK.
    pub packet_id: u16,
    /// v5 properties: at most one Subscription Identifier, user properties.
    pub properties: Properties,
    /// Topic filters with their options, in request order; never empty.
    pub filters: Vec<(String, SubscriptionOptions)>,
}

/// Per-filter subscription options byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS the subscriber accepts.
    pub qos: QoS,
    /// v5: do not deliver the subscriber's own publications.
    pub no_local: bool,
    /// v5: keep the RETAIN flag of forwarded messages.
    pub retain_as_published: bool,
    /// v5: when to send retained messages at subscribe time.
    pub retain_handling: RetainHandling,
}

/// v5 Retain Handling option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at subscribe time.
    #[default]
    OnSubscribe = 0,
    /// 1: send them only if the subscription did not already exist.
    OnNewSubscribe = 1,
    /// 2: never send them at subscribe time.
    Never = 2,
}

impl Subscribe {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = packet_id(&mut r)?;
        let properties = if version.is_v5() {
            Properties::decode(&mut r, Context::Subscribe)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = r.string()?;
            let options = SubscriptionOptions::decode(r.u8()?, version)?;
            filters.push((filter, options));
        }
        if filters.is_empty() {
            return Err(DecodeError::Protocol("SUBSCRIBE without topic filters"));
        }
        Ok(Subscribe {
            packet_id,
            properties,
            filters,
        })
    }
}

impl Body for Subscribe {
    fn write_body<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        s.put_u16(self.packet_id);
        if version.is_v5() {
            self.properties.view(Context::Subscribe).write(s);
        }
        for (filter, options) in &self.filters {
            s.put_string(filter);
            s.put_u8(options.to_byte(version));
        }
    }
}

impl SubscriptionOptions {
    /// Parses the options byte (spec 3.8.3.1); 3.x only has the QoS bits.
    pub(crate) fn decode(byte: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        if byte & reserved != 0 {
            return Err(DecodeError::Malformed("reserved subscription option bits"));
        }
        // QoS 3 is "a Protocol Error" in MQTT 5 (3.8.3.1) and malformed in 3.1.1 [MQTT-3-8.3-4].
        let qos = QoS::from_u8(byte & 0x03).ok_or(if version.is_v5() {
            DecodeError::Protocol("subscription maximum QoS 3")
        } else {
            DecodeError::Malformed("subscription maximum QoS 3")
        })?;
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::OnSubscribe,
            1 => RetainHandling::OnNewSubscribe,
            2 => RetainHandling::Never,
            _ => return Err(DecodeError::Protocol("retain handling 3")),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    pub(crate) fn to_byte(self, version: ProtocolVersion) -> u8 {
        let qos = self.qos as u8;
        if !version.is_v5() {
            return qos;
        }
        qos | u8::from(self.no_local) << 2
            | u8::from(self.retain_as_published) << 3
            | (self.retain_handling as u8) << 4
    }
}
