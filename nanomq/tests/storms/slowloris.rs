//! Slowloris: on each of the tcp, tls and ws listeners, 200 sockets that connect and send
//! nothing and 200 that dribble the start of their handshake one byte a second (a CONNECT, a
//! ClientHello, an upgrade request). The broker must accept them all, serve normal clients on
//! every listener while they hang, close each at the CONNECT deadline counted from its accept,
//! and end up holding no more descriptors than before.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use nanomq::mqtt::{encode, Connect, Packet, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clients::{client_hello, round_trip_everywhere, Kind};
use crate::probe::{eventually, open_fds};
use crate::{StormBroker, CONNECT_TIMEOUT, MARGIN, SETTLE};

/// Sockets per behaviour (silent, dribbling) per listener.
const SLOW: usize = 200;

#[test]
fn slow_sockets_are_closed_at_the_connect_deadline() {
    let _alone = crate::one_at_a_time();
    let mut broker = StormBroker::start("slowloris");
    crate::run("slowloris", async {
        let pid = broker.pid();
        let idle_fds = open_fds(pid);
        let to = broker.endpoints.clone();
        let mut sockets = tokio::task::JoinSet::new();
        for kind in Kind::ALL {
            let (addr, first_bytes) = match kind {
                Kind::Tcp => (to.tcp, connect_packet()),
                Kind::Tls => (to.tls, client_hello(to.tls13.clone())),
                Kind::Ws => (to.ws, upgrade_request()),
            };
            let first_bytes: Arc<[u8]> = first_bytes.into();
            for n in 0..2 * SLOW {
                let dribble = (n % 2 == 1).then(|| first_bytes.clone());
                let how = if dribble.is_some() {
                    "dribbling"
                } else {
                    "silent"
                };
                sockets.spawn(async move { (kind, how, slow_socket(addr, dribble).await) });
            }
        }
        let all = 2 * SLOW * Kind::ALL.len();

        // All accepted at once: a listen backlog shorter than the burst drops SYNs, and each
        // client dropped waits a second for its retry.
        let t0 = Instant::now();
        let accepted = eventually(CONNECT_TIMEOUT / 2, || open_fds(pid) >= idle_fds + all).await;
        let open_now = open_fds(pid) - idle_fds;
        assert!(
            accepted,
            "{open_now} of {all} slow sockets accepted after {:.1?}",
            t0.elapsed()
        );
        println!(
            "slowloris: {all} slow sockets accepted in {:.1?}",
            t0.elapsed()
        );
        let t0 = Instant::now();
        round_trip_everywhere(&to, "slowloris").await;
        let served_in = t0.elapsed();
        let still_open = open_fds(pid).saturating_sub(idle_fds);
        println!(
            "slowloris: {all} slow sockets open; tcp, tls and ws clients served in \
             {served_in:.1?} with {still_open} sockets still open"
        );
        assert!(
            still_open >= all,
            "slow sockets were closed ({still_open} of {all} left) before normal clients \
             were served ({served_in:?})"
        );

        let mut lifetimes: BTreeMap<(&str, &str), Vec<Duration>> = BTreeMap::new();
        while let Some(done) = sockets.join_next().await {
            let (kind, how, lived) = done.unwrap();
            match lived {
                Ok(lived) => lifetimes.entry((kind.name(), how)).or_default().push(lived),
                Err(e) => panic!("a {how} socket on {}: {e}", kind.name()),
            }
        }
        println!("slowloris: lifetimes with a {CONNECT_TIMEOUT:?} CONNECT timeout:");
        for ((kind, how), lived) in &mut lifetimes {
            lived.sort();
            let (min, median, max) = (lived[0], lived[lived.len() / 2], lived[lived.len() - 1]);
            println!(
                "  {:>3} {how:>9} {kind:>3}: min {min:.2?}, median {median:.2?}, max {max:.2?}",
                lived.len()
            );
            assert!(
                min >= CONNECT_TIMEOUT && max <= CONNECT_TIMEOUT + MARGIN,
                "{how} sockets on {kind} lived {min:?} to {max:?}, expected {CONNECT_TIMEOUT:?} \
                 (+{MARGIN:?})"
            );
        }

        let back = eventually(SETTLE, || open_fds(pid) == idle_fds).await;
        let fds = open_fds(pid);
        println!("slowloris: open fds before {idle_fds}, after {fds}");
        assert!(
            back,
            "the broker holds {fds} descriptors, {idle_fds} before"
        );
        broker.assert_alive("after the slowloris sockets");
        round_trip_everywhere(&to, "after slowloris").await;
    });
}

/// Connects to `addr` and sends nothing, or `dribble` one byte a second; returns how long the
/// socket lived, from the connect to the broker closing it.
async fn slow_socket(addr: SocketAddr, dribble: Option<Arc<[u8]>>) -> Result<Duration, String> {
    // Timed from before the connect: the broker's deadline starts at its accept, which comes
    // after, whenever this task gets to run again.
    let t0 = Instant::now();
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let limit = CONNECT_TIMEOUT + MARGIN + Duration::from_secs(3);
    let give_up = tokio::time::sleep(limit);
    tokio::pin!(give_up);
    let (mut rd, mut wr) = tcp.split();
    let mut buf = [0u8; 512];
    let mut sent = 0;
    let mut next_byte = tokio::time::Instant::now();
    loop {
        let dribbling = dribble.as_ref().is_some_and(|d| sent < d.len());
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Ok(t0.elapsed()),
                Ok(_) => {}
            },
            _ = tokio::time::sleep_until(next_byte), if dribbling => {
                let byte = dribble.as_ref().map(|d| d[sent]).unwrap_or_default();
                if wr.write_all(&[byte]).await.is_err() {
                    return Ok(t0.elapsed());
                }
                sent += 1;
                next_byte += Duration::from_secs(1);
            }
            _ = &mut give_up => return Err(format!("still open after {limit:?}")),
        }
    }
}

fn connect_packet() -> Vec<u8> {
    let connect = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        client_id: "slowloris".into(),
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

fn upgrade_request() -> Vec<u8> {
    b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec()
}
