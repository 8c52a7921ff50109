//! Every packet in every version it exists in, with every property its packet allows.

use bytes::Bytes;

use super::{decode_all, encode_to_vec, round_trip, ALL};
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

pub(super) fn connack_props() -> Properties {
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

pub(super) fn reason_props() -> Properties {
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
    // DUP never goes out with QoS 0.
    let downgraded = OutgoingPublish {
        qos: QoS::AtMostOnce,
        ..outgoing
    };
    let mut out = bytes::BytesMut::new();
    downgraded.encode(ProtocolVersion::V311, &mut out);
    assert_eq!(out[0], 0x30);
    // 3.x: no properties at all.
    let mut out = bytes::BytesMut::new();
    outgoing.encode(ProtocolVersion::V311, &mut out);
    assert_eq!(&out[..], b"\x3a\x0b\x00\x01t\x03\x84shared");
    assert_eq!(out.len(), outgoing.encoded_len(ProtocolVersion::V311));
}
