//! The fuzzer's seed corpus: one valid packet (or stream) per file in `fuzz/corpus/decode/`.
//! Regenerate with `NANOMQ_WRITE_SEEDS=1 cargo test -p nanomq --lib committed_seeds`.

use std::path::Path;

use bytes::Bytes;

use super::{encode_to_vec, ALL};
use crate::mqtt::*;

fn seeds() -> Vec<(&'static str, Packet, ProtocolVersion)> {
    use ProtocolVersion::{V31, V311, V5};
    let user = vec![("k".to_owned(), "v".to_owned())];
    vec![
        (
            "connect-v31",
            Packet::Connect(Box::new(Connect {
                protocol: V31,
                clean_start: true,
                keep_alive: 60,
                client_id: "c31".into(),
                ..Connect::default()
            })),
            V31,
        ),
        (
            "connect-v311-will-auth",
            Packet::Connect(Box::new(Connect {
                protocol: V311,
                keep_alive: 10,
                client_id: "client".into(),
                will: Some(Will {
                    topic: "w".into(),
                    payload: Bytes::from_static(b"bye"),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    properties: Properties::default(),
                }),
                username: Some("u".into()),
                password: Some(Bytes::from_static(b"p")),
                ..Connect::default()
            })),
            V311,
        ),
        (
            "connect-v5-props",
            Packet::Connect(Box::new(Connect {
                protocol: V5,
                clean_start: true,
                properties: Properties {
                    session_expiry_interval: Some(60),
                    receive_maximum: Some(10),
                    maximum_packet_size: Some(4096),
                    topic_alias_maximum: Some(4),
                    user_properties: user.clone(),
                    ..Properties::default()
                },
                client_id: "c5".into(),
                will: Some(Will {
                    topic: "w".into(),
                    payload: Bytes::from_static(b"x"),
                    properties: Properties {
                        will_delay_interval: Some(5),
                        content_type: Some("t".into()),
                        ..Properties::default()
                    },
                    ..Will::default()
                }),
                ..Connect::default()
            })),
            V5,
        ),
        (
            "connack-v5",
            Packet::ConnAck(ConnAck {
                session_present: true,
                reason: ReasonCode::SUCCESS,
                properties: Properties {
                    assigned_client_identifier: Some("id".into()),
                    maximum_qos: Some(1),
                    retain_available: Some(1),
                    server_keep_alive: Some(30),
                    ..Properties::default()
                },
            }),
            V5,
        ),
        (
            "publish-v311-qos1",
            Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                topic: "a/b".into(),
                packet_id: 1,
                payload: Bytes::from_static(b"hello"),
                ..Publish::default()
            }),
            V311,
        ),
        (
            "publish-v5-props",
            Packet::Publish(Publish {
                qos: QoS::ExactlyOnce,
                retain: true,
                topic: "a/b".into(),
                packet_id: 2,
                properties: Properties {
                    payload_format_indicator: Some(1),
                    message_expiry_interval: Some(60),
                    topic_alias: Some(1),
                    response_topic: Some("r".into()),
                    correlation_data: Some(Bytes::from_static(b"c")),
                    subscription_identifiers: vec![1, 300],
                    user_properties: user.clone(),
                    ..Properties::default()
                },
                payload: Bytes::from_static(b"{}"),
                ..Publish::default()
            }),
            V5,
        ),
        (
            "puback-v5-reason",
            Packet::PubAck(PubAck {
                packet_id: 3,
                reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
                properties: Properties {
                    reason_string: Some("none".into()),
                    ..Properties::default()
                },
            }),
            V5,
        ),
        (
            "pubrel-v311",
            Packet::PubRel(PubAck {
                packet_id: 4,
                ..PubAck::default()
            }),
            V311,
        ),
        (
            "subscribe-v5",
            Packet::Subscribe(Subscribe {
                packet_id: 5,
                properties: Properties {
                    subscription_identifiers: vec![7],
                    ..Properties::default()
                },
                filters: vec![
                    (
                        "a/+".into(),
                        SubscriptionOptions {
                            qos: QoS::AtLeastOnce,
                            no_local: true,
                            retain_as_published: true,
                            retain_handling: RetainHandling::OnNewSubscribe,
                        },
                    ),
                    ("#".into(), SubscriptionOptions::default()),
                ],
            }),
            V5,
        ),
        (
            "suback-v311",
            Packet::SubAck(SubAck {
                packet_id: 5,
                properties: Properties::default(),
                reasons: vec![ReasonCode::GRANTED_QOS_1, ReasonCode(0x80)],
            }),
            V311,
        ),
        (
            "unsubscribe-v5",
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 6,
                properties: Properties {
                    user_properties: user,
                    ..Properties::default()
                },
                filters: vec!["a/+".into()],
            }),
            V5,
        ),
        (
            "unsuback-v5",
            Packet::UnsubAck(UnsubAck {
                packet_id: 6,
                properties: Properties::default(),
                reasons: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
            }),
            V5,
        ),
        ("pingreq", Packet::PingReq, V311),
        (
            "disconnect-v5",
            Packet::Disconnect(Disconnect {
                reason: ReasonCode::DISCONNECT_WITH_WILL,
                properties: Properties {
                    session_expiry_interval: Some(0),
                    ..Properties::default()
                },
            }),
            V5,
        ),
        (
            "auth-v5",
            Packet::Auth(Auth {
                reason: ReasonCode::CONTINUE_AUTHENTICATION,
                properties: Properties {
                    authentication_method: Some("m".into()),
                    authentication_data: Some(Bytes::from_static(b"d")),
                    ..Properties::default()
                },
            }),
            V5,
        ),
    ]
}

fn corpus_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/decode"))
}

/// Every seed, plus one stream of several packets so the fuzzer starts with multi-packet input.
fn seed_files() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stream = Vec::new();
    for (name, packet, version) in seeds() {
        let bytes = encode_to_vec(&packet, version);
        if version == ProtocolVersion::V5 {
            stream.extend_from_slice(&bytes);
        }
        files.push((format!("{name}.bin"), bytes));
    }
    files.push(("stream-v5.bin".to_owned(), stream));
    files
}

/// Rewrites the seed files; run after changing the seeds.
fn write_seed_corpus() {
    std::fs::create_dir_all(corpus_dir()).expect("create corpus dir");
    for (name, bytes) in seed_files() {
        std::fs::write(corpus_dir().join(name), bytes).expect("write seed");
    }
}

#[test]
fn committed_seeds_match_the_codec() {
    if std::env::var_os("NANOMQ_WRITE_SEEDS").is_some() {
        write_seed_corpus();
    }
    for (name, bytes) in seed_files() {
        let committed = std::fs::read(corpus_dir().join(&name)).unwrap_or_default();
        assert_eq!(
            committed, bytes,
            "{name} is stale: rerun with NANOMQ_WRITE_SEEDS=1"
        );
        if !name.starts_with("stream") {
            let decodes = ALL
                .iter()
                .any(|&v| matches!(super::decode_all(&bytes, v), Ok(Some(_))));
            assert!(decodes, "{name} decodes in no version");
        }
    }
}
