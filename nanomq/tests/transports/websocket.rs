//! MQTT over WebSocket and WebSocket over TLS.

use bytes::Bytes;
use nanomq::mqtt::{Packet, ProtocolVersion};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::client::{
    connect_packet, encoded, mqtt_over_ws, subscribe_packet, tls_config, tls_connect, ws_handshake,
    MqttClient, BOTH_VERSIONS,
};
use crate::pki::Pki;
use crate::{listener, TestBroker};

/// A broker with `ws`, `wss` and `tcp` listeners, in that order.
async fn broker(pki: &Pki) -> TestBroker {
    let toml = listener("ws", "") + &listener("wss", &pki.tls_table("")) + &listener("tcp", "");
    TestBroker::start(&toml).await
}

async fn tcp(broker: &TestBroker, i: usize) -> TcpStream {
    TcpStream::connect(broker.addr(i)).await.unwrap()
}

#[tokio::test]
async fn subprotocol_is_echoed_and_other_paths_get_404() {
    let pki = Pki::new();
    let broker = broker(&pki).await;
    let echoed = |response: &tokio_tungstenite::tungstenite::handshake::client::Response| {
        let header = response.headers().get("sec-websocket-protocol");
        header.map(|v| v.to_str().unwrap().to_owned())
    };
    for asked in ["mqtt", "mqttv3.1"] {
        let stream = tcp(&broker, 0).await;
        let (_, response) = ws_handshake(stream, "/mqtt", Some(asked)).await.unwrap();
        assert_eq!(echoed(&response).as_deref(), Some(asked));
    }
    let (_, response) = ws_handshake(tcp(&broker, 0).await, "/mqtt", None)
        .await
        .unwrap();
    assert_eq!(echoed(&response), None);

    // WSS offers ALPN http/1.1 by default.
    let mut config = tls_config(&pki.ca, BOTH_VERSIONS, None);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = tls_connect(broker.addr(1), config).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (_, response) = ws_handshake(tls, "/mqtt", Some("mqtt")).await.unwrap();
    assert_eq!(echoed(&response).as_deref(), Some("mqtt"));

    match ws_handshake(tcp(&broker, 0).await, "/other", Some("mqtt")).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 404),
        Err(e) => panic!("expected HTTP 404, got {e}"),
        Ok(_) => panic!("expected HTTP 404, got an upgrade"),
    }
}

#[tokio::test]
async fn packets_split_across_frames_and_joined_in_one() {
    let pki = Pki::new();
    let broker = broker(&pki).await;
    let v5 = ProtocolVersion::V5;

    let (ws, _) = ws_handshake(tcp(&broker, 0).await, "/mqtt", Some("mqtt"))
        .await
        .unwrap();
    let mut split = MqttClient::new(ws, v5);
    // An empty binary message carries no bytes: it must not read as the end of the stream.
    split
        .stream
        .send_message(Message::binary(Bytes::new()))
        .await
        .unwrap();
    let connect = encoded(&[connect_packet(v5, "split")], v5).freeze();
    let third = connect.len() / 3;
    for part in [0..third, third..2 * third, 2 * third..connect.len()] {
        let frame = Message::Binary(connect.slice(part));
        split.stream.send_message(frame).await.unwrap();
    }
    assert!(split.expect_connack().await);

    let (ws, _) = ws_handshake(tcp(&broker, 0).await, "/mqtt", Some("mqtt"))
        .await
        .unwrap();
    let mut joined = MqttClient::new(ws, v5);
    let both = encoded(
        &[connect_packet(v5, "joined"), subscribe_packet("ws/joined")],
        v5,
    );
    let frame = Message::Binary(both.freeze());
    joined.stream.send_message(frame).await.unwrap();
    assert!(joined.expect_connack().await);
    joined.expect_suback().await;

    split.publish("ws/joined", b"framed").await;
    joined.expect_publish("ws/joined", b"framed").await;
}

#[tokio::test]
async fn messages_route_between_tcp_ws_and_wss() {
    let pki = Pki::new();
    let broker = broker(&pki).await;
    let mut ws = mqtt_over_ws(tcp(&broker, 0).await, "ws-sub").await;
    let tls = tls_connect(broker.addr(1), tls_config(&pki.ca, BOTH_VERSIONS, None));
    let mut wss = mqtt_over_ws(tls.await.unwrap(), "wss-sub").await;
    let mut plain = MqttClient::connect(tcp(&broker, 2).await, ProtocolVersion::V311, "tcp").await;
    ws.subscribe("cross/#").await;
    wss.subscribe("cross/#").await;
    plain.subscribe("cross/#").await;

    plain.publish("cross/from-tcp", b"1").await;
    ws.expect_publish("cross/from-tcp", b"1").await;
    wss.expect_publish("cross/from-tcp", b"1").await;
    plain.expect_publish("cross/from-tcp", b"1").await;

    wss.publish("cross/from-wss", b"2").await;
    ws.expect_publish("cross/from-wss", b"2").await;
    plain.expect_publish("cross/from-wss", b"2").await;
    wss.expect_publish("cross/from-wss", b"2").await;
}

#[tokio::test]
async fn pings_are_answered_and_text_frames_refused() {
    let pki = Pki::new();
    let broker = broker(&pki).await;
    let mut client = mqtt_over_ws(tcp(&broker, 0).await, "control").await;
    let ws = &mut client.stream;
    let hello = Bytes::from_static(b"hello");
    ws.send_message(Message::Ping(hello.clone())).await.unwrap();
    match ws.next_message().await {
        Some(Ok(Message::Pong(payload))) => assert_eq!(payload, hello),
        other => panic!("expected Pong, got {other:?}"),
    }
    client.ping().await;

    let ws = &mut client.stream;
    ws.send_message(Message::text("PINGREQ")).await.unwrap();
    loop {
        match ws.next_message().await {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(Message::Binary(data))) => {
                // A v5 DISCONNECT before the close is fine; anything else is not.
                let mut buf = bytes::BytesMut::from(&data[..]);
                let packet = nanomq::mqtt::decode(&mut buf, ProtocolVersion::V5, u32::MAX);
                assert!(
                    matches!(packet, Ok(Some(Packet::Disconnect(_)))),
                    "{packet:?}"
                );
            }
            Some(Ok(other)) => panic!("expected the connection to close, got {other:?}"),
        }
    }
}
