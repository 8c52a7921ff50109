//! MQTT 5 properties (spec 2.2.2.2). One struct for every packet; the decoder rejects a property
//! that is not allowed in the packet being decoded, and any duplicate except User Property and
//! (in PUBLISH) Subscription Identifier.

use bytes::Bytes;

use super::primitives::{Counter, Reader, Sink};
use super::DecodeError;
use Context as C;

/// Every MQTT 5 property. `None` / empty means absent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Properties {
    /// 0x01, PUBLISH and will: 0 bytes, 1 UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// 0x02, PUBLISH and will: seconds until the message expires.
    pub message_expiry_interval: Option<u32>,
    /// 0x03, PUBLISH and will.
    pub content_type: Option<String>,
    /// 0x08, PUBLISH and will.
    pub response_topic: Option<String>,
    /// 0x09, PUBLISH and will.
    pub correlation_data: Option<Bytes>,
    /// 0x0B, variable byte integer 1..=268_435_455: once in SUBSCRIBE, any number in PUBLISH.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11, CONNECT, CONNACK, DISCONNECT.
    pub session_expiry_interval: Option<u32>,
    /// 0x12, CONNACK.
    pub assigned_client_identifier: Option<String>,
    /// 0x13, CONNACK.
    pub server_keep_alive: Option<u16>,
    /// 0x15, CONNECT, CONNACK, AUTH.
    pub authentication_method: Option<String>,
    /// 0x16, CONNECT, CONNACK, AUTH.
    pub authentication_data: Option<Bytes>,
    /// 0x17, CONNECT: 0 or 1.
    pub request_problem_information: Option<u8>,
    /// 0x18, will properties.
    pub will_delay_interval: Option<u32>,
    /// 0x19, CONNECT: 0 or 1.
    pub request_response_information: Option<u8>,
    /// 0x1A, CONNACK.
    pub response_information: Option<String>,
    /// 0x1C, CONNACK, DISCONNECT.
    pub server_reference: Option<String>,
    /// 0x1F, every ack, DISCONNECT, AUTH.
    pub reason_string: Option<String>,
    /// 0x21, CONNECT, CONNACK: non-zero.
    pub receive_maximum: Option<u16>,
    /// 0x22, CONNECT, CONNACK.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23, PUBLISH: non-zero.
    pub topic_alias: Option<u16>,
    /// 0x24, CONNACK: 0 or 1.
    pub maximum_qos: Option<u8>,
    /// 0x25, CONNACK: 0 or 1.
    pub retain_available: Option<u8>,
    /// 0x26, any packet with properties; repeatable, order kept.
    pub user_properties: Vec<(String, String)>,
    /// 0x27, CONNECT, CONNACK: non-zero.
    pub maximum_packet_size: Option<u32>,
    /// 0x28, CONNACK: 0 or 1.
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29, CONNACK: 0 or 1.
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A, CONNACK: 0 or 1.
    pub shared_subscription_available: Option<u8>,
}

/// The packet (or will) a property list belongs to; it decides which properties are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Connect,
    ConnAck,
    Publish,
    Will,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    PubAck,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Context {
    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

const fn mask(contexts: &[Context]) -> u16 {
    let mut m = 0;
    let mut i = 0;
    while i < contexts.len() {
        m |= contexts[i].bit();
        i += 1;
    }
    m
}

const MESSAGE: u16 = mask(&[C::Publish, C::Will]);
const EVERY: u16 = u16::MAX;

/// Contexts where property `id` may appear (spec 2.2.2.2, table 2-4); `None` for unknown ids.
const fn allowed_in(id: u32) -> Option<u16> {
    Some(match id {
        0x01 | 0x02 | 0x03 | 0x08 | 0x09 => MESSAGE,
        0x0B => const { mask(&[C::Publish, C::Subscribe]) },
        0x11 => const { mask(&[C::Connect, C::ConnAck, C::Disconnect]) },
        0x12 | 0x13 | 0x1A | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => C::ConnAck.bit(),
        0x15 | 0x16 => const { mask(&[C::Connect, C::ConnAck, C::Auth]) },
        0x17 | 0x19 => C::Connect.bit(),
        0x18 => C::Will.bit(),
        0x1C => const { mask(&[C::ConnAck, C::Disconnect]) },
        0x1F => {
            const {
                mask(&[
                    C::ConnAck,
                    C::PubAck,
                    C::SubAck,
                    C::UnsubAck,
                    C::Disconnect,
                    C::Auth,
                ])
            }
        }
        0x21 | 0x22 | 0x27 => const { mask(&[C::Connect, C::ConnAck]) },
        0x23 => C::Publish.bit(),
        0x26 => EVERY,
        _ => return None,
    })
}

fn allows(ctx: Context, id: u8) -> bool {
    allowed_in(u32::from(id)).is_some_and(|m| m & ctx.bit() != 0)
}

fn flag(r: &mut Reader) -> Result<u8, DecodeError> {
    match r.u8()? {
        v @ (0 | 1) => Ok(v),
        _ => Err(DecodeError::Protocol("property must be 0 or 1")),
    }
}

fn non_zero_u16(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::Protocol("property must not be 0")),
        v => Ok(v),
    }
}

impl Properties {
    /// Reads a property length and the properties it covers, as allowed in `ctx`.
    pub(crate) fn decode(r: &mut Reader, ctx: Context) -> Result<Properties, DecodeError> {
        let len = r.varint()?;
        let mut r = r.section(len as usize)?;
        let mut p = Properties::default();
        let mut seen = 0u64;
        while !r.is_empty() {
            let id = r.varint()?;
            let allowed =
                allowed_in(id).ok_or(DecodeError::Malformed("unknown property identifier"))?;
            // "An Identifier which is not valid for its packet type" makes a Malformed Packet
            // (MQTT 5 2.2.2.2).
            if allowed & ctx.bit() == 0 {
                return Err(DecodeError::Malformed(
                    "property not allowed in this packet",
                ));
            }
            let repeatable = id == 0x26 || (id == 0x0B && ctx == Context::Publish);
            // Known ids are all below 64.
            if !repeatable && seen & (1u64 << id) != 0 {
                return Err(DecodeError::Protocol("property appears twice"));
            }
            seen |= 1u64 << id;
            p.decode_one(id, &mut r)?;
        }
        Ok(p)
    }

    fn decode_one(&mut self, id: u32, r: &mut Reader) -> Result<(), DecodeError> {
        match id {
            0x01 => self.payload_format_indicator = Some(flag(r)?),
            0x02 => self.message_expiry_interval = Some(r.u32()?),
            0x03 => self.content_type = Some(r.string()?),
            0x08 => self.response_topic = Some(r.string()?),
            0x09 => self.correlation_data = Some(r.binary()?),
            0x0B => match r.varint()? {
                0 => return Err(DecodeError::Protocol("subscription identifier 0")),
                v => self.subscription_identifiers.push(v),
            },
            0x11 => self.session_expiry_interval = Some(r.u32()?),
            0x12 => self.assigned_client_identifier = Some(r.string()?),
            0x13 => self.server_keep_alive = Some(r.u16()?),
            0x15 => self.authentication_method = Some(r.string()?),
            0x16 => self.authentication_data = Some(r.binary()?),
            0x17 => self.request_problem_information = Some(flag(r)?),
            0x18 => self.will_delay_interval = Some(r.u32()?),
            0x19 => self.request_response_information = Some(flag(r)?),
            0x1A => self.response_information = Some(r.string()?),
            0x1C => self.server_reference = Some(r.string()?),
            0x1F => self.reason_string = Some(r.string()?),
            0x21 => self.receive_maximum = Some(non_zero_u16(r)?),
            0x22 => self.topic_alias_maximum = Some(r.u16()?),
            // Alias 0 decodes: the connection answers it with 0x94 Topic Alias invalid (3.3.4).
            0x23 => self.topic_alias = Some(r.u16()?),
            0x24 => self.maximum_qos = Some(flag(r)?),
            0x25 => self.retain_available = Some(flag(r)?),
            0x26 => {
                let pair = (r.string()?, r.string()?);
                self.user_properties.push(pair);
            }
            0x27 => match r.u32()? {
                0 => return Err(DecodeError::Protocol("maximum packet size 0")),
                v => self.maximum_packet_size = Some(v),
            },
            0x28 => self.wildcard_subscription_available = Some(flag(r)?),
            0x29 => self.subscription_identifier_available = Some(flag(r)?),
            0x2A => self.shared_subscription_available = Some(flag(r)?),
            // `decode` only passes ids that `allowed_in` knows.
            _ => return Err(DecodeError::Malformed("unknown property identifier")),
        }
        Ok(())
    }

    /// The properties as written in `ctx`: only those the packet allows, so a stray field set by
    /// the caller can never make the peer close the connection.
    pub(crate) fn view(&self, ctx: Context) -> PropertyView<'_> {
        PropertyView {
            props: self,
            ctx,
            message_expiry_interval: self.message_expiry_interval,
            subscription_identifiers: &self.subscription_identifiers,
            topic_alias: self.topic_alias,
        }
    }
}

/// Properties ready to encode. PUBLISH replaces the per-subscriber fields (expiry, subscription
/// identifiers, topic alias) without touching the shared [`Properties`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PropertyView<'a> {
    pub(crate) props: &'a Properties,
    pub(crate) ctx: Context,
    pub(crate) message_expiry_interval: Option<u32>,
    pub(crate) subscription_identifiers: &'a [u32],
    pub(crate) topic_alias: Option<u16>,
}

impl PropertyView<'_> {
    /// Bytes of the properties alone, without the property length that precedes them.
    pub(crate) fn list_len(&self) -> usize {
        let mut c = Counter::default();
        self.write_list(&mut c);
        c.0
    }

    /// Writes the property length and then the properties.
    pub(crate) fn write<S: Sink>(&self, s: &mut S) {
        s.put_varint(self.list_len());
        self.write_list(s);
    }

    /// Writes the properties in identifier order, without their length.
    pub(crate) fn write_list<S: Sink>(&self, s: &mut S) {
        let p = self.props;
        let ctx = self.ctx;
        let mut w = Writer { s, ctx };
        w.u8(0x01, p.payload_format_indicator);
        w.u32(0x02, self.message_expiry_interval);
        w.string(0x03, p.content_type.as_deref());
        w.string(0x08, p.response_topic.as_deref());
        w.binary(0x09, p.correlation_data.as_deref());
        // SUBSCRIBE carries at most one subscription identifier.
        let ids = match ctx {
            Context::Subscribe => {
                &self.subscription_identifiers[..self.subscription_identifiers.len().min(1)]
            }
            _ => self.subscription_identifiers,
        };
        if allows(ctx, 0x0B) {
            for &id in ids {
                w.s.put_u8(0x0B);
                w.s.put_varint(id as usize);
            }
        }
        w.u32(0x11, p.session_expiry_interval);
        w.string(0x12, p.assigned_client_identifier.as_deref());
        w.u16(0x13, p.server_keep_alive);
        w.string(0x15, p.authentication_method.as_deref());
        w.binary(0x16, p.authentication_data.as_deref());
        w.u8(0x17, p.request_problem_information);
        w.u32(0x18, p.will_delay_interval);
        w.u8(0x19, p.request_response_information);
        w.string(0x1A, p.response_information.as_deref());
        w.string(0x1C, p.server_reference.as_deref());
        w.string(0x1F, p.reason_string.as_deref());
        w.u16(0x21, p.receive_maximum);
        w.u16(0x22, p.topic_alias_maximum);
        w.u16(0x23, self.topic_alias);
        w.u8(0x24, p.maximum_qos);
        w.u8(0x25, p.retain_available);
        for (key, value) in &p.user_properties {
            w.s.put_u8(0x26);
            w.s.put_string(key);
            w.s.put_string(value);
        }
        w.u32(0x27, p.maximum_packet_size);
        w.u8(0x28, p.wildcard_subscription_available);
        w.u8(0x29, p.subscription_identifier_available);
        w.u8(0x2A, p.shared_subscription_available);
    }
}

/// Writes one optional property if present and allowed in the context.
struct Writer<'s, S> {
    s: &'s mut S,
    ctx: Context,
}

impl<S: Sink> Writer<'_, S> {
    fn id(&mut self, id: u8) -> bool {
        let ok = allows(self.ctx, id);
        if ok {
            self.s.put_u8(id);
        }
        ok
    }

    fn u8(&mut self, id: u8, v: Option<u8>) {
        if let Some(v) = v {
            if self.id(id) {
                self.s.put_u8(v);
            }
        }
    }

    fn u16(&mut self, id: u8, v: Option<u16>) {
        if let Some(v) = v {
            if self.id(id) {
                self.s.put_u16(v);
            }
        }
    }

    fn u32(&mut self, id: u8, v: Option<u32>) {
        if let Some(v) = v {
            if self.id(id) {
                self.s.put_u32(v);
            }
        }
    }

    fn string(&mut self, id: u8, v: Option<&str>) {
        if let Some(v) = v {
            if self.id(id) {
                self.s.put_string(v);
            }
        }
    }

    fn binary(&mut self, id: u8, v: Option<&[u8]>) {
        if let Some(v) = v {
            if self.id(id) {
                self.s.put_binary(v);
            }
        }
    }
}
