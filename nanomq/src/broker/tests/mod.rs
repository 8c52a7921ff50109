//! In-process broker tests on the paused tokio clock: timers (keepalive, CONNECT timeout, will
//! delay, session expiry) are checked exactly and instantly over real loopback sockets.
//! `limits` checks every configured limit and capability switch the same way; `auth` the
//! password file and the ACL; `scram` enhanced authentication; `http_auth` the HTTP auth
//! service, against a real HTTP server; `bridge` bridges against a scripted upstream.

mod auth;
#[cfg(feature = "bridge")]
mod bridge;
mod http_auth;
mod limits;
mod scram;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::Config;
use crate::mqtt::{
    decode, encode, ConnAck, Connect, Packet, Properties, ProtocolVersion, QoS, ReasonCode,
    Subscribe, SubscriptionOptions, Will,
};

/// Longer than any broker timer these tests wait for; instant on the paused clock.
const RECV_LIMIT: Duration = Duration::from_secs(60);

/// Starts a broker on 127.0.0.1:0; it stops when the returned sender is dropped.
async fn start(config: Config) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let (addr, stop, _) = start_with_auth(config).await;
    (addr, stop)
}

/// [`start`], also returning the broker's authenticator, for reload.
async fn start_with_auth(
    mut config: Config,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::sync::Arc<crate::auth::Authenticator>,
) {
    config.listeners[0].bind = "127.0.0.1:0".parse().unwrap();
    let listeners = super::bind(&config).await.unwrap();
    let addr = listeners[0].local_addr();
    let auth = std::sync::Arc::new(crate::auth::Authenticator::load(&config.auth).unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let health = crate::service::Health::new();
    let live = super::Live::new(&config, auth.clone());
    tokio::spawn(super::serve(
        config,
        live,
        listeners,
        health,
        None,
        async move {
            let _ = rx.await;
        },
    ));
    (addr, tx, auth)
}

/// A minimal client on the project's own codec.
struct Client {
    stream: TcpStream,
    rbuf: BytesMut,
    version: ProtocolVersion,
}

impl Client {
    async fn open(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            rbuf: BytesMut::new(),
            version: ProtocolVersion::V5,
        }
    }

    async fn connect(addr: SocketAddr, c: Connect) -> (Client, ConnAck) {
        let mut client = Client::open(addr).await;
        client.version = c.protocol;
        client.send(Packet::Connect(Box::new(c))).await;
        match client.recv().await {
            Some(Packet::ConnAck(a)) => (client, a),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        encode(&p, self.version, &mut out);
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next packet, or None once the broker closed the connection. Panics after
    /// [`RECV_LIMIT`] so a broker that never answers fails the test instead of hanging it.
    async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(RECV_LIMIT, self.recv_unbounded())
            .await
            .expect("no packet and no close from the broker")
    }

    async fn recv_unbounded(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = decode(&mut self.rbuf, self.version, u32::MAX).unwrap() {
                return Some(p);
            }
            match self.stream.read_buf(&mut self.rbuf).await {
                Ok(n) if n > 0 => {}
                _ => return None,
            }
        }
    }
}

async fn suback(c: &mut Client, p: Packet) -> crate::mqtt::SubAck {
    c.send(p).await;
    match c.recv().await {
        Some(Packet::SubAck(a)) => a,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// A client subscribed to every will topic these tests use.
async fn watcher(addr: SocketAddr) -> Client {
    let (mut c, _) = Client::connect(addr, v5("watcher", 0, 0)).await;
    suback(&mut c, subscribe("will/#")).await;
    c
}

/// Asserts that `secs` whole seconds, and less than one more, passed since `t0`: exact on the
/// paused clock, so an early or late timer fails.
fn assert_waited(t0: Instant, secs: u64) {
    let waited = t0.elapsed();
    let expected = Duration::from_secs(secs);
    assert!(
        waited >= expected && waited < expected + Duration::from_secs(1),
        "expected {secs} s, waited {waited:?}"
    );
}

fn v5(client_id: &str, keep_alive: u16, expiry: u32) -> Connect {
    Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive,
        client_id: client_id.into(),
        properties: Properties {
            session_expiry_interval: Some(expiry),
            ..Properties::default()
        },
        ..Connect::default()
    }
}

fn subscribe(filter: &str) -> Packet {
    subscribe_all(&[filter], QoS::AtLeastOnce)
}

fn subscribe_all(filters: &[&str], qos: QoS) -> Packet {
    let options = SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    };
    Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: filters.iter().map(|f| (f.to_string(), options)).collect(),
        ..Subscribe::default()
    })
}

fn with_will(mut c: Connect, delay: u32) -> Connect {
    c.will = Some(Will {
        topic: "will/t".into(),
        payload: Bytes::from_static(b"gone"),
        properties: Properties {
            will_delay_interval: Some(delay),
            ..Properties::default()
        },
        ..Will::default()
    });
    c
}

#[tokio::test(start_paused = true)]
async fn keepalive_is_enforced_at_one_and_a_half_times() {
    let (addr, _stop) = start(Config::default()).await;
    let (mut c, ack) = Client::connect(addr, v5("ka", 10, 0)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let t0 = Instant::now();
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::KEEP_ALIVE_TIMEOUT),
        other => panic!("{other:?}"),
    }
    assert_waited(t0, 15);
}

#[tokio::test(start_paused = true)]
async fn a_takeover_without_keepalive_keeps_no_stale_deadline() {
    let (addr, _stop) = start(Config::default()).await;
    let (mut old, _) = Client::connect(addr, v5("ka-then-none", 2, 0)).await;
    let (mut new, ack) = Client::connect(addr, v5("ka-then-none", 0, 0)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    match old.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    new.send(Packet::PingReq).await;
    assert_eq!(new.recv().await, Some(Packet::PingResp));
}

#[tokio::test(start_paused = true)]
async fn ping_keeps_the_connection_alive() {
    let (addr, _stop) = start(Config::default()).await;
    let (mut c, _) = Client::connect(addr, v5("ping", 10, 0)).await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(9)).await;
        c.send(Packet::PingReq).await;
        assert_eq!(c.recv().await, Some(Packet::PingResp));
    }
}

#[tokio::test(start_paused = true)]
async fn server_keep_alive_caps_the_clients_request() {
    let mut config = Config::default();
    config.limits.max_keepalive = 60;
    let (addr, _stop) = start(config).await;
    let (_c, ack) = Client::connect(addr, v5("cap", 300, 0)).await;
    assert_eq!(ack.properties.server_keep_alive, Some(60));
}

#[tokio::test(start_paused = true)]
async fn silent_sockets_are_closed_at_the_connect_timeout() {
    let mut config = Config::default();
    config.limits.connect_timeout_secs = 7;
    let (addr, _stop) = start(config).await;
    let mut c = Client::open(addr).await;
    let t0 = Instant::now();
    assert_eq!(c.recv().await, None);
    assert_waited(t0, 7);
}

#[tokio::test(start_paused = true)]
async fn will_waits_for_its_delay() {
    let (addr, _stop) = start(Config::default()).await;
    let mut watcher = watcher(addr).await;
    let (dying, _) = Client::connect(addr, with_will(v5("dying", 0, 100), 5)).await;
    let t0 = Instant::now();
    drop(dying);
    match watcher.recv().await {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"gone"),
        other => panic!("{other:?}"),
    }
    assert_waited(t0, 5);
}

#[tokio::test(start_paused = true)]
async fn reconnect_within_the_will_delay_cancels_the_will() {
    let (addr, _stop) = start(Config::default()).await;
    let mut watcher = watcher(addr).await;
    let (dying, _) = Client::connect(addr, with_will(v5("back", 0, 100), 5)).await;
    drop(dying);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_again, ack) = Client::connect(addr, v5("back", 0, 100)).await;
    assert!(ack.session_present);
    let nothing = tokio::time::timeout(Duration::from_secs(30), watcher.recv_unbounded()).await;
    assert!(nothing.is_err(), "no will expected, got {nothing:?}");
}

#[tokio::test(start_paused = true)]
async fn session_expiry_ends_the_session_and_sends_a_longer_delayed_will() {
    let (addr, _stop) = start(Config::default()).await;
    let mut watcher = watcher(addr).await;
    let (mut c, _) = Client::connect(addr, with_will(v5("short", 0, 3), 60)).await;
    suback(&mut c, subscribe("x")).await;
    let t0 = Instant::now();
    drop(c);
    assert!(matches!(watcher.recv().await, Some(Packet::Publish(_))));
    assert_waited(t0, 3);
    let (_c, ack) = Client::connect(addr, v5("short", 0, 3)).await;
    assert!(!ack.session_present, "the session expired");
}
