//! Decoding errors, each with the reason code the broker sends before closing.

use super::ReasonCode;

/// Why bytes from the network are not a valid packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Structurally invalid: bad lengths, reserved bits, invalid UTF-8, QoS 3, ... (0x81).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Well-formed but not allowed here: duplicate property, property not allowed in this packet,
    /// packet id 0, ... (0x82).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// Remaining length exceeds the maximum packet size, found before anything is allocated (0x95).
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Total packet size the fixed header announces.
        size: u64,
        /// Limit in force.
        max: u32,
    },
    /// CONNECT with an unknown protocol name or level (CONNACK 0x84 / 3.x return code 1).
    #[error("unsupported protocol {name:?} level {level}")]
    UnsupportedProtocol {
        /// Protocol name field.
        name: String,
        /// Protocol level byte.
        level: u8,
    },
    /// PUBLISH or will topic with a wildcard or otherwise invalid (0x90).
    #[error("invalid topic name")]
    TopicNameInvalid,
}

impl DecodeError {
    /// The reason code to put in the DISCONNECT (or CONNACK) that closes the connection.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            DecodeError::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            DecodeError::TooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocol { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::TopicNameInvalid => ReasonCode::TOPIC_NAME_INVALID,
        }
    }
}
