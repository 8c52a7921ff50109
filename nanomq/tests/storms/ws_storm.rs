//! 10,000 WebSocket upgrades on the ws listener that must all fail, 64 at a time. Client `i`
//! sends, by `i % 7`: a request without Sec-WebSocket-Key; one with a version other than 13;
//! one for another path (answered 404); a garbage request line; a header block over
//! tungstenite's 64 KiB limit, or with more headers than it takes; a POST; half a request,
//! then a close or a reset. Every client but the last waits for the broker to close, which
//! must happen before the CONNECT deadline, and none may see `101 Switching Protocols`.

use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;

use crate::clients::{client_hello, read_until_closed, send_quietly};
use crate::crowd::{run_bounded, Noise, Tally};
use crate::probe::PeakSampler;
use crate::{Endpoints, StormBroker, CONCURRENCY, CONNECT_TIMEOUT, MARGIN, STORM};

const CASES: [&str; 7] = [
    "no Sec-WebSocket-Key",
    "Sec-WebSocket-Version not 13",
    "another path (404)",
    "garbage request line",
    "oversized header block",
    "POST",
    "half a request",
];

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// An upgrade request that would succeed, with `method`, `path`, the key line and the version
/// given, and `extra` header lines.
fn request(method: &str, path: &str, key: &str, version: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\n{key}Sec-WebSocket-Version: {version}\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n{extra}\r\n"
    )
    .into_bytes()
}

#[test]
fn ten_thousand_broken_websocket_upgrades() {
    let _alone = crate::one_at_a_time();
    let mut broker = StormBroker::start("ws");
    crate::run("ws storm", async {
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
        tally.print(&format!("ws storm: {STORM} upgrades in {took:.1?}"));
        assert_eq!(tally.total(), STORM);
        for case in CASES {
            assert!(tally.count(case) >= STORM / CASES.len(), "{case}");
        }
        broker.assert_recovered("ws storm", &before, peak).await;
    });
}

async fn one_client(to: &Endpoints, hello: &[u8], i: usize, tally: &Tally) {
    let mut noise = Noise::new(i as u64);
    let round = i / CASES.len();
    let case = i % CASES.len();
    let bytes = match case {
        0 => request("GET", "/mqtt", "", "13", ""),
        1 => {
            let version = ["8", "12", "14", "", "banana"][round % 5];
            request("GET", "/mqtt", KEY, version, "")
        }
        2 => {
            let path = ["/", "/mqtt/", "/MQTT", "/other", "/mqtt/extra"][round % 5];
            request("GET", path, KEY, "13", "")
        }
        3 => match round % 4 {
            0 => {
                let len = noise.range(1, 300);
                let mut line = noise.bytes(len);
                line[0] = noise.range(0, 32) as u8; // a control byte: never a method
                line.extend_from_slice(b"\r\n\r\n");
                line
            }
            1 => hello.to_vec(),
            2 => b"HELLO WORLD\r\n\r\n".to_vec(),
            _ => b"GET /mqtt\r\nHost: localhost\r\n\r\n".to_vec(),
        },
        4 => {
            let extra = if round.is_multiple_of(2) {
                format!("X-Padding: {}\r\n", "a".repeat(70 * 1024))
            } else {
                (0..200).map(|n| format!("X-Header-{n}: {n}\r\n")).collect()
            };
            request("GET", "/mqtt", KEY, "13", &extra)
        }
        5 => request("POST", "/mqtt", KEY, "13", ""),
        _ => {
            let whole = request("GET", "/mqtt", KEY, "13", "");
            let cut = noise.range(1, whole.len() - 2);
            whole[..cut].to_vec()
        }
    };
    let t0 = Instant::now();
    let mut tcp = match TcpStream::connect(to.ws).await {
        Ok(tcp) => tcp,
        Err(e) => panic!("client {i} ({}): cannot connect: {e}", CASES[case]),
    };
    send_quietly(&mut tcp, &bytes).await;
    if case == 6 {
        if round % 2 == 1 {
            tcp.set_zero_linger().unwrap();
        }
        drop(tcp);
        return tally.add(CASES[case], t0.elapsed());
    }
    let answer = match read_until_closed(&mut tcp, CONNECT_TIMEOUT + MARGIN).await {
        Ok(answer) => answer,
        Err(e) => panic!("client {i} ({}): {e}", CASES[case]),
    };
    let status = answer.split(|&b| b == b'\r').next().unwrap_or_default();
    let status = String::from_utf8_lossy(status);
    if case == 2 {
        assert_eq!(status, "HTTP/1.1 404 Not Found", "client {i}");
    } else {
        assert!(
            !status.contains("101"),
            "client {i} ({}): {status}",
            CASES[case]
        );
    }
    tally.add(CASES[case], t0.elapsed());
}
