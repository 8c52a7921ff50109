//! Framing: find a whole packet in the read buffer, then dispatch to the per-packet parser;
//! and the matching encoder.

use bytes::BytesMut;

use super::{DecodeError, Packet, ProtocolVersion};

/// Decodes the first complete packet in `buf`, advancing past it.
///
/// Returns `Ok(None)` while the packet is incomplete (nothing is consumed). The remaining length
/// is checked against `max_packet_size` (total packet size, as MQTT 5 defines it) before any
/// allocation. `version` is the connection's protocol; CONNECT ignores it and reads its own.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let _ = (buf, version, max_packet_size);
    todo!("codec helper")
}

/// Appends the encoding of `packet` for a connection speaking `version`.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) {
    let _ = (packet, version, out);
    todo!("codec helper")
}
