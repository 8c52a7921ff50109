//! CONNECT (spec 3.1): the first packet of every connection; it fixes the protocol version.

use bytes::Bytes;

use super::frame::Body;
use super::primitives::{check_topic_name, Reader, Sink};
use super::properties::Context;
use super::{DecodeError, Properties, ProtocolVersion, QoS};

/// A client's request to open or resume a session.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Connect {
    /// From the protocol name and level; decides how every later packet is framed.
    pub protocol: ProtocolVersion,
    /// Clean Start (v5) or Clean Session (3.x).
    pub clean_start: bool,
    /// Seconds; 0 disables keepalive.
    pub keep_alive: u16,
    /// v5 CONNECT properties; empty for 3.x.
    pub properties: Properties,
    /// May be empty: the server then assigns one (v5, or 3.1.1 with clean session).
    pub client_id: String,
    /// Will message published when the connection ends without DISCONNECT 0x00.
    pub will: Option<Will>,
    /// Optional user name.
    pub username: Option<String>,
    /// Optional password: binary data, not a string.
    pub password: Option<Bytes>,
}

/// The will message carried in CONNECT.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Will {
    /// Topic name; wildcards are not allowed.
    pub topic: String,
    /// Application payload.
    pub payload: Bytes,
    /// QoS of the will publication.
    pub qos: QoS,
    /// Publish the will as retained.
    pub retain: bool,
    /// v5 will properties (Will Delay Interval, Message Expiry, Content Type, ...).
    pub properties: Properties,
}

impl ProtocolVersion {
    /// Protocol name and level as CONNECT writes them.
    fn name_and_level(self) -> (&'static str, u8) {
        match self {
            ProtocolVersion::V31 => ("MQIsdp", 3),
            ProtocolVersion::V311 => ("MQTT", 4),
            ProtocolVersion::V5 => ("MQTT", 5),
        }
    }
}

const WILL: u8 = 0x04;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

impl Connect {
    /// Parses CONNECT in whatever protocol it names, which becomes the connection's version.
    pub(crate) fn decode(mut r: Reader) -> Result<Self, DecodeError> {
        let name = r.string()?;
        let level = r.u8()?;
        let protocol = match (name.as_str(), level) {
            ("MQIsdp", 3) => ProtocolVersion::V31,
            ("MQTT", 4) => ProtocolVersion::V311,
            ("MQTT", 5) => ProtocolVersion::V5,
            _ => return Err(DecodeError::UnsupportedProtocol { name, level }),
        };
        let v5 = protocol.is_v5();
        let flags = r.u8()?;
        if flags & 0x01 != 0 {
            return Err(DecodeError::Malformed("reserved CONNECT flag set"));
        }
        let will_qos = (flags >> 3) & 0x03;
        if flags & WILL == 0 && (will_qos != 0 || flags & WILL_RETAIN != 0) {
            return Err(DecodeError::Malformed("will QoS or retain without a will"));
        }
        let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::Malformed("will QoS 3"))?;
        if !v5 && flags & PASSWORD != 0 && flags & USERNAME == 0 {
            return Err(DecodeError::Malformed("password without a user name"));
        }
        let keep_alive = r.u16()?;
        let properties = if v5 {
            Properties::decode(&mut r, Context::Connect)?
        } else {
            Properties::default()
        };
        if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
            return Err(DecodeError::Protocol(
                "authentication data without a method",
            ));
        }
        let client_id = r.string()?;
        let will = if flags & WILL != 0 {
            let properties = if v5 {
                Properties::decode(&mut r, Context::Will)?
            } else {
                Properties::default()
            };
            let topic = r.string()?;
            if topic.is_empty() {
                return Err(DecodeError::TopicNameInvalid);
            }
            check_topic_name(&topic)?;
            Some(Will {
                topic,
                payload: r.binary()?,
                qos: will_qos,
                retain: flags & WILL_RETAIN != 0,
                properties,
            })
        } else {
            None
        };
        let username = match flags & USERNAME {
            0 => None,
            _ => Some(r.string()?),
        };
        let password = match flags & PASSWORD {
            0 => None,
            _ => Some(r.binary()?),
        };
        r.finish()?;
        Ok(Connect {
            protocol,
            clean_start: flags & 0x02 != 0,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }
}

/// Written in the CONNECT's own `protocol`, whatever the connection's version says.
impl Body for Connect {
    fn write_body<S: Sink>(&self, _: ProtocolVersion, s: &mut S) {
        let (name, level) = self.protocol.name_and_level();
        let v5 = self.protocol.is_v5();
        s.put_string(name);
        s.put_u8(level);
        let mut flags = u8::from(self.clean_start) << 1;
        if let Some(will) = &self.will {
            flags |= WILL | (will.qos as u8) << 3;
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        s.put_u8(flags);
        s.put_u16(self.keep_alive);
        if v5 {
            self.properties.view(Context::Connect).write(s);
        }
        s.put_string(&self.client_id);
        if let Some(will) = &self.will {
            if v5 {
                will.properties.view(Context::Will).write(s);
            }
            s.put_string(&will.topic);
            s.put_binary(&will.payload);
        }
        if let Some(username) = &self.username {
            s.put_string(username);
        }
        if let Some(password) = &self.password {
            s.put_binary(password);
        }
    }
}
