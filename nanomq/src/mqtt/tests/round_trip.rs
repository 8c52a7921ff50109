//! Every packet in every version it exists in, with every property its packet allows, plus
//! byte-exact checks against hand-written encodings.

use bytes::Bytes;

use super::{decode_all, encode_to_vec, frame, round_trip, ALL};
use crate::mqtt::*;

fn user() -> Vec<(String, String)> {
    vec![
        ("region".into(), "eu".into()),
        ("region".into(), "ü".into()),
    ]
}

fn connect_props() -> Properties {
    Properties {
        session_expiry_interval: Some(3600),
        authentication_method: Some("SCRAM-SHA-1".into()),
        authentication_data: Some(Bytes::from_static(b"client-first")),
        request_problem_information: Some(0),
        request_response_information: Some(1),
        receive_maximum: Some(20),
        topic_alias_maximum: Some(10),
        user_properties: user(),
        maximum_packet_size: Some(65_536),
        ..Properties::default()
    }
}

fn will_props() -> Properties {
    Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(120),
        content_type: Some("text/plain".into()),
        response_topic: Some("replies/1".into()),
        correlation_data: Some(Bytes::from_static(&[1, 2, 3])),
        will_delay_interval: Some(30),
        user_properties: user(),
        ..Properties::default()
    }
}

fn connack_props() -> Properties {
    Properties {
        session_expiry_interval: Some(0),
        assigned_client_identifier: Some("auto-1".into()),
        server_keep_alive: Some(60),
        authentication_method: Some("SCRAM-SHA-1".into()),
        authentication_data: Some(Bytes::from_static(b"server-first")),
        response_information: Some("resp/".into()),
        server_reference: Some("other:1883".into()),
        reason_string: Some("welcome".into()),
        receive_maximum: Some(100),
        topic_alias_maximum: Some(5),
        maximum_qos: Some(1),
        retain_available: Some(0),
        user_properties: user(),
        maximum_packet_size: Some(1 << 20),
        wildcard_subscription_available: Some(1),
        subscription_identifier_available: Some(0),
        shared_subscription_available: Some(1),
        ..Properties::default()
    }
}

fn publish_props() -> Properties {
    Properties {
        payload_format_indicator: Some(0),
        message_expiry_interval: Some(300),
        content_type: Some("application/json".into()),
        response_topic: Some("replies/2".into()),
        correlation_data: Some(Bytes::from_static(b"corr")),
        subscription_identifiers: vec![1, 268_435_455, 42],
        topic_alias: Some(3),
        user_properties: user(),
        ..Properties::default()
    }
}

fn reason_props() -> Properties {
    Properties {
        reason_string: Some("because".into()),
        user_properties: user(),
        ..Properties::default()
    }
}

fn packets(v: ProtocolVersion) -> Vec<Packet> {
    let v5 = v.is_v5();
    let props = |p: Properties| if v5 { p } else { Properties::default() };
    let mut out = vec![
        Packet::Connect(Box::new(Connect {
            protocol: v,
            clean_start: true,
            keep_alive: 30,
            properties: props(connect_props()),
            client_id: "client-ü".into(),
            will: Some(Will {
                topic: "status/client".into(),
                payload: Bytes::from_static(b"offline"),
                qos: QoS::ExactlyOnce,
                retain: true,
                properties: props(will_props()),
            }),
            username: Some("alice".into()),
            password: Some(Bytes::from_static(&[0, 0xFF, 7])),
        })),
        Packet::Connect(Box::new(Connect {
            protocol: v,
            client_id: "bare".into(),
            ..Connect::default()
        })),
        Packet::ConnAck(ConnAck {
            session_present: v != ProtocolVersion::V31,
            reason: ReasonCode::SUCCESS,
            properties: props(connack_props()),
        }),
        Packet::PubAck(PubAck {
            packet_id: 1,
            ..PubAck::default()
        }),
        Packet::PubRec(PubAck {
            packet_id: 2,
            ..PubAck::default()
        }),
        Packet::PubRel(PubAck {
            packet_id: 3,
            ..PubAck::default()
        }),
        Packet::PubComp(PubAck {
            packet_id: 65_535,
            ..PubAck::default()
        }),
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            properties: props(Properties {
                subscription_identifiers: vec![99],
                user_properties: user(),
                ..Properties::default()
            }),
            filters: vec![
                (
                    "a/+/c".into(),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..Default::default()
                    },
                ),
                (
                    "#".into(),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        ..Default::default()
                    },
                ),
            ],
        }),
        Packet::SubAck(SubAck {
            packet_id: 10,
            properties: props(reason_props()),
            reasons: vec![
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::GRANTED_QOS_2,
                ReasonCode(0x80),
            ],
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 11,
            properties: props(Properties {
                user_properties: user(),
                ..Properties::default()
            }),
            filters: vec!["a/+/c".into(), "#".into()],
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: 11,
            properties: props(reason_props()),
            reasons: if v5 {
                vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
            } else {
                vec![]
            },
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
    ];
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        for (retain, payload) in [(false, Bytes::new()), (true, Bytes::from_static(b"21.5"))] {
            let mut properties = props(publish_props());
            properties
                .subscription_identifiers
                .truncate(usize::from(retain) + 1);
            out.push(Packet::Publish(Publish {
                dup: qos != QoS::AtMostOnce && retain,
                qos,
                retain,
                topic: "sensors/temp/€".into(),
                packet_id: if qos == QoS::AtMostOnce { 0 } else { 4242 },
                properties,
                payload,
            }));
        }
    }
    for (code, session_present) in [
        (ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, false),
        (ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, false),
        (ReasonCode::SERVER_UNAVAILABLE, false),
        (ReasonCode::BAD_USER_NAME_OR_PASSWORD, false),
        (ReasonCode::NOT_AUTHORIZED, false),
    ] {
        out.push(Packet::ConnAck(ConnAck {
            session_present,
            reason: code,
            properties: Properties::default(),
        }));
    }
    if v5 {
        out.extend(v5_only());
    }
    out
}

fn v5_only() -> Vec<Packet> {
    let mut out = vec![
        Packet::Publish(Publish {
            topic: String::new(),
            properties: Properties {
                topic_alias: Some(9),
                ..Properties::default()
            },
            payload: Bytes::from_static(b"aliased"),
            ..Publish::default()
        }),
        Packet::Subscribe(Subscribe {
            packet_id: 12,
            properties: Properties::default(),
            filters: vec![
                (
                    "$share/g/x".into(),
                    SubscriptionOptions {
                        qos: QoS::AtMostOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::Never,
                    },
                ),
                (
                    "y".into(),
                    SubscriptionOptions {
                        retain_handling: RetainHandling::OnNewSubscribe,
                        ..Default::default()
                    },
                ),
            ],
        }),
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::SERVER_SHUTTING_DOWN,
            properties: Properties::default(),
        }),
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::DISCONNECT_WITH_WILL,
            properties: Properties {
                session_expiry_interval: Some(10),
                server_reference: Some("elsewhere".into()),
                ..reason_props()
            },
        }),
        Packet::Auth(Auth::default()),
        Packet::Auth(Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Properties {
                authentication_method: Some("SCRAM-SHA-1".into()),
                authentication_data: Some(Bytes::from_static(b"final")),
                ..reason_props()
            },
        }),
        Packet::Auth(Auth {
            reason: ReasonCode::RE_AUTHENTICATE,
            properties: Properties::default(),
        }),
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason: ReasonCode::BANNED,
            properties: reason_props(),
        }),
    ];
    for (reason, properties) in [
        (ReasonCode::SUCCESS, reason_props()),
        (ReasonCode::NO_MATCHING_SUBSCRIBERS, Properties::default()),
        (ReasonCode::QUOTA_EXCEEDED, reason_props()),
    ] {
        let ack = PubAck {
            packet_id: 5,
            reason,
            properties,
        };
        out.push(Packet::PubAck(ack.clone()));
        out.push(Packet::PubRec(ack));
    }
    let release = PubAck {
        packet_id: 6,
        reason: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        properties: reason_props(),
    };
    out.push(Packet::PubRel(release.clone()));
    out.push(Packet::PubComp(release));
    out
}

#[test]
fn every_packet_round_trips_in_every_version() {
    for v in ALL {
        for packet in packets(v) {
            round_trip(packet, v);
        }
    }
}

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

#[test]
fn encoding_writes_only_the_properties_a_packet_allows() {
    let ack = PubAck {
        packet_id: 1,
        reason: ReasonCode::SUCCESS,
        properties: Properties {
            topic_alias: Some(4),
            session_expiry_interval: Some(9),
            ..Properties::default()
        },
    };
    assert_eq!(
        encode_to_vec(&Packet::PubAck(ack), ProtocolVersion::V5),
        [0x40, 2, 0, 1]
    );
    let subscribe = Subscribe {
        packet_id: 1,
        properties: Properties {
            subscription_identifiers: vec![5, 6],
            ..Properties::default()
        },
        filters: vec![("a".into(), SubscriptionOptions::default())],
    };
    let bytes = encode_to_vec(&Packet::Subscribe(subscribe), ProtocolVersion::V5);
    let Ok(Some(Packet::Subscribe(decoded))) = decode_all(&bytes, ProtocolVersion::V5) else {
        panic!("SUBSCRIBE")
    };
    assert_eq!(
        decoded.properties.subscription_identifiers,
        [5],
        "SUBSCRIBE carries one identifier"
    );
}

#[test]
fn outgoing_publish_replaces_the_per_subscriber_fields() {
    let shared = Publish {
        qos: QoS::ExactlyOnce,
        retain: true,
        topic: "t".into(),
        packet_id: 1,
        properties: publish_props(),
        payload: Bytes::from_static(b"shared"),
        dup: false,
    };
    let ids = [77];
    let outgoing = OutgoingPublish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "t",
        packet_id: 900,
        topic_alias: None,
        message_expiry_interval: Some(10),
        subscription_identifiers: &ids,
        properties: &shared.properties,
        payload: &shared.payload,
    };
    let mut out = bytes::BytesMut::new();
    outgoing.encode(ProtocolVersion::V5, &mut out);
    assert_eq!(out.len(), outgoing.encoded_len(ProtocolVersion::V5));
    let Ok(Some(Packet::Publish(got))) = decode_all(&out, ProtocolVersion::V5) else {
        panic!("PUBLISH")
    };
    let expected = Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: false,
        packet_id: 900,
        properties: Properties {
            topic_alias: None,
            message_expiry_interval: Some(10),
            subscription_identifiers: vec![77],
            ..publish_props()
        },
        ..shared.clone()
    };
    assert_eq!(got, expected);
    // 3.x: no properties at all.
    let mut out = bytes::BytesMut::new();
    outgoing.encode(ProtocolVersion::V311, &mut out);
    assert_eq!(&out[..], b"\x3a\x0b\x00\x01t\x03\x84shared");
    assert_eq!(out.len(), outgoing.encoded_len(ProtocolVersion::V311));
}
