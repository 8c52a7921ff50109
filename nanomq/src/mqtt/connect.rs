//! CONNECT (spec 3.1): the first packet of every connection; it fixes the protocol version.

use bytes::Bytes;

use super::{Properties, ProtocolVersion, QoS};

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

impl Default for ProtocolVersion {
    fn default() -> Self {
        ProtocolVersion::V311
    }
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
