//! Framing: find a whole packet in the read buffer, then dispatch to the per-packet parser;
//! and the matching encoder.

use bytes::BytesMut;

use super::primitives::{varint_len, Counter, Reader, Sink};
use super::{
    Auth, ConnAck, Connect, DecodeError, Disconnect, Packet, ProtocolVersion, PubAck, Publish,
    SubAck, Subscribe, UnsubAck, Unsubscribe,
};

/// Decodes the first complete packet in `buf`, advancing past it.
///
/// Returns `Ok(None)` while the packet is incomplete (nothing is consumed). The remaining length
/// is checked against `max_packet_size` (total packet size, as MQTT 5 defines it) before any
/// allocation. `version` is the connection's protocol; CONNECT ignores it and reads its own.
///
/// The first byte is checked as soon as it arrives, so a bad packet type or reserved flag is
/// reported without waiting for the rest. After an error the buffer is left as it was; the
/// connection is expected to close with [`DecodeError::reason_code`].
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some(FrameSize { header_len, total }) = frame_size(buf, version, max_packet_size)? else {
        return Ok(None);
    };
    let first = buf[0];
    let mut frame = buf.split_to(total).freeze();
    let body = Reader::new(frame.split_off(header_len));
    let flags = first & 0x0F;
    let packet = match first >> 4 {
        1 => Packet::Connect(Box::new(Connect::decode(body)?)),
        2 => Packet::ConnAck(ConnAck::decode(body, version)?),
        3 => Packet::Publish(Publish::decode(flags, body, version)?),
        4 => Packet::PubAck(PubAck::decode(body, version, false)?),
        5 => Packet::PubRec(PubAck::decode(body, version, false)?),
        6 => Packet::PubRel(PubAck::decode(body, version, true)?),
        7 => Packet::PubComp(PubAck::decode(body, version, true)?),
        8 => Packet::Subscribe(Subscribe::decode(body, version)?),
        9 => Packet::SubAck(SubAck::decode(body, version)?),
        10 => Packet::Unsubscribe(Unsubscribe::decode(body, version)?),
        11 => Packet::UnsubAck(UnsubAck::decode(body, version)?),
        12 => empty(body, Packet::PingReq)?,
        13 => empty(body, Packet::PingResp)?,
        14 => Packet::Disconnect(Disconnect::decode(body, version)?),
        // `check_fixed_header` let type 15 through only for v5.
        _ => Packet::Auth(Auth::decode(body)?),
    };
    Ok(Some(packet))
}

/// Where the first packet in a buffer ends: its fixed header length and its total length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSize {
    /// Bytes of the fixed header (type byte and remaining length); the body starts here.
    pub header_len: usize,
    /// Bytes of the whole packet.
    pub total: usize,
}

/// The size of the first packet in `buf` once all of it is buffered, with the same checks and
/// errors as [`decode`] (fixed-header flags, remaining length, `max_packet_size`) and without
/// parsing the body. `Ok(None)` while incomplete. For readers that skim packets in place, such as
/// the load generator, which takes what it needs from a PUBLISH without building a [`Publish`].
pub fn frame_size(
    buf: &[u8],
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<FrameSize>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    check_fixed_header(first, version)?;
    let mut remaining = 0usize;
    let mut header_len = None;
    for (i, shift) in [0, 7, 14, 21].into_iter().enumerate() {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            header_len = Some(2 + i);
            break;
        }
    }
    let header_len = header_len.ok_or(DecodeError::Malformed(
        "remaining length longer than 4 bytes",
    ))?;
    let total = header_len + remaining;
    if total as u64 > u64::from(max_packet_size) {
        return Err(DecodeError::TooLarge {
            size: total as u64,
            max: max_packet_size,
        });
    }
    Ok((buf.len() >= total).then_some(FrameSize { header_len, total }))
}

/// Packet type and reserved flag bits (spec 2.1.3). PUBLISH flags are checked by its parser.
fn check_fixed_header(first: u8, version: ProtocolVersion) -> Result<(), DecodeError> {
    let flags = first & 0x0F;
    let expected = match first >> 4 {
        0 => return Err(DecodeError::Malformed("packet type 0 is reserved")),
        3 => return Ok(()),
        6 | 8 | 10 => 0b0010,
        15 if !version.is_v5() => return Err(DecodeError::Malformed("AUTH exists only in MQTT 5")),
        _ => 0,
    };
    // MQTT 3.1 clients may set DUP when they resend PUBREL, SUBSCRIBE or UNSUBSCRIBE.
    let ignored = if version == ProtocolVersion::V31 && expected != 0 {
        0b1000
    } else {
        0
    };
    if flags & !ignored == expected {
        Ok(())
    } else {
        Err(DecodeError::Malformed("reserved fixed header flags"))
    }
}

fn empty(body: Reader, packet: Packet) -> Result<Packet, DecodeError> {
    body.finish()?;
    Ok(packet)
}

/// Appends the encoding of `packet` for a connection speaking `version`.
///
/// CONNECT is written in its own `protocol`. Properties and reason codes are written for v5 only,
/// and only the properties the packet type allows. AUTH, which 3.x lacks, is written in its v5
/// form regardless. Strings and binary fields over 65,535 bytes are cut to fit; a packet whose
/// remaining length exceeds 268,435,455 bytes is not representable, so check
/// [`Packet::encoded_len`] against the peer's limit first.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) {
    write_packet(packet, version, out);
}

impl Packet {
    /// Total bytes [`encode`] writes for this packet: what MQTT 5's Maximum Packet Size limits.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        match self {
            Packet::Publish(p) => p.as_outgoing().encoded_len(version),
            _ => {
                let mut c = Counter::default();
                write_packet(self, version, &mut c);
                c.0
            }
        }
    }
}

/// A packet body that knows how to write itself after the fixed header.
pub(crate) trait Body {
    fn write_body<S: Sink>(&self, version: ProtocolVersion, s: &mut S);
}

/// PINGREQ and PINGRESP have no body.
impl Body for () {
    fn write_body<S: Sink>(&self, _: ProtocolVersion, _: &mut S) {}
}

fn write_packet<S: Sink>(packet: &Packet, version: ProtocolVersion, s: &mut S) {
    match packet {
        Packet::Connect(c) => framed(0x10, c.as_ref(), version, s),
        Packet::ConnAck(c) => framed(0x20, c, version, s),
        Packet::Publish(p) => p.as_outgoing().write(version, s),
        Packet::PubAck(a) => framed(0x40, a, version, s),
        Packet::PubRec(a) => framed(0x50, a, version, s),
        Packet::PubRel(a) => framed(0x62, a, version, s),
        Packet::PubComp(a) => framed(0x70, a, version, s),
        Packet::Subscribe(x) => framed(0x82, x, version, s),
        Packet::SubAck(x) => framed(0x90, x, version, s),
        Packet::Unsubscribe(x) => framed(0xA2, x, version, s),
        Packet::UnsubAck(x) => framed(0xB0, x, version, s),
        Packet::PingReq => framed(0xC0, &(), version, s),
        Packet::PingResp => framed(0xD0, &(), version, s),
        Packet::Disconnect(d) => framed(0xE0, d, version, s),
        Packet::Auth(a) => framed(0xF0, a, version, s),
    }
}

/// Fixed header, then the body; the body is measured first so the buffer grows once.
fn framed<B: Body, S: Sink>(first: u8, body: &B, version: ProtocolVersion, s: &mut S) {
    let mut c = Counter::default();
    body.write_body(version, &mut c);
    let len = c.0;
    s.reserve(1 + varint_len(len) + len);
    s.put_u8(first);
    s.put_varint(len);
    body.write_body(version, s);
}
