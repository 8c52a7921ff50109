//! Opening the benchmark's connections: at `--rate`, at most [`MAX_PENDING`] handshakes at once,
//! each bound to a source address when one port's ~28,000 ephemeral ports are not enough, each
//! with a timeout, and each timed from the start of the TCP connect to CONNACK.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{interval, timeout, MissedTickBehavior};

use super::args::ClientOpts;
use super::stats::Stats;
use super::wire::BenchConn;
use crate::mqtt::{ConnAck, Connect, Packet, ProtocolVersion, QoS, Subscribe, SubscriptionOptions};

/// Longest a TCP connect plus CONNECT/CONNACK (plus SUBSCRIBE/SUBACK) may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once, whatever the rate: enough to keep a broker busy, few enough
/// not to overflow a small accept backlog (mosquitto listens with 100), where every connection
/// that does not fit waits for a SYN retransmission and shows up as a 1 s CONNACK latency.
const MAX_PENDING: usize = 64;

/// Connections per source address when the addresses are chosen automatically: below the
/// 28,232 ephemeral ports of Linux's default range, with room for other sockets.
const PER_SOURCE_ADDRESS: usize = 20_000;

/// File descriptors kept for everything that is not a client connection.
const FD_RESERVE: u64 = 64;

/// What a client is for; it names the client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Sends messages.
    Publisher,
    /// Subscribes and receives.
    Subscriber,
    /// Only connects (`bench conn`).
    Idle,
}

/// One client to open.
#[derive(Debug, Clone)]
pub(super) struct ClientSpec {
    /// Index within its role, from 0: `%i` in topics, and the publisher index in payloads.
    pub(super) index: u32,
    /// What it is for.
    pub(super) role: Role,
    /// The filter and QoS to subscribe to before the client counts as open.
    pub(super) subscribe: Option<(String, QoS)>,
}

/// An open client: its connection and the broker's CONNACK.
pub(super) struct Client {
    /// What was asked for.
    pub(super) spec: ClientSpec,
    /// The connection, CONNACK (and SUBACK) consumed.
    pub(super) conn: BenchConn,
    /// The broker's answer, for its Receive Maximum.
    pub(super) connack: ConnAck,
}

/// Where and how every client connects.
#[derive(Debug)]
pub(super) struct Dialer {
    target: SocketAddr,
    sources: Vec<Ipv4Addr>,
    version: ProtocolVersion,
    keepalive: u16,
    /// `bench-PID-`: unique across concurrent benchmark processes.
    id_prefix: String,
}

impl Dialer {
    /// Resolves the broker's address and picks source addresses for `clients` connections.
    pub(super) async fn new(opts: &ClientOpts, clients: usize) -> anyhow::Result<Dialer> {
        let target = tokio::net::lookup_host((opts.host.as_str(), opts.port))
            .await
            .with_context(|| format!("cannot resolve {}", opts.host))?
            .next()
            .with_context(|| format!("{} has no address", opts.host))?;
        Ok(Dialer {
            target,
            sources: source_addresses(target, clients, opts.source_ips)?,
            version: opts.protocol,
            keepalive: opts.keepalive,
            id_prefix: format!("bench-{}-", std::process::id()),
        })
    }

    /// The broker's address, for messages.
    pub(super) fn target(&self) -> SocketAddr {
        self.target
    }

    /// Connects one client and records its CONNACK latency.
    async fn open(&self, spec: &ClientSpec, stats: &Stats) -> anyhow::Result<(BenchConn, ConnAck)> {
        let started = Instant::now();
        let socket = match self.target {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .context("cannot create a socket")?;
        if !self.sources.is_empty() {
            let source = self.sources[spec.index as usize % self.sources.len()];
            socket
                .bind(SocketAddr::new(IpAddr::V4(source), 0))
                .with_context(|| format!("cannot bind to {source}"))?;
        }
        let stream = socket
            .connect(self.target)
            .await
            .with_context(|| format!("cannot connect to {}", self.target))?;
        let mut conn = BenchConn::new(stream, self.version)?;
        let role = match spec.role {
            Role::Publisher => "p",
            Role::Subscriber => "s",
            Role::Idle => "c",
        };
        let connect = Connect {
            protocol: self.version,
            clean_start: true,
            keep_alive: self.keepalive,
            client_id: format!("{}{role}{}", self.id_prefix, spec.index),
            ..Connect::default()
        };
        let connack = match conn.request(&Packet::Connect(Box::new(connect))).await? {
            Packet::ConnAck(c) if c.reason.is_error() => {
                bail!("connection refused by broker: {}", c.reason.describe())
            }
            Packet::ConnAck(c) => c,
            other => bail!("broker answered CONNECT with {}", other.name()),
        };
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        Stats::record(&stats.connack, &[micros]);
        if let Some((filter, qos)) = &spec.subscribe {
            let subscribe = Subscribe {
                packet_id: 1,
                filters: vec![(
                    filter.clone(),
                    SubscriptionOptions {
                        qos: *qos,
                        ..Default::default()
                    },
                )],
                ..Subscribe::default()
            };
            match conn.request(&Packet::Subscribe(subscribe)).await? {
                Packet::SubAck(s) => match s.reasons.first() {
                    Some(r) if !r.is_error() => {}
                    Some(r) => bail!("subscription to {filter} refused: {}", r.describe()),
                    None => bail!("SUBACK without a reason code"),
                },
                other => bail!("broker answered SUBSCRIBE with {}", other.name()),
            }
        }
        Ok((conn, connack))
    }
}

/// Opens every client in `specs`, starting `rate` per second (0: as fast as [`MAX_PENDING`]
/// allows). Failures are counted in `stats` with the first error; the clients that opened are
/// returned in `specs` order.
pub(super) async fn open_all(
    dialer: Arc<Dialer>,
    specs: Vec<ClientSpec>,
    rate: f64,
    stats: Arc<Stats>,
) -> Vec<Client> {
    let pending = Arc::new(Semaphore::new(MAX_PENDING));
    let mut ticker = (rate > 0.0 && rate < 1e6).then(|| {
        let mut t = interval(Duration::from_secs_f64(1.0 / rate));
        // Catch up after a slow moment, so the average rate is the one asked for.
        t.set_missed_tick_behavior(MissedTickBehavior::Burst);
        t
    });
    let mut tasks = JoinSet::new();
    for (order, spec) in specs.into_iter().enumerate() {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        let permit = pending.clone().acquire_owned().await;
        let (dialer, stats) = (dialer.clone(), stats.clone());
        tasks.spawn(async move {
            let opened = timeout(CONNECT_TIMEOUT, dialer.open(&spec, &stats))
                .await
                .unwrap_or_else(|_| {
                    Err(anyhow!(
                        "no CONNACK from {} within {CONNECT_TIMEOUT:?}",
                        dialer.target
                    ))
                });
            drop(permit);
            (order, spec, opened)
        });
    }
    let mut clients = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((order, spec, Ok((conn, connack)))) => {
                stats
                    .connected
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                clients.push((
                    order,
                    Client {
                        spec,
                        conn,
                        connack,
                    },
                ));
            }
            Ok((_, _, Err(e))) => stats.fail(&e),
            Err(e) => stats.fail(&anyhow!("connection task failed: {e}")),
        }
    }
    clients.sort_by_key(|(order, _)| *order);
    clients.into_iter().map(|(_, c)| c).collect()
}

/// The addresses client sockets bind to, round-robin; empty to let the kernel choose.
fn source_addresses(
    target: SocketAddr,
    clients: usize,
    requested: Option<u8>,
) -> anyhow::Result<Vec<Ipv4Addr>> {
    let loopback = matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback());
    let count = match requested {
        Some(_) if !loopback => bail!(
            "--source-ips binds to 127.0.0.x, which reaches only a 127.x broker address, not {}",
            target.ip()
        ),
        Some(n) => n,
        None if loopback && clients > PER_SOURCE_ADDRESS => {
            u8::try_from(clients.div_ceil(PER_SOURCE_ADDRESS)).unwrap_or(u8::MAX)
        }
        None => return Ok(Vec::new()),
    };
    Ok((1..=count).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect())
}

/// Raises this process's open-file soft limit to its hard limit, and refuses `clients`
/// connections that would not fit.
pub(super) fn raise_fd_limit(clients: u64) -> anyhow::Result<()> {
    let limit = super::super::raise_open_file_limit(clients.saturating_add(FD_RESERVE))
        .context("cannot raise RLIMIT_NOFILE to its hard limit")?;
    check_fd_limit(clients, limit)
}

fn check_fd_limit(clients: u64, limit: u64) -> anyhow::Result<()> {
    if clients.saturating_add(FD_RESERVE) > limit {
        bail!(
            "{clients} connections need {} file descriptors, but this process may open at most \
             {limit} (the hard RLIMIT_NOFILE): raise it (ulimit -Hn as root, LimitNOFILE= for \
             a service) or use fewer clients",
            clients + FD_RESERVE
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn source_addresses_only_when_needed_or_asked() {
        let local = addr("127.0.0.1:1883");
        assert!(source_addresses(local, 20_000, None).unwrap().is_empty());
        let auto = source_addresses(local, 50_000, None).unwrap();
        assert_eq!(auto, [1, 2, 3].map(|i| Ipv4Addr::new(127, 0, 0, i)));
        assert_eq!(source_addresses(local, 10, Some(2)).unwrap().len(), 2);
        assert!(source_addresses(addr("10.0.0.1:1883"), 50_000, None)
            .unwrap()
            .is_empty());
        let err = source_addresses(addr("10.0.0.1:1883"), 1, Some(2)).unwrap_err();
        assert!(err.to_string().contains("--source-ips"), "{err}");
        assert_eq!(
            source_addresses(local, 100_000_000, None).unwrap().len(),
            255
        );
    }

    #[test]
    fn fd_limit_is_raised_and_checked() {
        use nix::sys::resource::{getrlimit, Resource};
        raise_fd_limit(1).unwrap();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft, hard);
        check_fd_limit(1000 - FD_RESERVE, 1000).unwrap();
        let err = check_fd_limit(1000, 1000).unwrap_err().to_string();
        assert!(
            err.contains("1000 connections need 1064 file descriptors"),
            "{err}"
        );
        assert!(err.contains("at most 1000"), "{err}");
    }
}
