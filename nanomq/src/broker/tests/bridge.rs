//! Bridges against a scripted upstream: the test plays the cloud broker on a loopback listener,
//! packet by packet, to check what a real broker would rarely show on cue: resends under the
//! same packet ids after a reconnect, an inbound QoS 2 message offered again after a
//! reconnect, the upstream's Maximum QoS, and a protocol error from the upstream.

use tokio::net::TcpListener;

use super::*;
use crate::config::{BridgeConfig, ForwardConfig, SubscriptionConfig};
use crate::mqtt::{PubAck, Publish};

/// A local broker with one bridge to a listener the test holds.
async fn bridged() -> (SocketAddr, tokio::sync::oneshot::Sender<()>, TcpListener) {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        bridges: vec![BridgeConfig {
            name: "cloud".into(),
            address: upstream.local_addr().unwrap().to_string(),
            reconnect_min_ms: 10,
            reconnect_max_ms: 10,
            forwards: vec![ForwardConfig {
                filter: "up/#".into(),
                remote: "edge/{topic}".into(),
                qos: 2,
                retain: true,
            }],
            subscriptions: vec![SubscriptionConfig {
                filter: "down/#".into(),
                local: "{topic}".into(),
                qos: 2,
            }],
            ..BridgeConfig::default()
        }],
        ..Config::default()
    };
    config.validate().unwrap();
    let (addr, stop) = start(config).await;
    (addr, stop, upstream)
}

/// Accepts the bridge, checks its CONNECT, answers `ack` and the SUBSCRIBE.
async fn accept(upstream: &TcpListener, ack: ConnAck) -> (Client, Connect) {
    let (stream, _) = upstream.accept().await.unwrap();
    let mut c = Client {
        stream,
        rbuf: BytesMut::new(),
        version: ProtocolVersion::V5,
    };
    let Some(Packet::Connect(connect)) = c.recv().await else {
        panic!("the bridge did not start with CONNECT");
    };
    c.send(Packet::ConnAck(ack)).await;
    match c.recv().await {
        Some(Packet::Subscribe(s)) => {
            assert_eq!(s.filters[0].0, "down/#");
            assert!(
                s.filters[0].1.no_local,
                "MQTT 5 upstream subscriptions use No Local"
            );
            let suback = crate::mqtt::SubAck {
                packet_id: s.packet_id,
                reasons: vec![ReasonCode::GRANTED_QOS_2],
                ..crate::mqtt::SubAck::default()
            };
            c.send(Packet::SubAck(suback)).await;
        }
        other => panic!("expected SUBSCRIBE, got {other:?}"),
    }
    (c, *connect)
}

fn session(present: bool) -> ConnAck {
    ConnAck {
        session_present: present,
        ..ConnAck::default()
    }
}

async fn publish(c: &mut Client, topic: &str, payload: &'static [u8], qos: QoS, id: u16) {
    let p = Publish {
        qos,
        topic: topic.into(),
        packet_id: id,
        payload: Bytes::from_static(payload),
        ..Publish::default()
    };
    c.send(Packet::Publish(p)).await;
}

async fn next_publish(c: &mut Client) -> Publish {
    match c.recv().await {
        Some(Packet::Publish(p)) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

fn ack(packet_id: u16) -> PubAck {
    PubAck {
        packet_id,
        ..PubAck::default()
    }
}

#[tokio::test]
async fn unacknowledged_forwards_are_resent_with_dup_under_their_ids() {
    let (addr, _stop, upstream) = bridged().await;
    let (mut cloud, connect) = accept(&upstream, session(false)).await;
    assert!(!connect.clean_start);
    let (mut local, _) = Client::connect(addr, v5("pub", 0, 0)).await;
    for payload in [&b"one"[..], b"two", b"three"] {
        publish(&mut local, "up/t", payload, QoS::AtLeastOnce, 1).await;
    }
    let sent: Vec<Publish> = [
        next_publish(&mut cloud).await,
        next_publish(&mut cloud).await,
        next_publish(&mut cloud).await,
    ]
    .into();
    assert!(sent.iter().all(|p| p.topic == "edge/up/t" && !p.dup));
    cloud.send(Packet::PubAck(ack(sent[0].packet_id))).await;
    drop(cloud);

    let (mut cloud, _) = accept(&upstream, session(true)).await;
    for want in &sent[1..] {
        let p = next_publish(&mut cloud).await;
        assert_eq!(
            (p.dup, p.packet_id, &p.payload),
            (true, want.packet_id, &want.payload)
        );
        cloud.send(Packet::PubAck(ack(p.packet_id))).await;
    }
    drop(cloud);

    // Without the session nothing is owed again: the next connection gets only what is new.
    let (mut cloud, _) = accept(&upstream, session(false)).await;
    publish(&mut local, "up/t", b"four", QoS::AtLeastOnce, 2).await;
    let p = next_publish(&mut cloud).await;
    assert_eq!((p.dup, &p.payload[..]), (false, &b"four"[..]));
}

#[tokio::test]
async fn an_inbound_qos2_message_offered_again_after_a_reconnect_is_routed_once() {
    let (addr, _stop, upstream) = bridged().await;
    let (mut cloud, _) = accept(&upstream, session(false)).await;
    let (mut local, _) = Client::connect(addr, v5("sub", 0, 0)).await;
    suback(&mut local, subscribe_all(&["down/#"], QoS::ExactlyOnce)).await;
    publish(&mut cloud, "down/x", b"once", QoS::ExactlyOnce, 9).await;
    assert!(matches!(cloud.recv().await, Some(Packet::PubRec(r)) if r.packet_id == 9));
    let got = next_publish(&mut local).await;
    assert_eq!(got.payload, "once");
    local.send(Packet::PubRec(ack(got.packet_id))).await;
    drop(cloud);

    let (mut cloud, _) = accept(&upstream, session(true)).await;
    let mut again = Publish {
        dup: true,
        qos: QoS::ExactlyOnce,
        topic: "down/x".into(),
        packet_id: 9,
        payload: Bytes::from_static(b"once"),
        ..Publish::default()
    };
    cloud.send(Packet::Publish(again.clone())).await;
    assert!(matches!(cloud.recv().await, Some(Packet::PubRec(r)) if r.packet_id == 9));
    cloud.send(Packet::PubRel(ack(9))).await;
    assert!(matches!(cloud.recv().await, Some(Packet::PubComp(c)) if c.packet_id == 9));
    // The id is free again: the same id now carries a new message.
    again.dup = false;
    again.payload = Bytes::from_static(b"new");
    cloud.send(Packet::Publish(again)).await;
    assert!(matches!(cloud.recv().await, Some(Packet::PubRec(r)) if r.packet_id == 9));
    // The local subscriber gets the PUBREL of the first and then the new message, nothing else.
    assert!(matches!(local.recv().await, Some(Packet::PubRel(_))));
    assert_eq!(next_publish(&mut local).await.payload, "new");
}

#[tokio::test]
async fn forwards_follow_the_upstreams_maximum_qos() {
    let (addr, _stop, upstream) = bridged().await;
    let mut ack = session(false);
    ack.properties.maximum_qos = Some(1);
    ack.properties.retain_available = Some(0);
    let (mut cloud, _) = accept(&upstream, ack).await;
    let (mut local, _) = Client::connect(addr, v5("pub", 0, 0)).await;
    let p = Publish {
        qos: QoS::ExactlyOnce,
        retain: true,
        topic: "up/q2".into(),
        packet_id: 1,
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    };
    local.send(Packet::Publish(p)).await;
    let up = next_publish(&mut cloud).await;
    assert_eq!((up.qos, up.retain), (QoS::AtLeastOnce, false));
}

#[tokio::test]
async fn a_protocol_error_from_the_upstream_ends_the_link_and_the_bridge_reconnects() {
    let (_addr, _stop, upstream) = bridged().await;
    let (mut cloud, _) = accept(&upstream, session(false)).await;
    let mut p = Publish {
        topic: "down/a".into(),
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    };
    p.properties.topic_alias = Some(1);
    cloud.send(Packet::Publish(p)).await;
    assert_eq!(cloud.recv().await, None, "the bridge closes the link");
    // And comes back.
    let (_cloud, connect) = accept(&upstream, session(false)).await;
    assert_eq!(connect.client_id, "nanomq-bridge-cloud");
}
