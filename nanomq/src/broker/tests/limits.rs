//! Every configured limit and capability switch, seen from a client: what CONNACK advertises
//! and what the broker answers when the client goes past it.

use super::*;
use crate::mqtt::Publish;

fn publish(topic: &str, qos: QoS, retain: bool) -> Packet {
    Packet::Publish(Publish {
        qos,
        retain,
        topic: topic.into(),
        packet_id: u16::from(qos != QoS::AtMostOnce),
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    })
}

/// Sends `p` and expects the broker to answer with DISCONNECT `reason` and close.
async fn expect_disconnect(c: &mut Client, p: Packet, reason: ReasonCode) {
    c.send(p).await;
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason),
        other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
    }
    assert_eq!(
        c.recv().await,
        None,
        "the connection is closed after DISCONNECT"
    );
}

#[tokio::test]
async fn broker_and_listener_connection_limits() {
    let mut config = Config::default();
    config.limits.max_connections = 2;
    let (addr, _stop) = start(config).await;
    let (mut first, _) = Client::connect(addr, v5("one", 0, 0)).await;
    let (_second, _) = Client::connect(addr, v5("two", 0, 0)).await;
    let mut third = Client::open(addr).await;
    assert_eq!(
        third.recv().await,
        None,
        "over max_connections: closed at once"
    );
    first.send(Packet::PingReq).await;
    assert_eq!(
        first.recv().await,
        Some(Packet::PingResp),
        "others keep working"
    );

    let mut config = Config::default();
    config.listeners[0].max_connections = 1;
    let (addr, _stop) = start(config).await;
    let (_only, _) = Client::connect(addr, v5("only", 0, 0)).await;
    assert_eq!(Client::open(addr).await.recv().await, None);
}

/// Sockets before CONNECT are bounded: silent ones cannot keep others out beyond the bound, and
/// their places come back when they complete CONNECT or go away.
#[tokio::test]
async fn pending_connections_are_bounded() {
    let mut config = Config::default();
    config.limits.max_pending_connections = 2;
    let (addr, _stop) = start(config).await;
    let silent = Client::open(addr).await;
    let _silent2 = Client::open(addr).await;
    let mut refused = Client::open(addr).await;
    assert_eq!(
        refused.recv().await,
        None,
        "a third pending socket is closed at once"
    );
    drop(silent);
    // The broker notices the close on its next read; retry until the place is back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut connected = loop {
        let mut c = Client::open(addr).await;
        c.send(Packet::Connect(Box::new(v5("after", 0, 0)))).await;
        match c.recv().await {
            Some(Packet::ConnAck(a)) => {
                assert_eq!(a.reason, ReasonCode::SUCCESS);
                break c;
            }
            None => assert!(
                tokio::time::Instant::now() < deadline,
                "place never came back"
            ),
            other => panic!("expected CONNACK or a close, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // A completed CONNECT gives its place back too.
    let (_more, ack) = Client::connect(addr, v5("more", 0, 0)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    connected.send(Packet::PingReq).await;
    assert_eq!(connected.recv().await, Some(Packet::PingResp));
}

/// New connections from one address are rate limited at accept; others keep working.
#[tokio::test]
async fn connect_rate_per_source_address() {
    let mut config = Config::default();
    config.limits.connect_rate_per_ip = 3;
    let (addr, _stop) = start(config).await;
    let mut clients = Vec::new();
    for id in ["a", "b", "c"] {
        let (c, ack) = Client::connect(addr, v5(id, 0, 0)).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        clients.push(c);
    }
    let mut fourth = Client::open(addr).await;
    assert_eq!(
        fourth.recv().await,
        None,
        "a fourth within the second is closed at once"
    );
    clients[0].send(Packet::PingReq).await;
    assert_eq!(clients[0].recv().await, Some(Packet::PingResp));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_d, ack) = Client::connect(addr, v5("d", 0, 0)).await;
    assert_eq!(
        ack.reason,
        ReasonCode::SUCCESS,
        "a token came back after a third of a second"
    );
}

#[tokio::test]
async fn subscriptions_per_client_quota() {
    let mut config = Config::default();
    config.limits.max_subscriptions_per_client = 2;
    let (addr, _stop) = start(config).await;
    let (mut c, _) = Client::connect(addr, v5("quota", 0, 0)).await;
    let ack = suback(&mut c, subscribe_all(&["a", "b", "c"], QoS::AtLeastOnce)).await;
    assert_eq!(
        ack.reasons,
        [
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::QUOTA_EXCEEDED
        ]
    );
    let again = suback(&mut c, subscribe_all(&["a"], QoS::ExactlyOnce)).await;
    assert_eq!(
        again.reasons,
        [ReasonCode::GRANTED_QOS_2],
        "replacing is not a new one"
    );
}

#[tokio::test]
async fn topic_level_limit() {
    let mut config = Config::default();
    config.limits.max_topic_levels = 3;
    let (addr, _stop) = start(config).await;
    let (mut c, _) = Client::connect(addr, v5("levels", 0, 0)).await;
    let ack = suback(
        &mut c,
        subscribe_all(&["a/b/c", "a/b/c/d"], QoS::AtMostOnce),
    )
    .await;
    assert_eq!(
        ack.reasons,
        [ReasonCode::GRANTED_QOS_0, ReasonCode::TOPIC_FILTER_INVALID]
    );
    let deep = publish("a/b/c/d", QoS::AtMostOnce, false);
    expect_disconnect(&mut c, deep, ReasonCode::TOPIC_NAME_INVALID).await;
}

#[tokio::test]
async fn capabilities_switched_off_are_advertised_and_refused() {
    let mut config = Config::default();
    config.mqtt.shared_subscriptions = false;
    config.mqtt.wildcard_subscriptions = false;
    config.mqtt.subscription_identifiers = false;
    let (addr, _stop) = start(config).await;
    let (mut c, ack) = Client::connect(addr, v5("caps", 0, 0)).await;
    let p = &ack.properties;
    assert_eq!(p.shared_subscription_available, Some(0));
    assert_eq!(p.wildcard_subscription_available, Some(0));
    assert_eq!(p.subscription_identifier_available, Some(0));
    let ack = suback(
        &mut c,
        subscribe_all(&["$share/g/t", "a/+", "a/b"], QoS::AtMostOnce),
    )
    .await;
    assert_eq!(
        ack.reasons,
        [
            ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
            ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
            ReasonCode::GRANTED_QOS_0
        ]
    );
    let Packet::Subscribe(mut with_id) = subscribe("x") else {
        unreachable!()
    };
    with_id.properties.subscription_identifiers = vec![7];
    let reason = ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED;
    expect_disconnect(&mut c, Packet::Subscribe(with_id), reason).await;
}

#[tokio::test]
async fn retain_unavailable() {
    let mut config = Config::default();
    config.mqtt.retain_available = false;
    let (addr, _stop) = start(config).await;
    let (mut c, ack) = Client::connect(addr, v5("noretain", 0, 0)).await;
    assert_eq!(ack.properties.retain_available, Some(0));
    let retained = publish("t", QoS::AtMostOnce, true);
    expect_disconnect(&mut c, retained, ReasonCode::RETAIN_NOT_SUPPORTED).await;

    let mut will = with_will(v5("retained-will", 0, 0), 0);
    will.will.as_mut().unwrap().retain = true;
    let (_c, ack) = Client::connect(addr, will).await;
    assert_eq!(ack.reason, ReasonCode::RETAIN_NOT_SUPPORTED);
}

#[tokio::test]
async fn maximum_qos() {
    let mut config = Config::default();
    config.mqtt.max_qos = 1;
    let (addr, _stop) = start(config).await;
    let (mut c, ack) = Client::connect(addr, v5("qos1", 0, 0)).await;
    assert_eq!(ack.properties.maximum_qos, Some(1));
    let ack = suback(&mut c, subscribe_all(&["t"], QoS::ExactlyOnce)).await;
    assert_eq!(
        ack.reasons,
        [ReasonCode::GRANTED_QOS_1],
        "downgraded, not refused"
    );
    let qos2 = publish("t", QoS::ExactlyOnce, false);
    expect_disconnect(&mut c, qos2, ReasonCode::QOS_NOT_SUPPORTED).await;
}

#[tokio::test]
async fn keepalive_floor_and_session_expiry_cap() {
    let mut config = Config::default();
    config.limits.min_keepalive = 30;
    config.limits.max_session_expiry_secs = 100;
    let (addr, _stop) = start(config).await;
    let (_c, ack) = Client::connect(addr, v5("floor", 10, 1000)).await;
    assert_eq!(ack.properties.server_keep_alive, Some(30));
    assert_eq!(ack.properties.session_expiry_interval, Some(100));

    // A 3.1.1 client cannot be told another keepalive, so it is refused (return code 2).
    let mut v3 = v5("floor3", 10, 0);
    v3.protocol = ProtocolVersion::V311;
    v3.properties = Properties::default();
    let (_c, ack) = Client::connect(addr, v3).await;
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
}

#[tokio::test]
async fn broker_inflight_cap_applies_below_the_clients_receive_maximum() {
    let mut config = Config::default();
    config.limits.max_inflight = 2;
    let (addr, _stop) = start(config).await;
    let (mut sub, _) = Client::connect(addr, v5("slow", 0, 0)).await;
    suback(&mut sub, subscribe("t")).await;
    let (mut publisher, _) = Client::connect(addr, v5("fast", 0, 0)).await;
    for _ in 0..5 {
        publisher.send(publish("t", QoS::AtLeastOnce, false)).await;
        assert!(matches!(publisher.recv().await, Some(Packet::PubAck(_))));
    }
    let mut ids = Vec::new();
    for _ in 0..2 {
        match sub.recv().await {
            Some(Packet::Publish(p)) => ids.push(p.packet_id),
            other => panic!("{other:?}"),
        }
    }
    let more = tokio::time::timeout(Duration::from_millis(300), sub.recv_unbounded()).await;
    assert!(
        more.is_err(),
        "a third message while two are unacknowledged: {more:?}"
    );
    sub.send(Packet::PubAck(crate::mqtt::PubAck {
        packet_id: ids[0],
        ..Default::default()
    }))
    .await;
    assert!(matches!(sub.recv().await, Some(Packet::Publish(_))));
}

#[tokio::test]
async fn shared_subscription_with_no_local_is_a_protocol_error() {
    let (addr, _stop) = start(Config::default()).await;
    let (mut c, _) = Client::connect(addr, v5("nolocal", 0, 0)).await;
    let Packet::Subscribe(mut s) = subscribe("$share/g/t") else {
        unreachable!()
    };
    s.filters[0].1.no_local = true;
    expect_disconnect(&mut c, Packet::Subscribe(s), ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn auth_after_connect_is_a_protocol_error() {
    let (addr, _stop) = start(Config::default()).await;
    let (mut c, _) = Client::connect(addr, v5("auth", 0, 0)).await;
    let auth = Packet::Auth(crate::mqtt::Auth::default());
    expect_disconnect(&mut c, auth, ReasonCode::PROTOCOL_ERROR).await;
}

/// A reload applies the connection and CONNECT limits live: the connections open stay (even
/// above a lowered `max_connections`), new sockets and CONNECTs see the new values.
#[tokio::test]
async fn reloaded_limits_apply_to_new_connections_only() {
    let mut config = Config::default();
    config.listeners[0].bind = "127.0.0.1:0".parse().unwrap();
    let listeners = crate::broker::bind(&config).await.unwrap();
    let addr = listeners[0].local_addr();
    let auth = std::sync::Arc::new(crate::auth::Authenticator::load(&config.auth).unwrap());
    let live = crate::broker::Live::new(&config, auth);
    let limits = live.limits.clone();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let health = crate::service::Health::new();
    let serving = crate::broker::serve(config.clone(), live, listeners, health, None, async {
        let _ = stopped.await;
    });
    tokio::spawn(serving);
    let (mut a, _) = Client::connect(addr, v5("a", 0, 0)).await;
    let (mut b, _) = Client::connect(addr, v5("b", 0, 0)).await;

    config.limits.max_connections = 1;
    config.limits.max_keepalive = 20;
    config.limits.max_session_expiry_secs = 50;
    limits.apply(&config);
    assert_eq!(
        Client::open(addr).await.recv().await,
        None,
        "over the lowered max_connections: closed at once"
    );
    for c in [&mut a, &mut b] {
        c.send(Packet::PingReq).await;
        assert_eq!(c.recv().await, Some(Packet::PingResp), "open ones stay");
    }

    config.limits.max_connections = 3;
    limits.apply(&config);
    let (_c, ack) = Client::connect(addr, v5("c", 60, 1000)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(ack.properties.server_keep_alive, Some(20));
    assert_eq!(ack.properties.session_expiry_interval, Some(50));
}
