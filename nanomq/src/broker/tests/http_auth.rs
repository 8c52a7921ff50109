//! The HTTP auth service seen from clients, against a real HTTP server on loopback that records
//! every request: CONNACK for allow, deny and ignore (falling through to the password file),
//! a service that is down, the cache and its reset on reload, and the HTTP ACL on SUBSCRIBE,
//! PUBLISH and wills, where a packet waits for its answer without reordering what follows.
//! Real time, not the paused clock: the answers come over real sockets.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::auth::http::test_server::{response, result, Recorded, Reply, TestServer};
use crate::auth::passwords::hash_password_with;
use crate::config::HttpAuthConfig;
use crate::mqtt::{PubAck, Publish, SubAck};

/// The service's CONNECT rules: user `ok` allowed, `bad` denied, anyone else ignored.
fn connect_rule(r: &Recorded) -> Reply {
    match r.field("username").as_deref() {
        Some("ok") => result("allow"),
        Some("bad") => result("deny"),
        Some("plain") => (Duration::ZERO, response(200, "allow")),
        Some("forbidden") => (Duration::ZERO, response(403, "")),
        _ => result("ignore"),
    }
}

/// The service's ACL rules by topic: `open/...` allowed, `secret/...` denied, `wdeny/...`
/// denied for publish only, `slow/...` allowed after 300 ms, the rest ignored.
fn acl_rule(r: &Recorded) -> Reply {
    let topic = r.field("topic").unwrap_or_default();
    let publish = r.field("action").as_deref() == Some("publish");
    if topic.starts_with("wdeny/") {
        result(if publish { "deny" } else { "allow" })
    } else if topic.starts_with("open/") {
        result("allow")
    } else if topic.starts_with("secret/") {
        result("deny")
    } else if topic.starts_with("slow/") {
        (Duration::from_millis(300), response(204, ""))
    } else {
        result("ignore")
    }
}

/// Both rule sets, on /auth and /acl.
async fn service() -> TestServer {
    TestServer::start(|r| match r.path() {
        "/auth" => connect_rule(r),
        _ => acl_rule(r),
    })
    .await
}

/// A config asking `url` about CONNECTs (and `acl_url`, when given), with a password file
/// holding `filed` (password `filed-pw`) and, when given, an ACL file.
fn http_config(
    name: &str,
    url: &str,
    acl_url: Option<&str>,
    acl: Option<&str>,
) -> (Config, PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("nanomq-broker-http-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let users = format!("filed:{}\n", hash_password_with(b"filed-pw", 64, 1));
    std::fs::write(dir.join("passwd"), users).unwrap();
    let mut config = Config::default();
    config.auth.password_file = Some(dir.join("passwd"));
    if let Some(rules) = acl {
        std::fs::write(dir.join("acl"), rules).unwrap();
        config.auth.acl_file = Some(dir.join("acl"));
    }
    config.auth.http = Some(HttpAuthConfig {
        url: Some(url.to_owned()),
        acl_url: acl_url.map(str::to_owned),
        timeout_ms: 1000,
        ..HttpAuthConfig::default()
    });
    (config, dir)
}

fn login(version: ProtocolVersion, client_id: &str, user: Option<&str>, password: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        client_id: client_id.into(),
        username: user.map(str::to_owned),
        password: (!password.is_empty()).then(|| Bytes::copy_from_slice(password.as_bytes())),
        ..Connect::default()
    }
}

async fn connack(addr: SocketAddr, c: Connect) -> ReasonCode {
    let (_, ack) = Client::connect(addr, c).await;
    ack.reason
}

fn publish(topic: &str, qos: QoS, packet_id: u16) -> Packet {
    Packet::Publish(Publish {
        qos,
        topic: topic.into(),
        packet_id,
        payload: Bytes::copy_from_slice(topic.as_bytes()),
        ..Publish::default()
    })
}

async fn puback(c: &mut Client) -> PubAck {
    match c.recv().await {
        Some(Packet::PubAck(a)) => a,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

async fn expect_publish(c: &mut Client, topic: &str) {
    match c.recv().await {
        Some(Packet::Publish(p)) => assert_eq!(p.topic, topic),
        other => panic!("expected PUBLISH {topic}, got {other:?}"),
    }
}

#[tokio::test]
async fn allow_deny_and_ignore_decide_connect() {
    let server = service().await;
    let (config, dir) = http_config("connect", &server.url("/auth"), None, None);
    let (addr, _stop) = start(config).await;
    let v5 = ProtocolVersion::V5;
    // allow: in, whatever the password file says.
    assert_eq!(
        connack(addr, login(v5, "c-ok", Some("ok"), "pw")).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        connack(addr, login(v5, "c-pl", Some("plain"), "x")).await,
        ReasonCode::SUCCESS
    );
    // deny and 4xx: 0x86, final (no password file for them either way).
    let bad = ReasonCode::BAD_USER_NAME_OR_PASSWORD;
    assert_eq!(
        connack(addr, login(v5, "c-bad", Some("bad"), "pw")).await,
        bad
    );
    assert_eq!(
        connack(addr, login(v5, "c-403", Some("forbidden"), "pw")).await,
        bad
    );
    // ignore: the password file decides.
    let filed = login(v5, "c-f", Some("filed"), "filed-pw");
    assert_eq!(connack(addr, filed).await, ReasonCode::SUCCESS);
    let wrong = login(v5, "c-f", Some("filed"), "wrong");
    assert_eq!(connack(addr, wrong).await, bad);
    // ignore for an anonymous client: allow_anonymous defaults to false with a url.
    let anon = login(v5, "c-anon", None, "");
    assert_eq!(connack(addr, anon).await, ReasonCode::NOT_AUTHORIZED);
    // MQTT 3.1.1: return code 4 on the wire for a deny.
    let mut client = Client::open(addr).await;
    client.version = ProtocolVersion::V311;
    let c = login(ProtocolVersion::V311, "c-311", Some("bad"), "pw");
    client.send(Packet::Connect(Box::new(c))).await;
    let mut bytes = [0u8; 4];
    client.stream.read_exact(&mut bytes).await.unwrap();
    assert_eq!(bytes, [0x20, 0x02, 0x00, 4]);

    // What the service was told.
    let requests = server.requests();
    let first = &requests[0];
    assert_eq!((first.method(), first.path()), ("POST", "/auth"));
    assert_eq!(first.header("content-type"), Some("application/json"));
    for (name, value) in [
        ("username", "ok"),
        ("clientid", "c-ok"),
        ("password", "pw"),
        ("ip", "127.0.0.1"),
    ] {
        assert_eq!(first.field(name).as_deref(), Some(value), "{name}");
    }
    let anonymous = requests
        .iter()
        .find(|r| r.field("clientid").as_deref() == Some("c-anon"))
        .expect("the anonymous client was asked about");
    assert_eq!(anonymous.field("username").as_deref(), Some(""));
    assert_eq!(anonymous.field("password").as_deref(), Some(""));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_service_that_is_down_falls_through_to_the_password_file() {
    let server = service().await;
    let url = server.url("/auth");
    drop(server);
    tokio::task::yield_now().await;
    let (config, dir) = http_config("down", &url, None, None);
    let (addr, _stop) = start(config).await;
    let v5 = ProtocolVersion::V5;
    let filed = login(v5, "d-1", Some("filed"), "filed-pw");
    assert_eq!(connack(addr, filed).await, ReasonCode::SUCCESS);
    let ok = login(v5, "d-2", Some("ok"), "pw");
    assert_eq!(
        connack(addr, ok).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        "not in the password file"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn answers_are_cached_until_reload() {
    let server = service().await;
    let (config, dir) = http_config("cache", &server.url("/auth"), None, None);
    let (addr, _stop, auth) = start_with_auth(config.clone()).await;
    let v5 = ProtocolVersion::V5;
    for _ in 0..3 {
        let c = login(v5, "cached", Some("ok"), "pw");
        assert_eq!(connack(addr, c).await, ReasonCode::SUCCESS);
    }
    assert_eq!(server.count(), 1, "answered from the cache within the TTL");
    // Another password, client id or user is another question.
    assert_eq!(
        connack(addr, login(v5, "cached", Some("ok"), "pw2")).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        connack(addr, login(v5, "other", Some("ok"), "pw")).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(server.count(), 3);
    auth.reload(&config.auth).unwrap();
    assert_eq!(
        connack(addr, login(v5, "cached", Some("ok"), "pw")).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(server.count(), 4, "the reload emptied the cache");
    let _ = std::fs::remove_dir_all(dir);
}

const FALLBACK_ACL: &str = "\
allow all subscribe filed/#
allow all publish filed/#
default deny
";

#[tokio::test]
async fn subscribe_waits_for_the_answers_and_keeps_the_order() {
    let server = service().await;
    let (config, dir) = http_config(
        "subscribe",
        &server.url("/auth"),
        Some(&server.url("/acl")),
        Some(FALLBACK_ACL),
    );
    let (addr, _stop) = start(config).await;
    let (mut c, ack) =
        Client::connect(addr, login(ProtocolVersion::V5, "s1", Some("ok"), "pw")).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let filters = [
        "open/a",
        "secret/#",
        "filed/x",
        "other/y",
        "$share/g/open/b",
        "slow/z",
    ];
    let SubAck { reasons, .. } = suback(&mut c, subscribe_all(&filters, QoS::AtLeastOnce)).await;
    let (granted, denied) = (ReasonCode::GRANTED_QOS_1, ReasonCode::NOT_AUTHORIZED);
    // open: allow; secret: deny; filed: ignored, the ACL file allows; other: ignored, the
    // file's default denies; shared: asked as open/b; slow: allowed after 300 ms.
    assert_eq!(
        reasons,
        [granted, denied, granted, denied, granted, granted]
    );
    let acl: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/acl")
        .collect();
    assert_eq!(acl.len(), filters.len());
    let topics: Vec<_> = acl.iter().map(|r| r.field("topic").unwrap()).collect();
    for expected in [
        "open/a", "secret/#", "filed/x", "other/y", "open/b", "slow/z",
    ] {
        assert!(
            topics.iter().any(|t| t == expected),
            "{expected} not asked: {topics:?}"
        );
    }
    for r in &acl {
        assert_eq!(r.field("action").as_deref(), Some("subscribe"));
        assert_eq!(r.field("username").as_deref(), Some("ok"));
        assert_eq!(r.field("clientid").as_deref(), Some("s1"));
        assert_eq!(r.field("ip").as_deref(), Some("127.0.0.1"));
    }

    // A SUBSCRIBE waiting for a slow answer, then a PINGREQ: SUBACK first, then PINGRESP.
    let t0 = Instant::now();
    let mut out = BytesMut::new();
    let mut sub = subscribe_all(&["slow/second"], QoS::AtMostOnce);
    if let Packet::Subscribe(s) = &mut sub {
        s.packet_id = 7;
    }
    encode(&sub, ProtocolVersion::V5, &mut out);
    encode(&Packet::PingReq, ProtocolVersion::V5, &mut out);
    c.stream.write_all(&out).await.unwrap();
    match c.recv().await {
        Some(Packet::SubAck(a)) => {
            assert_eq!(
                (a.packet_id, a.reasons),
                (7, vec![ReasonCode::GRANTED_QOS_0])
            )
        }
        other => panic!("expected the SUBACK first, got {other:?}"),
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(c.recv().await, Some(Packet::PingResp));
    // Asked again within the TTL: the cache answers at once.
    let before = server.count();
    let SubAck { reasons, .. } = suback(
        &mut c,
        subscribe_all(&["slow/second", "secret/#"], QoS::AtMostOnce),
    )
    .await;
    assert_eq!(reasons, [ReasonCode::GRANTED_QOS_0, denied]);
    assert_eq!(server.count(), before);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn publish_waits_for_its_answer_in_order_and_is_remembered() {
    let server = service().await;
    let (config, dir) = http_config(
        "publish",
        &server.url("/auth"),
        Some(&server.url("/acl")),
        Some(FALLBACK_ACL),
    );
    let (addr, _stop) = start(config).await;
    let v5 = ProtocolVersion::V5;
    let (mut sub, _) = Client::connect(addr, login(v5, "sub", Some("ok"), "pw")).await;
    suback(
        &mut sub,
        subscribe_all(&["open/#", "slow/#", "filed/#"], QoS::AtLeastOnce),
    )
    .await;
    let (mut c, _) = Client::connect(addr, login(v5, "pub", Some("ok"), "pw")).await;

    // The slow topic first, then one answered at once: delivered in the order sent.
    let mut out = BytesMut::new();
    for p in [
        publish("slow/1", QoS::AtMostOnce, 0),
        publish("open/2", QoS::AtMostOnce, 0),
        publish("secret/3", QoS::AtLeastOnce, 3),
        publish("filed/4", QoS::AtLeastOnce, 4),
        publish("other/5", QoS::AtLeastOnce, 5),
    ] {
        encode(&p, v5, &mut out);
    }
    c.stream.write_all(&out).await.unwrap();
    let a = puback(&mut c).await;
    assert_eq!((a.packet_id, a.reason), (3, ReasonCode::NOT_AUTHORIZED));
    let a = puback(&mut c).await;
    assert_eq!((a.packet_id, a.reason), (4, ReasonCode::SUCCESS));
    let a = puback(&mut c).await;
    assert_eq!((a.packet_id, a.reason), (5, ReasonCode::NOT_AUTHORIZED));
    expect_publish(&mut sub, "slow/1").await;
    expect_publish(&mut sub, "open/2").await;
    expect_publish(&mut sub, "filed/4").await;
    let asked = |server: &TestServer| {
        server
            .requests()
            .iter()
            .filter(|r| r.field("action").as_deref() == Some("publish"))
            .count()
    };
    assert_eq!(asked(&server), 5);
    let r = server
        .requests()
        .into_iter()
        .find(|r| r.field("topic").as_deref() == Some("open/2"))
        .unwrap();
    assert_eq!(r.field("clientid").as_deref(), Some("pub"));
    // Again: remembered by the connection, no request.
    for n in 0..10 {
        c.send(publish("open/2", QoS::AtLeastOnce, 10 + n)).await;
        assert_eq!(puback(&mut c).await.reason, ReasonCode::SUCCESS);
    }
    assert_eq!(asked(&server), 5);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn without_a_cache_every_publish_asks_and_still_goes_through() {
    let server = service().await;
    let (mut config, dir) = http_config(
        "nocache",
        &server.url("/auth"),
        Some(&server.url("/acl")),
        None,
    );
    if let Some(http) = config.auth.http.as_mut() {
        http.cache_ttl_secs = 0;
    }
    let (addr, _stop) = start(config).await;
    let (mut c, _) =
        Client::connect(addr, login(ProtocolVersion::V5, "nc", Some("ok"), "pw")).await;
    for n in 1..=3 {
        c.send(publish("open/x", QoS::AtLeastOnce, n)).await;
        let a = puback(&mut c).await;
        assert_eq!(a.packet_id, n);
        assert_eq!(a.reason, ReasonCode::NO_MATCHING_SUBSCRIBERS, "allowed");
    }
    let acl = server
        .requests()
        .iter()
        .filter(|r| r.path() == "/acl")
        .count();
    assert_eq!(acl, 3);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_acl_service_that_is_down_denies_without_an_acl_file() {
    let server = service().await;
    let (config, dir) = http_config(
        "acldown",
        &server.url("/auth"),
        Some("http://127.0.0.1:1/acl"),
        None,
    );
    let (addr, _stop) = start(config).await;
    let (mut c, _) =
        Client::connect(addr, login(ProtocolVersion::V5, "ad", Some("ok"), "pw")).await;
    let SubAck { reasons, .. } = suback(&mut c, subscribe("open/x")).await;
    assert_eq!(reasons, [ReasonCode::NOT_AUTHORIZED]);
    c.send(publish("open/x", QoS::AtLeastOnce, 1)).await;
    assert_eq!(puback(&mut c).await.reason, ReasonCode::NOT_AUTHORIZED);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn wills_are_asked_about_when_due() {
    let server = service().await;
    let (config, dir) = http_config(
        "will",
        &server.url("/auth"),
        Some(&server.url("/acl")),
        None,
    );
    let (addr, _stop) = start(config).await;
    let v5 = ProtocolVersion::V5;
    let (mut watcher, _) = Client::connect(addr, login(v5, "watch", Some("ok"), "pw")).await;
    let SubAck { reasons, .. } = suback(
        &mut watcher,
        subscribe_all(&["wdeny/#", "open/#"], QoS::AtMostOnce),
    )
    .await;
    assert_eq!(reasons, [ReasonCode::GRANTED_QOS_0; 2]);
    let will_asked = |topic: &str| {
        server.requests().iter().any(|r| {
            r.field("action").as_deref() == Some("publish")
                && r.field("topic").as_deref() == Some(topic)
        })
    };
    for (id, topic) in [("w1", "wdeny/will"), ("w2", "open/will")] {
        let mut c = login(v5, id, Some("ok"), "pw");
        c.will = Some(Will {
            topic: topic.into(),
            payload: Bytes::from_static(b"gone"),
            ..Will::default()
        });
        let (client, ack) = Client::connect(addr, c).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        drop(client);
        // One at a time: the first will is settled before the second client leaves.
        let t0 = Instant::now();
        while !will_asked(topic) {
            assert!(t0.elapsed() < RECV_LIMIT, "{topic} never asked about");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The denied will was not published: the allowed one is the first thing seen.
    expect_publish(&mut watcher, "open/will").await;
    let wills: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.field("action").as_deref() == Some("publish"))
        .map(|r| r.field("topic").unwrap())
        .collect();
    assert_eq!(wills.len(), 2, "{wills:?}");
    let _ = std::fs::remove_dir_all(dir);
}
