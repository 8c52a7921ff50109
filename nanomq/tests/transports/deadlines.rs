//! Time limits at both ends of a connection's life: one CONNECT deadline from accept to
//! CONNECT, transport handshake included, and graceful shutdown for every transport.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nanomq::mqtt::{ProtocolVersion, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{
    mqtt_over_ws, read_until_closed, server_name, tls_config, tls_connect, within, MqttClient,
    BOTH_VERSIONS,
};
use crate::pki::Pki;
use crate::{listener, TestBroker};

/// `limits.connect_timeout_secs` in these tests.
const DEADLINE: Duration = Duration::from_secs(1);
/// How late after the deadline the broker may close a socket on a busy machine. Generous: that
/// one deadline covers handshake and CONNECT is shown by the dripped ClientHello, closed less
/// than the deadline after its handshake ended, however loaded the machine.
const SLACK: Duration = Duration::from_millis(1500);

/// Asserts that a socket opened at `t0` was closed (just now) at the CONNECT deadline; returns
/// how long it lived.
fn assert_closed_at_deadline(t0: Instant, what: &str) -> Duration {
    let waited = t0.elapsed();
    assert!(
        waited >= DEADLINE - Duration::from_millis(100) && waited < DEADLINE + SLACK,
        "{what}: closed after {waited:?}, expected {DEADLINE:?}"
    );
    waited
}

async fn silent_tcp(addr: std::net::SocketAddr) {
    let t0 = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    read_until_closed(&mut tcp).await;
    assert_closed_at_deadline(t0, "a silent socket on a TLS listener");
}

async fn half_http_request(addr: std::net::SocketAddr) {
    let t0 = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let half = b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n";
    tcp.write_all(half).await.unwrap();
    read_until_closed(&mut tcp).await;
    assert_closed_at_deadline(t0, "half an HTTP request on a WS listener");
}

async fn tls_without_connect(addr: std::net::SocketAddr, pki: &Pki) {
    let t0 = Instant::now();
    let mut tls = tls_connect(addr, tls_config(&pki.ca, BOTH_VERSIONS, None))
        .await
        .unwrap();
    read_until_closed(&mut tls).await;
    assert_closed_at_deadline(t0, "a TLS session without CONNECT");
}

/// Sends the ClientHello in pieces over most of the deadline, completes the handshake and then
/// sends nothing: the broker must close at the deadline counted from accept, not a full
/// deadline after the handshake.
async fn dripped_client_hello(addr: std::net::SocketAddr, pki: &Pki) {
    let config = Arc::new(tls_config(&pki.ca, BOTH_VERSIONS, None));
    let mut tls = rustls::ClientConnection::new(config, server_name()).unwrap();
    let mut hello = Vec::new();
    tls.write_tls(&mut hello).unwrap();
    let t0 = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let pieces: Vec<&[u8]> = hello.chunks(hello.len().div_ceil(6)).collect();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
        tcp.write_all(piece).await.unwrap();
    }
    within("the rest of the TLS handshake", async {
        let mut buf = vec![0u8; 16 * 1024];
        while tls.is_handshaking() {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed during the handshake after {:?}",
                t0.elapsed()
            );
            tls.read_tls(&mut &buf[..n]).unwrap();
            tls.process_new_packets().unwrap();
            let mut out = Vec::new();
            while tls.wants_write() {
                tls.write_tls(&mut out).unwrap();
            }
            tcp.write_all(&out).await.unwrap();
        }
    })
    .await;
    let handshake = t0.elapsed();
    assert!(handshake < DEADLINE, "the handshake took {handshake:?}");
    read_until_closed(&mut tcp).await;
    let closed = assert_closed_at_deadline(t0, "a dripped ClientHello and no CONNECT");
    // The broker's side of the handshake ends after the client's: a deadline that started
    // over for CONNECT would leave at least a whole one between the two.
    let after_handshake = closed - handshake;
    assert!(
        after_handshake < DEADLINE - Duration::from_millis(100),
        "closed {after_handshake:?} after the handshake ended: the deadline started over"
    );
}

#[tokio::test]
async fn one_deadline_covers_the_transport_handshake_and_connect() {
    let pki = Pki::new();
    let toml = format!(
        "[limits]\nconnect_timeout_secs = {}\n{}{}",
        DEADLINE.as_secs(),
        listener("tls", &pki.tls_table("")),
        listener("ws", "")
    );
    let broker = TestBroker::start(&toml).await;
    let (tls, ws) = (broker.addr(0), broker.addr(1));
    tokio::join!(
        silent_tcp(tls),
        half_http_request(ws),
        tls_without_connect(tls, &pki),
        dripped_client_hello(tls, &pki),
    );
}

#[tokio::test]
async fn shutdown_says_goodbye_over_tls_ws_and_wss() {
    let pki = Pki::new();
    let toml = listener("tls", &pki.tls_table(""))
        + &listener("ws", "")
        + &listener("wss", &pki.tls_table(""));
    let broker = TestBroker::start(&toml).await;
    let tls = || tls_config(&pki.ca, BOTH_VERSIONS, None);
    let v5 = ProtocolVersion::V5;
    let stream = tls_connect(broker.addr(0), tls()).await.unwrap();
    let mut over_tls = MqttClient::connect(stream, v5, "tls").await;
    let stream = TcpStream::connect(broker.addr(1)).await.unwrap();
    let mut over_ws = mqtt_over_ws(stream, "ws").await;
    let stream = tls_connect(broker.addr(2), tls()).await.unwrap();
    let mut over_wss = mqtt_over_ws(stream, "wss").await;

    broker.shutdown().await;
    over_tls
        .expect_disconnect(ReasonCode::SERVER_SHUTTING_DOWN)
        .await;
    over_ws
        .expect_disconnect(ReasonCode::SERVER_SHUTTING_DOWN)
        .await;
    over_wss
        .expect_disconnect(ReasonCode::SERVER_SHUTTING_DOWN)
        .await;
    assert_eq!(over_tls.recv().await, None);
    assert_eq!(over_ws.recv().await, None);
    assert_eq!(over_wss.recv().await, None);
}
