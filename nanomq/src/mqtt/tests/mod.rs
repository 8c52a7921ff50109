//! Codec tests: round trips in every version, byte-exact spec examples, framing, and every
//! strictness rule with the exact error it must produce.

mod corpus;
mod round_trip;
mod strict;
mod wire;

use bytes::BytesMut;

use super::*;

const ALL: [ProtocolVersion; 3] = [
    ProtocolVersion::V31,
    ProtocolVersion::V311,
    ProtocolVersion::V5,
];

fn encode_to_vec(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out);
    assert_eq!(
        out.len(),
        packet.encoded_len(version),
        "encoded_len of {packet:?}"
    );
    out.to_vec()
}

fn decode_all(bytes: &[u8], version: ProtocolVersion) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, version, u32::MAX)?;
    if packet.is_some() {
        assert!(buf.is_empty(), "decode left {} bytes", buf.len());
    }
    Ok(packet)
}

/// Encodes, checks the length, decodes, and expects the same packet back.
fn round_trip(packet: Packet, version: ProtocolVersion) -> Vec<u8> {
    let bytes = encode_to_vec(&packet, version);
    let decoded = decode_all(&bytes, version);
    assert_eq!(decoded, Ok(Some(packet)), "{version:?} bytes {bytes:02x?}");
    bytes
}

/// A packet built from its first byte and body; the remaining length is computed.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    primitives::Sink::put_u8(&mut out, first);
    primitives::Sink::put_varint(&mut out, body.len());
    out.extend_from_slice(body);
    out.to_vec()
}

#[test]
fn pings_are_two_bytes() {
    for v in ALL {
        assert_eq!(round_trip(Packet::PingReq, v), [0xC0, 0x00]);
        assert_eq!(round_trip(Packet::PingResp, v), [0xD0, 0x00]);
    }
}

#[test]
fn feeding_byte_by_byte_yields_nothing_until_complete() {
    let publish = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: "sensors/temp".into(),
        packet_id: 7,
        properties: Properties {
            user_properties: vec![("k".into(), "v".into())],
            ..Properties::default()
        },
        payload: bytes::Bytes::from(vec![0x5A; 300]),
        ..Publish::default()
    });
    let bytes = encode_to_vec(&publish, ProtocolVersion::V5);
    assert!(bytes.len() > 300, "remaining length takes two bytes");
    let mut buf = BytesMut::new();
    for (i, byte) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        let got = decode(&mut buf, ProtocolVersion::V5, u32::MAX);
        if i + 1 < bytes.len() {
            assert_eq!(got, Ok(None), "after {} bytes", i + 1);
            assert_eq!(
                buf.len(),
                i + 1,
                "an incomplete packet must not be consumed"
            );
        } else {
            assert_eq!(got, Ok(Some(publish.clone())));
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn packets_in_one_buffer_decode_in_order() {
    let first = Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![("a/#".into(), SubscriptionOptions::default())],
        ..Subscribe::default()
    });
    let second = Packet::PingReq;
    let third = Packet::Disconnect(Disconnect::default());
    let mut buf = BytesMut::new();
    for p in [&first, &second, &third] {
        encode(p, ProtocolVersion::V311, &mut buf);
    }
    buf.extend_from_slice(&[0x30]);
    let v = ProtocolVersion::V311;
    assert_eq!(decode(&mut buf, v, 1024), Ok(Some(first)));
    assert_eq!(decode(&mut buf, v, 1024), Ok(Some(second)));
    assert_eq!(decode(&mut buf, v, 1024), Ok(Some(third)));
    assert_eq!(decode(&mut buf, v, 1024), Ok(None));
    assert_eq!(&buf[..], [0x30]);
}

#[test]
fn too_large_is_known_from_the_fixed_header_alone() {
    // PUBLISH announcing 16,384 bytes; not one byte of the body has arrived.
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x01][..]);
    let err = decode(&mut buf, ProtocolVersion::V5, 1024).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TooLarge {
            size: 16_388,
            max: 1024
        }
    );
    assert_eq!(err.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    assert_eq!(buf.len(), 4, "nothing consumed");
}

#[test]
fn max_packet_size_counts_the_whole_packet() {
    let bytes = frame(0xC0, &[]);
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(matches!(
        decode(&mut buf, ProtocolVersion::V5, 1),
        Err(DecodeError::TooLarge { size: 2, max: 1 })
    ));
    assert_eq!(
        decode(&mut buf, ProtocolVersion::V5, 2),
        Ok(Some(Packet::PingReq))
    );
}

#[test]
fn remaining_length_of_five_bytes_is_malformed() {
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF][..]);
    let err = decode(&mut buf, ProtocolVersion::V311, u32::MAX).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed(_)));
    assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    // Three continuation bytes so far: the fourth may still end it.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF][..]);
    assert_eq!(decode(&mut buf, ProtocolVersion::V311, u32::MAX), Ok(None));
}

#[test]
fn publish_payload_is_a_slice_of_the_read_buffer() {
    let packet = Packet::Publish(Publish {
        topic: "t".into(),
        payload: bytes::Bytes::from_static(b"payload bytes"),
        ..Publish::default()
    });
    let mut buf = BytesMut::from(&encode_to_vec(&packet, ProtocolVersion::V5)[..]);
    let range = buf.as_ptr_range();
    let Ok(Some(Packet::Publish(p))) = decode(&mut buf, ProtocolVersion::V5, 1024) else {
        panic!("expected a PUBLISH");
    };
    assert!(range.contains(&p.payload.as_ptr()), "payload was copied");
}
