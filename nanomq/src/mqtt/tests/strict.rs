//! Every strictness rule, with the exact error variant and the reason code it closes with.

use super::{decode_all, frame, ALL};
use crate::mqtt::*;

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn error(bytes: &[u8], v: ProtocolVersion) -> DecodeError {
    match decode_all(bytes, v) {
        Err(e) => e,
        Ok(p) => panic!("{v:?} {bytes:02x?} decoded as {p:?}"),
    }
}

fn malformed(bytes: &[u8], v: ProtocolVersion) {
    let e = error(bytes, v);
    assert!(
        matches!(e, DecodeError::Malformed(_)),
        "{v:?} {bytes:02x?}: {e:?}"
    );
    assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
}

fn protocol(bytes: &[u8], v: ProtocolVersion) {
    let e = error(bytes, v);
    assert!(
        matches!(e, DecodeError::Protocol(_)),
        "{v:?} {bytes:02x?}: {e:?}"
    );
    assert_eq!(e.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

fn topic_invalid(bytes: &[u8], v: ProtocolVersion) {
    let e = error(bytes, v);
    assert_eq!(e, DecodeError::TopicNameInvalid, "{v:?} {bytes:02x?}");
    assert_eq!(e.reason_code(), ReasonCode::TOPIC_NAME_INVALID);
}

fn ok(bytes: &[u8], v: ProtocolVersion) -> Packet {
    match decode_all(bytes, v) {
        Ok(Some(p)) => p,
        other => panic!("{v:?} {bytes:02x?}: {other:?}"),
    }
}

/// QoS 0 v5 PUBLISH to "t" with the given property bytes and payload "x".
fn publish_v5(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1, b't', props.len() as u8];
    body.extend_from_slice(props);
    body.push(b'x');
    frame(0x30, &body)
}

/// v5 CONNECT, client id "c", with the given property bytes.
fn connect_v5(props: &[u8]) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT\x05\x02\x00\x3C".to_vec();
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    body.extend_from_slice(b"\x00\x01c");
    frame(0x10, &body)
}

/// v5 CONNACK with the given property bytes.
fn connack_v5(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0, props.len() as u8];
    body.extend_from_slice(props);
    frame(0x20, &body)
}

/// 3.1.1 CONNECT with `flags` and `tail` after the client id "c".
fn connect_v311(flags: u8, tail: &[u8]) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT\x04".to_vec();
    body.extend_from_slice(&[flags, 0, 60, 0, 1, b'c']);
    body.extend_from_slice(tail);
    frame(0x10, &body)
}

#[test]
fn reserved_fixed_header_flags_are_malformed() {
    for v in ALL {
        malformed(&[0x21, 2, 0, 0], v);
        malformed(&[0x41, 2, 0, 1], v);
        malformed(&[0x60, 2, 0, 1], v);
        malformed(&[0x72, 2, 0, 1], v);
        malformed(&frame(0x80, b"\x00\x01\x00\x01a\x00"), v);
        malformed(&frame(0xA0, b"\x00\x01\x00\x01a"), v);
        malformed(&[0xC1, 0], v);
        malformed(&[0xE8, 0], v);
        malformed(&frame(0x11, b"\x00\x04MQTT\x04\x02\x00\x3C\x00\x01c"), v);
    }
    malformed(&[0x6A, 2, 0, 1], V311);
    // MQTT 3.1 clients set DUP when they resend a PUBREL.
    ok(&[0x6A, 2, 0, 1], ProtocolVersion::V31);
}

#[test]
fn packet_type_0_and_auth_before_v5_are_malformed() {
    for v in ALL {
        malformed(&[0x00, 0], v);
    }
    malformed(&[0xF0, 0], ProtocolVersion::V31);
    malformed(&[0xF0, 0], V311);
    assert_eq!(ok(&[0xF0, 0], V5), Packet::Auth(Auth::default()));
}

#[test]
fn length_and_content_must_agree() {
    for v in ALL {
        malformed(&[0xC0, 1, 0], v);
        malformed(&[0x40, 1, 0], v);
        malformed(&frame(0x82, b"\x00\x01\x00\x05ab"), v);
        malformed(&frame(0x30, b"\x00"), v);
        let unsuback: &[u8] = if v.is_v5() { &[0, 1] } else { &[0, 1, 0] };
        malformed(&frame(0xB0, unsuback), v);
    }
    malformed(&[0x40, 3, 0, 1, 0], V311);
    malformed(&[0xE0, 1, 0], V311);
    malformed(&connect_v311(0x02, b"junk"), V311);
    // Property length runs past the packet; trailing bytes after a v5 ack's properties.
    malformed(&[0x40, 4, 0, 1, 0, 5], V5);
    malformed(&[0x40, 5, 0, 1, 0, 0, 0], V5);
    malformed(&[0x20, 2, 0, 0], V5);
}

#[test]
fn strings_must_be_valid_utf8_without_nul() {
    for v in ALL {
        malformed(&frame(0x30, b"\x00\x02\xC3\x28"), v);
        malformed(&frame(0x30, b"\x00\x03a\x00b"), v);
        malformed(&frame(0x82, b"\x00\x01\x00\x02\xFF\xFE\x00"), v);
    }
    malformed(&connect_v311(0x82, b"\x00\x02\xED\xA0"), V311);
    // User property value with U+0000.
    malformed(&publish_v5(b"\x26\x00\x01k\x00\x01\x00"), V5);
}

#[test]
fn publish_qos_3_and_dup_on_qos_0_are_malformed() {
    for v in ALL {
        malformed(&frame(0x36, b"\x00\x01t\x00\x01"), v);
        malformed(&frame(0x38, b"\x00\x01t"), v);
    }
}

#[test]
fn packet_id_zero_is_a_protocol_error() {
    for v in ALL {
        let props: &[u8] = if v.is_v5() { &[0] } else { &[] };
        let mut publish = b"\x00\x01t\x00\x00".to_vec();
        publish.extend_from_slice(props);
        protocol(&frame(0x32, &publish), v);
        let mut subscribe = vec![0, 0];
        subscribe.extend_from_slice(props);
        subscribe.extend_from_slice(b"\x00\x01a\x00");
        protocol(&frame(0x82, &subscribe), v);
        protocol(&[0x40, 2, 0, 0], v);
        protocol(&[0x62, 2, 0, 0], v);
    }
    protocol(&[0xB0, 2, 0, 0], V311);
}

#[test]
fn wildcards_in_topic_names_are_invalid() {
    for v in ALL {
        topic_invalid(&frame(0x30, b"\x00\x03a/+"), v);
        topic_invalid(&frame(0x30, b"\x00\x03a/#"), v);
    }
    topic_invalid(&connect_v311(0x06, b"\x00\x03a/#\x00\x00"), V311);
    topic_invalid(&connect_v311(0x06, b"\x00\x00\x00\x00"), V311);
}

#[test]
fn empty_topic_needs_a_topic_alias() {
    topic_invalid(&frame(0x30, b"\x00\x00"), V311);
    topic_invalid(&frame(0x30, b"\x00\x00"), ProtocolVersion::V31);
    protocol(&frame(0x30, b"\x00\x00\x00"), V5);
    let Packet::Publish(p) = ok(&frame(0x30, b"\x00\x00\x03\x23\x00\x01"), V5) else {
        panic!("PUBLISH")
    };
    assert_eq!((p.topic.as_str(), p.properties.topic_alias), ("", Some(1)));
}

#[test]
fn subscribe_and_unsubscribe_need_a_filter() {
    protocol(&frame(0x82, b"\x00\x01"), V311);
    protocol(&frame(0x82, b"\x00\x01\x00"), V5);
    protocol(&frame(0xA2, b"\x00\x01"), V311);
    protocol(&frame(0xA2, b"\x00\x01\x00"), V5);
    protocol(&frame(0x90, b"\x00\x01"), V311);
    protocol(&frame(0xB0, b"\x00\x01\x00"), V5);
}

#[test]
fn subscription_options_are_checked() {
    malformed(&frame(0x82, b"\x00\x01\x00\x00\x01a\x40"), V5);
    malformed(&frame(0x82, b"\x00\x01\x00\x00\x01a\x80"), V5);
    // Maximum QoS 3 is a Protocol Error in MQTT 5 (3.8.3.1), malformed in 3.1.1.
    protocol(&frame(0x82, b"\x00\x01\x00\x00\x01a\x03"), V5);
    protocol(&frame(0x82, b"\x00\x01\x00\x00\x01a\x30"), V5);
    for bits in [0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x03] {
        malformed(&frame(0x82, &[0, 1, 0, 1, b'a', bits]), V311);
    }
    let Packet::Subscribe(s) = ok(&frame(0x82, b"\x00\x01\x00\x00\x01a\x2E"), V5) else {
        panic!("SUBSCRIBE")
    };
    let o = s.filters[0].1;
    assert_eq!(
        (o.qos, o.no_local, o.retain_as_published),
        (QoS::ExactlyOnce, true, true)
    );
    assert_eq!(o.retain_handling, RetainHandling::Never);
}

#[test]
fn connect_flags_are_checked() {
    malformed(&connect_v311(0x03, b""), V311);
    malformed(&connect_v311(0x0A, b""), V311);
    malformed(&connect_v311(0x22, b""), V311);
    malformed(&connect_v311(0x1E, b"\x00\x01w\x00\x00"), V311);
    malformed(&connect_v311(0x42, b"\x00\x01p"), V311);
    let v31 = frame(0x10, b"\x00\x06MQIsdp\x03\x42\x00\x3C\x00\x01c\x00\x01p");
    malformed(&v31, V311);
    // v5 allows a password without a user name.
    let body = b"\x00\x04MQTT\x05\x42\x00\x3C\x00\x00\x01c\x00\x01p".to_vec();
    let Packet::Connect(c) = ok(&frame(0x10, &body), V311) else {
        panic!("CONNECT")
    };
    assert_eq!((c.username, c.password.as_deref()), (None, Some(&b"p"[..])));
    // Authentication data needs a method.
    protocol(&connect_v5(b"\x16\x00\x01x"), V311);
}

#[test]
fn unknown_protocols_are_unsupported() {
    for (name, level) in [
        (&b"MQTT"[..], 6),
        (b"MQTT", 3),
        (b"MQIsdp", 4),
        (b"HELLO", 4),
    ] {
        let mut body = vec![0, name.len() as u8];
        body.extend_from_slice(name);
        body.extend_from_slice(&[level, 0x02, 0, 60, 0, 1, b'c']);
        let e = error(&frame(0x10, &body), V5);
        let expected_name = String::from_utf8(name.to_vec()).expect("ascii");
        assert_eq!(
            e,
            DecodeError::UnsupportedProtocol {
                name: expected_name,
                level
            }
        );
        assert_eq!(e.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
    }
}

#[test]
fn properties_are_checked() {
    malformed(&publish_v5(b"\x05\x00"), V5);
    malformed(&publish_v5(b"\x80\x01\x00"), V5);
    // A property not valid for the packet type makes it malformed (2.2.2.2).
    malformed(&publish_v5(b"\x11\x00\x00\x00\x01"), V5);
    malformed(&connect_v5(b"\x23\x00\x01"), V5);
    protocol(&publish_v5(b"\x02\x00\x00\x00\x01\x02\x00\x00\x00\x01"), V5);
    // User Property always repeats; Subscription Identifier only in PUBLISH.
    ok(
        &publish_v5(b"\x26\x00\x01k\x00\x01v\x26\x00\x01k\x00\x01v"),
        V5,
    );
    ok(&publish_v5(b"\x0B\x01\x0B\x02"), V5);
    protocol(
        &frame(0x82, b"\x00\x01\x04\x0B\x01\x0B\x02\x00\x01a\x00"),
        V5,
    );
    protocol(&publish_v5(b"\x0B\x00"), V5);
    malformed(&publish_v5(b"\x0B\xFF\xFF\xFF\xFF\x01"), V5);
    // A property length that overruns the packet, and a property that overruns its length.
    malformed(&frame(0x30, b"\x00\x01t\x09\x01\x01"), V5);
    malformed(&publish_v5(b"\x02\x00\x00"), V5);
    protocol(&connect_v5(b"\x21\x00\x00"), V5);
    protocol(&connect_v5(b"\x27\x00\x00\x00\x00"), V5);
    // Topic Alias 0 decodes; the connection answers it with 0x94 (3.3.4).
    let Packet::Publish(p) = ok(&publish_v5(b"\x23\x00\x00"), V5) else {
        panic!("PUBLISH")
    };
    assert_eq!(p.properties.topic_alias, Some(0));
    protocol(&publish_v5(b"\x01\x02"), V5);
    protocol(&connect_v5(b"\x17\x02"), V5);
    protocol(&connect_v5(b"\x19\x02"), V5);
    for id in [0x24, 0x25, 0x28, 0x29, 0x2A] {
        protocol(&connack_v5(&[id, 2]), V5);
        ok(&connack_v5(&[id, 1]), V5);
    }
}

#[test]
fn reason_codes_must_belong_to_their_packet() {
    protocol(&[0x40, 3, 0, 1, 0x01], V5);
    protocol(&[0x62, 3, 0, 1, 0x10], V5);
    protocol(&[0xE0, 1, 0x18], V5);
    protocol(&[0xF0, 1, 0x04], V5);
    protocol(&[0x20, 3, 0, 0x01, 0], V5);
    protocol(&[0x20, 2, 0, 6], V311);
    protocol(&frame(0x90, b"\x00\x01\x00\x03"), V5);
    protocol(&frame(0x90, b"\x00\x01\x81"), V311);
    malformed(&[0x20, 2, 2, 0], V311);
}
