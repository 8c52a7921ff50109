//! 10,000 connections to the TLS listener, 64 at a time. Client `i` does, by `i % 8`:
//!
//! - 0 to 3, abandoned handshakes: closed right after connecting, closed after part of a
//!   ClientHello, reset (SO_LINGER 0) right after connecting, reset after part of a ClientHello;
//! - 4 and 5, garbage instead of a ClientHello, which the broker must refuse before the CONNECT
//!   deadline: random bytes, an HTTP request, a plain-TCP MQTT CONNECT, a TLS record longer than
//!   TLS allows, a ClientHello record with a random body, an SSLv2-style hello;
//! - 6 and 7, a whole session: TLS 1.3 or 1.2 (alternately), CONNECT (MQTT 5 or 3.1.1),
//!   CONNACK, DISCONNECT.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use nanomq::mqtt::{encode, Connect, Packet, ProtocolVersion};
use tokio::net::TcpStream;

use crate::clients::{client_hello, read_until_closed, send_quietly, tls, Mqtt};
use crate::crowd::{run_bounded, Noise, Tally};
use crate::probe::PeakSampler;
use crate::{Endpoints, StormBroker, CONCURRENCY, CONNECT_TIMEOUT, MARGIN, STORM};

const ABANDONED: [&str; 4] = [
    "closed after connect",
    "closed mid-ClientHello",
    "reset after connect",
    "reset mid-ClientHello",
];
const GARBAGE: [&str; 6] = [
    "garbage: random bytes",
    "garbage: HTTP request",
    "garbage: plain MQTT CONNECT",
    "garbage: oversized TLS record",
    "garbage: ClientHello of noise",
    "garbage: SSLv2 hello",
];
const COMPLETED: [&str; 2] = [
    "completed: TLS 1.3, MQTT 5",
    "completed: TLS 1.2, MQTT 3.1.1",
];

#[test]
fn ten_thousand_hostile_tls_connections() {
    let _alone = crate::one_at_a_time();
    let mut broker = StormBroker::start("tls");
    crate::run("tls storm", async {
        let before = broker.warm_up().await;
        let endpoints = broker.endpoints.clone();
        let hello: Arc<[u8]> = client_hello(endpoints.tls13.clone()).into();
        let tally = Arc::new(Tally::default());
        let peak = PeakSampler::start(broker.pid());
        let t0 = Instant::now();
        let counted = tally.clone();
        run_bounded(STORM, CONCURRENCY, move |i| {
            let (endpoints, hello, tally) = (endpoints.clone(), hello.clone(), counted.clone());
            async move { one_client(&endpoints, &hello, i, &tally).await }
        })
        .await;
        let took = t0.elapsed();
        let peak = peak.finish();
        tally.print(&format!("tls storm: {STORM} connections in {took:.1?}"));
        assert_eq!(tally.total(), STORM);
        let count = |names: &[&str]| names.iter().map(|n| tally.count(n)).sum::<usize>();
        assert_eq!(count(&ABANDONED), STORM / 2);
        assert_eq!(count(&GARBAGE), STORM / 4);
        assert_eq!(count(&COMPLETED), STORM / 4);
        broker.assert_recovered("tls storm", &before, peak).await;
    });
}

async fn one_client(to: &Endpoints, hello: &[u8], i: usize, tally: &Tally) {
    let mut noise = Noise::new(i as u64);
    let t0 = Instant::now();
    let what = match i % 8 {
        n @ 0..=3 => {
            let mut tcp = connect(to, i).await;
            if n % 2 == 1 {
                let cut = noise.range(1, hello.len());
                send_quietly(&mut tcp, &hello[..cut]).await;
            }
            if n >= 2 {
                tcp.set_zero_linger().unwrap();
            }
            drop(tcp);
            ABANDONED[n]
        }
        4 | 5 => {
            let variant = (i / 8 * 2 + i % 8 - 4) % GARBAGE.len();
            let mut tcp = connect(to, i).await;
            send_quietly(&mut tcp, &garbage(variant, &mut noise)).await;
            let limit = CONNECT_TIMEOUT + MARGIN;
            if let Err(e) = read_until_closed(&mut tcp, limit).await {
                panic!("client {i} ({}): {e}", GARBAGE[variant]);
            }
            GARBAGE[variant]
        }
        _ => {
            let (config, version, what) = match (i / 8) % 2 {
                0 => (&to.tls13, ProtocolVersion::V5, COMPLETED[0]),
                _ => (&to.tls12, ProtocolVersion::V311, COMPLETED[1]),
            };
            let session = async {
                let stream = tls(to.tls, config.clone()).await?;
                let client = Mqtt::connect(stream, version, &format!("tls-storm-{i}")).await?;
                client.disconnect().await
            };
            if let Err(e) = session.await {
                panic!("client {i} ({what}): {e}");
            }
            what
        }
    };
    tally.add(what, t0.elapsed());
}

async fn connect(to: &Endpoints, i: usize) -> TcpStream {
    match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(to.tls)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => panic!("client {i}: cannot connect: {e}"),
        Err(_) => panic!("client {i}: connect timed out"),
    }
}

/// Bytes that are not a ClientHello, each refused by rustls as soon as it reads them.
fn garbage(variant: usize, noise: &mut Noise) -> Vec<u8> {
    match variant {
        0 => {
            let len = noise.range(1, 600);
            let mut bytes = noise.bytes(len);
            // Not a TLS content type (20 to 24), which would make this a record header.
            bytes[0] = noise.range(25, 256) as u8;
            bytes
        }
        1 => b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n".to_vec(),
        2 => {
            let connect = Connect {
                protocol: ProtocolVersion::V5,
                clean_start: true,
                client_id: "forgot-tls".into(),
                ..Connect::default()
            };
            let mut out = BytesMut::new();
            encode(
                &Packet::Connect(Box::new(connect)),
                ProtocolVersion::V5,
                &mut out,
            );
            out.to_vec()
        }
        3 => {
            let mut record = vec![0x16, 0x03, 0x01, 0xff, 0xff];
            record.extend(noise.bytes(512));
            record
        }
        4 => {
            // A handshake record holding a whole ClientHello message of 60 random bytes.
            let mut record = vec![0x16, 0x03, 0x01, 0x00, 64, 0x01, 0x00, 0x00, 60];
            record.extend(noise.bytes(60));
            record
        }
        _ => {
            // The SSLv2-compatible ClientHello of very old clients.
            let mut hello = vec![
                0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
            ];
            hello.extend(noise.bytes(0x2e - 9));
            hello
        }
    }
}
