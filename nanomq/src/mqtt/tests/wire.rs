//! Byte-exact encodings: spec examples, the v5 short forms, and the 3.x mappings of reason codes.

use bytes::Bytes;

use super::round_trip::{connack_props, reason_props};
use super::{decode_all, encode_to_vec, frame, round_trip};
use crate::mqtt::*;

#[test]
fn spec_v311_connect_example() {
    // Spec 3.1.2.10 example flags 0xCE: user name, password, will QoS 1, will, clean session.
    let mut expected = vec![0x10, 32, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xCE, 0, 10];
    expected.extend_from_slice(b"\x00\x06client\x00\x01w\x00\x03bye\x00\x01u\x00\x01p");
    let connect = Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V311,
        clean_start: true,
        keep_alive: 10,
        properties: Properties::default(),
        client_id: "client".into(),
        will: Some(Will {
            topic: "w".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            ..Will::default()
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
    }));
    assert_eq!(round_trip(connect, ProtocolVersion::V311), expected);
}

#[test]
fn v31_connect_decodes() {
    let mut body = b"\x00\x06MQIsdp\x03\x02\x00\x3C".to_vec();
    body.extend_from_slice(b"\x00\x03abc");
    let packet = decode_all(&frame(0x10, &body), ProtocolVersion::V311)
        .unwrap()
        .unwrap();
    let Packet::Connect(c) = &packet else {
        panic!("expected CONNECT")
    };
    assert_eq!(c.protocol, ProtocolVersion::V31);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.client_id, "abc");
    assert_eq!(
        encode_to_vec(&packet, ProtocolVersion::V5),
        frame(0x10, &body),
        "CONNECT keeps its own version"
    );
}

#[test]
fn spec_v5_publish_with_properties() {
    let expected = [
        0x32, 0x14, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, // topic, packet id 10
        0x0A, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x3C, 0x23, 0x00, 0x05, // properties
        b'h', b'i',
    ];
    let publish = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: "a/b".into(),
        packet_id: 10,
        properties: Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            topic_alias: Some(5),
            ..Properties::default()
        },
        payload: Bytes::from_static(b"hi"),
        ..Publish::default()
    });
    assert_eq!(round_trip(publish, ProtocolVersion::V5), expected);
}

#[test]
fn v5_acks_use_the_short_forms() {
    let v = ProtocolVersion::V5;
    let ack = |reason, properties| PubAck {
        packet_id: 1,
        reason,
        properties,
    };
    assert_eq!(
        round_trip(
            Packet::PubAck(ack(ReasonCode::SUCCESS, Properties::default())),
            v
        ),
        [0x40, 2, 0, 1]
    );
    assert_eq!(
        round_trip(
            Packet::PubRel(ack(ReasonCode::SUCCESS, Properties::default())),
            v
        ),
        [0x62, 2, 0, 1]
    );
    assert_eq!(
        round_trip(
            Packet::PubRec(ack(
                ReasonCode::NO_MATCHING_SUBSCRIBERS,
                Properties::default()
            )),
            v
        ),
        [0x50, 3, 0, 1, 0x10]
    );
    let with_props = Properties {
        reason_string: Some("x".into()),
        ..Properties::default()
    };
    assert_eq!(
        round_trip(Packet::PubComp(ack(ReasonCode::SUCCESS, with_props)), v),
        [0x70, 8, 0, 1, 0, 4, 0x1F, 0, 1, b'x']
    );
    // The long forms decode too.
    assert_eq!(
        decode_all(&[0x40, 3, 0, 1, 0], v),
        Ok(Some(Packet::PubAck(ack(
            ReasonCode::SUCCESS,
            Properties::default()
        ))))
    );
    assert_eq!(
        decode_all(&[0x40, 4, 0, 1, 0, 0], v),
        Ok(Some(Packet::PubAck(ack(
            ReasonCode::SUCCESS,
            Properties::default()
        ))))
    );
    // 3.x acks carry only the packet id.
    let failed = Packet::PubAck(ack(ReasonCode::QUOTA_EXCEEDED, Properties::default()));
    assert_eq!(
        encode_to_vec(&failed, ProtocolVersion::V311),
        [0x40, 2, 0, 1]
    );
}

#[test]
fn v5_disconnect_and_auth_short_forms() {
    let v = ProtocolVersion::V5;
    assert_eq!(
        round_trip(Packet::Disconnect(Disconnect::default()), v),
        [0xE0, 0]
    );
    assert_eq!(round_trip(Packet::Auth(Auth::default()), v), [0xF0, 0]);
    let shutting_down = Disconnect {
        reason: ReasonCode::SERVER_SHUTTING_DOWN,
        ..Disconnect::default()
    };
    assert_eq!(
        round_trip(Packet::Disconnect(shutting_down), v),
        [0xE0, 1, 0x8B]
    );
    assert_eq!(
        decode_all(&[0xE0, 2, 0, 0], v),
        Ok(Some(Packet::Disconnect(Disconnect::default())))
    );
    let tidy = Disconnect {
        reason: ReasonCode::SERVER_SHUTTING_DOWN,
        ..Disconnect::default()
    };
    assert_eq!(
        encode_to_vec(&Packet::Disconnect(tidy), ProtocolVersion::V311),
        [0xE0, 0]
    );
}

#[test]
fn v3_connack_maps_reason_codes_both_ways() {
    let cases = [
        (0x00, 0, 0x00),
        (0x84, 1, 0x84),
        (0x85, 2, 0x85),
        (0x86, 4, 0x86),
        (0x87, 5, 0x87),
        (0x80, 3, 0x88),
        (0x88, 3, 0x88),
        (0x89, 3, 0x88),
        (0x9F, 3, 0x88),
    ];
    for (reason, code, back) in cases {
        let ack = Packet::ConnAck(ConnAck {
            session_present: false,
            reason: ReasonCode(reason),
            properties: connack_props(),
        });
        let bytes = encode_to_vec(&ack, ProtocolVersion::V311);
        assert_eq!(bytes, [0x20, 2, 0, code], "reason {reason:#x}");
        let Ok(Some(Packet::ConnAck(decoded))) = decode_all(&bytes, ProtocolVersion::V311) else {
            panic!("CONNACK")
        };
        assert_eq!(decoded.reason, ReasonCode(back));
    }
    let resumed = Packet::ConnAck(ConnAck {
        session_present: true,
        ..ConnAck::default()
    });
    assert_eq!(
        encode_to_vec(&resumed, ProtocolVersion::V311),
        [0x20, 2, 1, 0]
    );
    assert_eq!(
        encode_to_vec(&resumed, ProtocolVersion::V31),
        [0x20, 2, 0, 0],
        "3.1 has no session present"
    );
}

#[test]
fn v3_suback_sends_every_failure_as_0x80_and_unsuback_has_no_payload() {
    let suback = Packet::SubAck(SubAck {
        packet_id: 3,
        properties: Properties::default(),
        reasons: vec![
            ReasonCode::GRANTED_QOS_2,
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode::QUOTA_EXCEEDED,
        ],
    });
    assert_eq!(
        encode_to_vec(&suback, ProtocolVersion::V311),
        [0x90, 5, 0, 3, 2, 0x80, 0x80]
    );
    let unsuback = Packet::UnsubAck(UnsubAck {
        packet_id: 3,
        properties: reason_props(),
        reasons: vec![ReasonCode::SUCCESS],
    });
    assert_eq!(
        encode_to_vec(&unsuback, ProtocolVersion::V31),
        [0xB0, 2, 0, 3]
    );
}
