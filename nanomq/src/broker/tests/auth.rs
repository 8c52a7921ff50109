//! Authentication and the ACL seen from clients, MQTT 5 and 3.1.1: CONNACK codes for bad
//! credentials and anonymous clients, denied PUBLISH at each QoS, denied SUBSCRIBE filters next
//! to granted ones, shared subscriptions, and wills. Real time, not the paused clock: password
//! verification runs on blocking threads.

use std::path::PathBuf;

use super::*;
use crate::auth::passwords::hash_password_with;
use crate::mqtt::{PubAck, Publish, SubAck};

const ACL: &str = "\
allow user:admin both #
deny  all        publish secret/#
allow all        publish public/#
allow all        publish will/ok
allow all        subscribe public/#
deny  all        subscribe never
allow all        subscribe jobs/#
default deny
";

/// A config with a password file (admin, alice) and [`ACL`] in a directory of its own.
fn auth_config(name: &str) -> (Config, PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("nanomq-broker-auth-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let users = format!(
        "admin:{}\nalice:{}\n",
        hash_password_with(b"admin-pw", 64, 1),
        hash_password_with(b"alice-pw", 64, 1)
    );
    std::fs::write(dir.join("passwd"), users).unwrap();
    std::fs::write(dir.join("acl"), ACL).unwrap();
    let mut config = Config::default();
    config.auth.password_file = Some(dir.join("passwd"));
    config.auth.acl_file = Some(dir.join("acl"));
    (config, dir)
}

fn login(version: ProtocolVersion, client_id: &str, user: Option<&str>, password: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        client_id: client_id.into(),
        username: user.map(str::to_owned),
        password: Some(Bytes::copy_from_slice(password.as_bytes())),
        ..Connect::default()
    }
}

fn publish(topic: &str, qos: QoS, packet_id: u16) -> Packet {
    Packet::Publish(Publish {
        qos,
        topic: topic.into(),
        packet_id,
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    })
}

async fn user(addr: SocketAddr, v: ProtocolVersion, id: &str, user: &str) -> Client {
    let (c, ack) = Client::connect(addr, login(v, id, Some(user), &format!("{user}-pw"))).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{user} connects");
    c
}

/// The next packet must be a PUBLISH on `topic`.
async fn expect_publish(c: &mut Client, topic: &str) {
    match c.recv().await {
        Some(Packet::Publish(p)) => assert_eq!(p.topic, topic),
        other => panic!("expected PUBLISH {topic}, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_credentials_and_anonymous_clients_are_refused() {
    let (config, dir) = auth_config("connect");
    let (addr, _stop) = start(config).await;
    for v in [ProtocolVersion::V5, ProtocolVersion::V311] {
        let cases = [
            (
                Some("alice"),
                "wrong",
                ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            ),
            (
                Some("mallory"),
                "alice-pw",
                ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            ),
            (None, "", ReasonCode::NOT_AUTHORIZED),
        ];
        for (name, password, reason) in cases {
            let mut c = login(v, "refused", name, password);
            if name.is_none() {
                c.password = None;
            }
            let (mut client, ack) = Client::connect(addr, c).await;
            // 3.1.1 return codes 4 and 5 decode to the same reason codes.
            assert_eq!(ack.reason, reason, "{v:?} {name:?}");
            assert_eq!(client.recv().await, None, "closed after the refusal");
        }
        let mut alice = user(addr, v, "alice-1", "alice").await;
        alice.send(Packet::PingReq).await;
        assert_eq!(alice.recv().await, Some(Packet::PingResp));
    }
    // The 3.1.1 bytes on the wire: return code 4, then 5.
    for (c, code) in [
        (login(ProtocolVersion::V311, "raw", Some("alice"), "x"), 4),
        (login(ProtocolVersion::V311, "raw", None, ""), 5),
    ] {
        let mut c = c;
        if c.username.is_none() {
            c.password = None;
        }
        let mut client = Client::open(addr).await;
        client.version = ProtocolVersion::V311;
        client.send(Packet::Connect(Box::new(c))).await;
        let mut bytes = [0u8; 4];
        client.stream.read_exact(&mut bytes).await.unwrap();
        assert_eq!(bytes, [0x20, 0x02, 0x00, code]);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn denied_publish_is_refused_in_v5_and_dropped_in_v311() {
    let (config, dir) = auth_config("publish");
    let (addr, _stop) = start(config).await;
    let mut admin = user(addr, ProtocolVersion::V5, "admin", "admin").await;
    suback(&mut admin, subscribe_all(&["#"], QoS::ExactlyOnce)).await;

    let mut v5 = user(addr, ProtocolVersion::V5, "alice-5", "alice").await;
    v5.send(publish("secret/a", QoS::AtMostOnce, 0)).await;
    v5.send(publish("secret/a", QoS::AtLeastOnce, 1)).await;
    match v5.recv().await {
        Some(Packet::PubAck(a)) => {
            assert_eq!((a.packet_id, a.reason), (1, ReasonCode::NOT_AUTHORIZED))
        }
        other => panic!("expected PUBACK 0x87, got {other:?}"),
    }
    v5.send(publish("secret/a", QoS::ExactlyOnce, 2)).await;
    match v5.recv().await {
        Some(Packet::PubRec(a)) => {
            assert_eq!((a.packet_id, a.reason), (2, ReasonCode::NOT_AUTHORIZED))
        }
        other => panic!("expected PUBREC 0x87, got {other:?}"),
    }
    // An allowed topic goes through, and is the first thing the subscriber sees.
    v5.send(publish("public/a", QoS::AtLeastOnce, 3)).await;
    match v5.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!((a.packet_id, a.reason), (3, ReasonCode::SUCCESS)),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    expect_publish(&mut admin, "public/a").await;

    let mut v3 = user(addr, ProtocolVersion::V311, "alice-3", "alice").await;
    v3.send(publish("secret/b", QoS::AtMostOnce, 0)).await;
    v3.send(publish("secret/b", QoS::AtLeastOnce, 7)).await;
    assert!(matches!(
        v3.recv().await,
        Some(Packet::PubAck(PubAck { packet_id: 7, .. }))
    ));
    v3.send(publish("secret/b", QoS::ExactlyOnce, 8)).await;
    assert!(matches!(
        v3.recv().await,
        Some(Packet::PubRec(PubAck { packet_id: 8, .. }))
    ));
    v3.send(Packet::PubRel(PubAck {
        packet_id: 8,
        ..PubAck::default()
    }))
    .await;
    match v3.recv().await {
        Some(Packet::PubComp(a)) => assert_eq!(a.packet_id, 8),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    v3.send(publish("public/b", QoS::AtMostOnce, 0)).await;
    // Nothing denied was delivered: the next message the subscriber gets is the allowed one.
    expect_publish(&mut admin, "public/b").await;
    // A topic no rule allows is denied by the default.
    v5.send(publish("other", QoS::AtLeastOnce, 4)).await;
    match v5.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn denied_filters_get_0x87_or_0x80_and_the_others_are_granted() {
    let (config, dir) = auth_config("subscribe");
    let (addr, _stop) = start(config).await;
    let filters = [
        "public/#",
        "secret/#",
        "#",
        "$share/g/jobs/+",
        "$share/g/never",
        "$SYS/#",
    ];
    let mut v5 = user(addr, ProtocolVersion::V5, "alice-5", "alice").await;
    let SubAck { reasons, .. } = suback(&mut v5, subscribe_all(&filters, QoS::AtLeastOnce)).await;
    let denied = ReasonCode::NOT_AUTHORIZED;
    let granted = ReasonCode::GRANTED_QOS_1;
    assert_eq!(reasons, [granted, denied, denied, granted, denied, denied]);

    let mut v3 = user(addr, ProtocolVersion::V311, "alice-3", "alice").await;
    let SubAck { reasons, .. } = suback(&mut v3, subscribe_all(&filters, QoS::AtLeastOnce)).await;
    let failure = ReasonCode(0x80);
    assert_eq!(
        reasons,
        [granted, failure, failure, granted, failure, failure]
    );

    // The granted subscription works.
    let mut admin = user(addr, ProtocolVersion::V5, "admin", "admin").await;
    admin.send(publish("public/x", QoS::AtMostOnce, 0)).await;
    expect_publish(&mut v5, "public/x").await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_denied_will_is_dropped_and_an_allowed_one_published() {
    let (config, dir) = auth_config("will");
    let (addr, _stop) = start(config).await;
    let mut admin = user(addr, ProtocolVersion::V5, "admin", "admin").await;
    suback(&mut admin, subscribe_all(&["will/#"], QoS::AtMostOnce)).await;
    for (topic, id) in [("will/denied", "w1"), ("will/ok", "w2")] {
        let mut c = login(ProtocolVersion::V5, id, Some("alice"), "alice-pw");
        c.will = Some(Will {
            topic: topic.into(),
            payload: Bytes::from_static(b"gone"),
            ..Will::default()
        });
        // Mosquitto's behaviour: the CONNECT is accepted whatever the will's topic.
        let (client, ack) = Client::connect(addr, c).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        drop(client);
    }
    expect_publish(&mut admin, "will/ok").await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_session_is_resumed_only_by_the_user_that_made_it() {
    let (config, dir) = auth_config("owner");
    let (addr, _stop) = start(config).await;
    let persistent = |user: &str| {
        let mut c = login(
            ProtocolVersion::V5,
            "shared-id",
            Some(user),
            &format!("{user}-pw"),
        );
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(600);
        c
    };
    let (mut alice, ack) = Client::connect(addr, persistent("alice")).await;
    assert!(!ack.session_present);
    suback(&mut alice, subscribe_all(&["public/#"], QoS::AtLeastOnce)).await;
    alice.send(Packet::Disconnect(Default::default())).await;
    assert_eq!(alice.recv().await, None);
    // The same user gets the session back.
    let (mut alice, ack) = Client::connect(addr, persistent("alice")).await;
    assert!(ack.session_present);
    alice.send(Packet::Disconnect(Default::default())).await;
    assert_eq!(alice.recv().await, None);
    // Another user with the same client id starts afresh: alice's subscription is gone.
    let (_admin, ack) = Client::connect(addr, persistent("admin")).await;
    assert!(!ack.session_present, "another user resumed alice's session");
    let mut publisher = user(addr, ProtocolVersion::V5, "alice-pub", "alice").await;
    publisher
        .send(publish("public/x", QoS::AtLeastOnce, 1))
        .await;
    match publisher.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason, ReasonCode::NO_MATCHING_SUBSCRIBERS),
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}
