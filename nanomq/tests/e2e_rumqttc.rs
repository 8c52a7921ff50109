//! End-to-end tests: the real `nanomq` binary against the `rumqttc` client (MQTT 3.1.1
//! and 5.0).
//!
//! Each test starts its own broker (`common::Broker`) with the shared end-to-end config, which
//! binds `127.0.0.1:0`, and kills it when the guard drops; the broker log is printed when a
//! test fails. Every await is wrapped in a timeout.
//!
//! `BROKER=mosquitto` runs the same tests against Debian's mosquitto instead, only to
//! check the tests themselves.

#[allow(dead_code)] // the helpers this suite does not use serve the others
mod common;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc as tmpsc;
use tokio::time::timeout;

use common::{parse_listening, unique_dir, Broker, START_TIMEOUT};

const STEP: Duration = Duration::from_secs(5);

/// The configuration shared by every end-to-end suite.
const CONFIG: &str = include_str!("../../tests/e2e/nanomq.toml");

// ------------------------------------------------------------------ broker process

fn use_mosquitto() -> bool {
    std::env::var("BROKER")
        .map(|b| b == "mosquitto")
        .unwrap_or(false)
}

impl Broker {
    fn start() -> Broker {
        let dir = unique_dir("nanomq-e2e-rumqttc");
        std::fs::create_dir_all(&dir).expect("create temp dir");
        if use_mosquitto() {
            Self::start_mosquitto(dir)
        } else {
            Self::start_nanomq(dir, CONFIG)
        }
    }

    fn start_mosquitto(dir: PathBuf) -> Broker {
        // Validation mode only: mosquitto cannot report a port-0 bind.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 100\nlog_dest stderr\n"
            ),
        )
        .expect("write config");
        let mut cmd = Command::new("mosquitto");
        cmd.arg("-c").arg(&config);
        let (mut broker, _) = Self::spawn(dir, cmd);
        broker.port = port;
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto not listening; log:\n{}",
                broker.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

fn client_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::SeqCst)
    )
}

// ------------------------------------------------------------------ rumqttc client wrappers

/// Defines, in the module that invokes it, `Client`: a rumqttc `AsyncClient` whose event
/// loop runs in a task, with the helpers both protocol versions share.
///
/// rumqttc has two parallel APIs, `rumqttc` (MQTT 3.1.1) and `rumqttc::v5` (MQTT 5.0),
/// whose types have the same names and shapes but share no traits, so one generic wrapper
/// cannot cover both. This macro holds the one copy of the wrapper logic; each version's
/// module passes the `use` items that bring in its own `AsyncClient`, `ConnAck`,
/// `ConnectReturnCode`, `Event`, `MqttOptions`, `Packet`, `Publish`, `QoS` and
/// `SubscribeReasonCode`, which the generated code (and the rest of the module) names.
/// Only what really differs between the versions (connect options, the `publish`
/// signature) is written in the modules themselves.
macro_rules! rumqttc_client {
    ($($imports:item)*) => {
        $($imports)*

        /// A client whose event loop runs in a task; events arrive on `rx`. The task stops
        /// at the first connection error, so a client never reconnects behind a test's back.
        pub(super) struct Client {
            pub(super) client: AsyncClient,
            rx: tmpsc::UnboundedReceiver<Result<Event, String>>,
            task: tokio::task::JoinHandle<()>,
        }

        impl Client {
            pub(super) async fn connect(opts: MqttOptions) -> (Client, ConnAck) {
                let (client, mut eventloop) = AsyncClient::new(opts, 100);
                let (tx, rx) = tmpsc::unbounded_channel();
                let task = tokio::spawn(async move {
                    loop {
                        match eventloop.poll().await {
                            Ok(ev) => {
                                if tx.send(Ok(ev)).is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e.to_string()));
                                return;
                            }
                        }
                    }
                });
                let mut c = Client { client, rx, task };
                let ack = c
                    .next_incoming(|p| match p {
                        Packet::ConnAck(a) => Some(a.clone()),
                        _ => None,
                    })
                    .await;
                assert_eq!(ack.code, ConnectReturnCode::Success, "{ack:?}");
                (c, ack)
            }

            /// The next incoming packet for which `f` returns Some, within STEP.
            pub(super) async fn next_incoming<T>(
                &mut self,
                f: impl Fn(&Packet) -> Option<T>,
            ) -> T {
                let deadline = tokio::time::Instant::now() + STEP;
                loop {
                    let ev = tokio::time::timeout_at(deadline, self.rx.recv())
                        .await
                        .expect("timed out waiting for an incoming packet")
                        .expect("event loop task ended");
                    match ev {
                        Ok(Event::Incoming(p)) => {
                            if let Some(v) = f(&p) {
                                return v;
                            }
                        }
                        Ok(Event::Outgoing(_)) => {}
                        Err(e) => panic!("connection error: {e}"),
                    }
                }
            }

            pub(super) async fn publishes(&mut self, n: usize) -> Vec<Publish> {
                let mut out = Vec::with_capacity(n);
                while out.len() < n {
                    out.push(
                        self.next_incoming(|p| match p {
                            Packet::Publish(p) => Some(p.clone()),
                            _ => None,
                        })
                        .await,
                    );
                }
                out
            }

            pub(super) async fn subscribe(&mut self, filter: &str, qos: QoS) {
                timeout(STEP, self.client.subscribe(filter, qos))
                    .await
                    .expect("subscribe request timed out")
                    .expect("subscribe request");
                let codes = self
                    .next_incoming(|p| match p {
                        Packet::SubAck(a) => Some(a.return_codes.clone()),
                        _ => None,
                    })
                    .await;
                assert_eq!(codes, vec![SubscribeReasonCode::Success(qos)], "{filter}");
            }

            /// After a publish request: for QoS 1/2, wait for the broker's PUBACK / PUBCOMP.
            async fn publish_acked(&mut self, qos: QoS) {
                match qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => {
                        self.next_incoming(|p| matches!(p, Packet::PubAck(_)).then_some(()))
                            .await
                    }
                    QoS::ExactlyOnce => {
                        self.next_incoming(|p| matches!(p, Packet::PubComp(_)).then_some(()))
                            .await
                    }
                }
            }

            pub(super) async fn disconnect(self) {
                let _ = timeout(STEP, self.client.disconnect()).await;
                let _ = timeout(STEP, self.task).await;
            }
        }
    };
}

// ------------------------------------------------------------------ MQTT 3.1.1 (rumqttc v4)

mod v4 {
    use super::*;

    rumqttc_client! {
        use rumqttc::{
            AsyncClient, ConnAck, ConnectReturnCode, Event, MqttOptions, Packet, Publish, QoS,
            SubscribeReasonCode,
        };
    }

    pub(super) fn options(broker: &Broker, id: &str, clean: bool) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", broker.port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_session(clean);
        o
    }

    impl Client {
        /// Publish and, for QoS 1/2, wait for the broker's PUBACK / PUBCOMP.
        pub(super) async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, body: &str) {
            timeout(
                STEP,
                self.client
                    .publish(topic, qos, retain, body.as_bytes().to_vec()),
            )
            .await
            .expect("publish request timed out")
            .expect("publish request");
            self.publish_acked(qos).await;
        }

        /// Nothing but pings for `wait`.
        pub(super) async fn expect_no_publish(&mut self, wait: Duration) {
            let deadline = tokio::time::Instant::now() + wait;
            while let Ok(ev) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
                if let Some(Ok(Event::Incoming(Packet::Publish(p)))) = ev {
                    panic!("unexpected publish: {p:?}");
                }
                if ev.is_none() {
                    return;
                }
            }
        }
    }
}

// ------------------------------------------------------------------ MQTT 5.0 (rumqttc v5)

mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{ConnectProperties, PublishProperties};

    rumqttc_client! {
        use rumqttc::v5::mqttbytes::v5::{
            ConnAck, ConnectReturnCode, Packet, Publish, SubscribeReasonCode,
        };
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    }

    pub(super) fn options(broker: &Broker, id: &str, clean: bool, expiry: u32) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", broker.port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_start(clean);
        let props = ConnectProperties {
            session_expiry_interval: Some(expiry),
            ..ConnectProperties::new()
        };
        o.set_connect_properties(props);
        o
    }

    impl Client {
        /// Publish (with `props` if given) and, for QoS 1/2, wait for the broker's
        /// PUBACK / PUBCOMP.
        pub(super) async fn publish(
            &mut self,
            topic: &str,
            qos: QoS,
            body: &str,
            props: Option<PublishProperties>,
        ) {
            let payload = Bytes::from(body.as_bytes().to_vec());
            let request = match props {
                Some(p) => {
                    timeout(
                        STEP,
                        self.client
                            .publish_with_properties(topic, qos, false, payload, p),
                    )
                    .await
                }
                None => timeout(STEP, self.client.publish(topic, qos, false, payload)).await,
            };
            request
                .expect("publish request timed out")
                .expect("publish request");
            self.publish_acked(qos).await;
        }
    }
}

// ------------------------------------------------------------------ tests: MQTT 3.1.1

#[tokio::test]
async fn v311_pubsub_qos_0_1_2() {
    use rumqttc::QoS;
    let broker = Broker::start();
    let (mut sub, _) = v4::Client::connect(v4::options(&broker, &client_id("sub"), true)).await;
    let (mut publ, _) = v4::Client::connect(v4::options(&broker, &client_id("pub"), true)).await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let topic = format!("rq/{}", qos as u8);
        sub.subscribe(&topic, qos).await;
        publ.publish(&topic, qos, false, "hello").await;
        let got = sub.publishes(1).await;
        assert_eq!(got[0].topic, topic);
        assert_eq!(&got[0].payload[..], b"hello");
        assert_eq!(got[0].qos, qos);
        assert!(!got[0].retain);
    }
    // Delivered QoS is the minimum of publish and subscription QoS.
    sub.subscribe("rq/down", QoS::AtMostOnce).await;
    publ.publish("rq/down", QoS::ExactlyOnce, false, "down")
        .await;
    assert_eq!(sub.publishes(1).await[0].qos, QoS::AtMostOnce);
    sub.expect_no_publish(Duration::from_millis(500)).await;
    sub.disconnect().await;
    publ.disconnect().await;
}

#[tokio::test]
async fn v311_retained_set_replace_clear() {
    use rumqttc::QoS;
    let broker = Broker::start();
    let (mut publ, _) = v4::Client::connect(v4::options(&broker, &client_id("pub"), true)).await;
    publ.publish("ret/t", QoS::AtLeastOnce, true, "v1").await;
    publ.publish("ret/t", QoS::AtLeastOnce, true, "v2").await;

    let (mut sub, _) = v4::Client::connect(v4::options(&broker, &client_id("sub"), true)).await;
    sub.subscribe("ret/#", QoS::AtLeastOnce).await;
    let got = sub.publishes(1).await;
    assert_eq!(
        (got[0].topic.as_str(), &got[0].payload[..]),
        ("ret/t", &b"v2"[..])
    );
    assert!(got[0].retain, "retained delivery carries RETAIN=1");
    sub.expect_no_publish(Duration::from_millis(500)).await;
    sub.disconnect().await;

    publ.publish("ret/t", QoS::AtLeastOnce, true, "").await;
    let (mut late, _) = v4::Client::connect(v4::options(&broker, &client_id("late"), true)).await;
    late.subscribe("ret/#", QoS::AtLeastOnce).await;
    late.expect_no_publish(Duration::from_millis(800)).await;
    late.disconnect().await;
    publ.disconnect().await;
}

#[tokio::test]
async fn v311_persistent_session_redelivers_on_reconnect() {
    use rumqttc::QoS;
    let broker = Broker::start();
    let id = client_id("persist");
    let (mut sub, ack) = v4::Client::connect(v4::options(&broker, &id, false)).await;
    assert!(!ack.session_present);
    sub.subscribe("persist/t", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let (mut publ, _) = v4::Client::connect(v4::options(&broker, &client_id("pub"), true)).await;
    for i in 0..5 {
        publ.publish("persist/t", QoS::AtLeastOnce, false, &format!("m{i}"))
            .await;
    }

    let (mut sub, ack) = v4::Client::connect(v4::options(&broker, &id, false)).await;
    assert!(ack.session_present, "session must be resumed");
    let got = sub.publishes(5).await;
    let bodies: Vec<_> = got
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
    assert!(got.iter().all(|p| p.qos == QoS::AtLeastOnce));
    sub.disconnect().await;
    publ.disconnect().await;
}

#[tokio::test]
async fn v311_wildcards() {
    use rumqttc::QoS;
    let broker = Broker::start();
    let (mut sub, _) = v4::Client::connect(v4::options(&broker, &client_id("sub"), true)).await;
    sub.subscribe("wc/+/x", QoS::AtLeastOnce).await;
    sub.subscribe("wh/#", QoS::AtLeastOnce).await;
    let (mut publ, _) = v4::Client::connect(v4::options(&broker, &client_id("pub"), true)).await;
    for t in ["wc/a/x", "wc/a/y", "wc/a/b/x", "wh", "wh/1/2", "other/wh"] {
        publ.publish(t, QoS::AtLeastOnce, false, t).await;
    }
    let mut topics: Vec<_> = sub
        .publishes(3)
        .await
        .into_iter()
        .map(|p| p.topic)
        .collect();
    topics.sort();
    assert_eq!(topics, ["wc/a/x", "wh", "wh/1/2"]);
    sub.expect_no_publish(Duration::from_millis(500)).await;
    sub.disconnect().await;
    publ.disconnect().await;
}

// ------------------------------------------------------------------ tests: MQTT 5.0

#[tokio::test]
async fn v5_pubsub_qos_and_properties() {
    use rumqttc::v5::mqttbytes::v5::PublishProperties;
    use rumqttc::v5::mqttbytes::QoS;
    let broker = Broker::start();
    let (mut sub, _) = v5::Client::connect(v5::options(&broker, &client_id("sub5"), true, 0)).await;
    let (mut publ, _) =
        v5::Client::connect(v5::options(&broker, &client_id("pub5"), true, 0)).await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let topic = format!("r5/{}", qos as u8);
        sub.subscribe(&topic, qos).await;
        let props = PublishProperties {
            content_type: Some("text/plain".into()),
            user_properties: vec![("k".into(), "v1".into()), ("k".into(), "v2".into())],
            correlation_data: Some(Bytes::from_static(b"\x00corr")),
            response_topic: Some("r5/reply".into()),
            ..Default::default()
        };
        publ.publish(&topic, qos, "hello5", Some(props)).await;
        let got = sub.publishes(1).await;
        let p = &got[0];
        assert_eq!(&p.topic[..], topic.as_bytes());
        assert_eq!(&p.payload[..], b"hello5");
        assert_eq!(p.qos, qos);
        let props = p.properties.clone().expect("properties");
        assert_eq!(props.content_type.as_deref(), Some("text/plain"));
        assert_eq!(
            props.user_properties,
            vec![
                ("k".to_string(), "v1".to_string()),
                ("k".into(), "v2".into())
            ]
        );
        assert_eq!(props.correlation_data.as_deref(), Some(&b"\x00corr"[..]));
        assert_eq!(props.response_topic.as_deref(), Some("r5/reply"));
    }
    sub.disconnect().await;
    publ.disconnect().await;
}

#[tokio::test]
async fn v5_persistent_session_redelivers_on_reconnect() {
    use rumqttc::v5::mqttbytes::QoS;
    let broker = Broker::start();
    let id = client_id("persist5");
    let (mut sub, ack) = v5::Client::connect(v5::options(&broker, &id, false, 60)).await;
    assert!(!ack.session_present);
    sub.subscribe("persist5/t", QoS::ExactlyOnce).await;
    sub.disconnect().await;

    let (mut publ, _) =
        v5::Client::connect(v5::options(&broker, &client_id("pub5"), true, 0)).await;
    for i in 0..3 {
        publ.publish("persist5/t", QoS::ExactlyOnce, &format!("m{i}"), None)
            .await;
    }

    let (mut sub, ack) = v5::Client::connect(v5::options(&broker, &id, false, 60)).await;
    assert!(ack.session_present, "session must be resumed");
    let got = sub.publishes(3).await;
    let bodies: Vec<_> = got.iter().map(|p| p.payload.clone()).collect();
    assert_eq!(bodies, [&b"m0"[..], &b"m1"[..], &b"m2"[..]]);
    assert!(got.iter().all(|p| p.qos == QoS::ExactlyOnce));
    sub.disconnect().await;
    publ.disconnect().await;
}

#[test]
fn parses_listening_line() {
    assert_eq!(
        parse_listening("2025-01-01T00:00:00Z  INFO nanomq: listening on tcp 127.0.0.1:40123"),
        Some(40123)
    );
    assert_eq!(
        parse_listening("\u{1b}[32m INFO\u{1b}[0m listening on tcp \u{1b}[1m127.0.0.1:7\u{1b}[0m"),
        Some(7)
    );
    assert_eq!(
        parse_listening("listening on tcp [::1]:1883 (v6)"),
        Some(1883)
    );
    assert_eq!(parse_listening("listening on ws 127.0.0.1:80"), None);
}
