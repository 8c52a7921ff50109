//! A minimal MQTT client connection for `nanomq pub` and `nanomq sub`, built on the project's own
//! codec so the CLI exercises the same encoder and decoder as the broker.
//!
//! One TCP stream, one read buffer, one write buffer. Reading and writing both keep their progress
//! in those buffers, so [`Connection::next_packet`] may be cancelled (by a `select!` on a timeout
//! or Ctrl-C) and the connection stays usable for a final DISCONNECT.

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};

use super::client_args::ConnectArgs;
use super::read_more;
use crate::config::MAX_PACKET_SIZE;
use crate::mqtt::{self, ConnAck, Connect, Disconnect, Packet, ProtocolVersion, Will};

/// How long TCP connect plus CONNECT/CONNACK may take before the client gives up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An open MQTT connection whose CONNECT the broker accepted.
pub(super) struct Connection {
    stream: TcpStream,
    version: ProtocolVersion,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// Zero when keepalive is off; else the broker's Server Keep Alive or ours.
    keep_alive: Duration,
    last_sent: Instant,
    ping_outstanding: bool,
}

impl Connection {
    /// Connects to `--host`/`--port`, sends CONNECT and waits for a successful CONNACK.
    /// `default_id` names the client when `--id` is absent.
    pub(super) async fn open(
        args: &ConnectArgs,
        default_id: &str,
    ) -> anyhow::Result<(Self, ConnAck)> {
        let connect = connect_packet(args, default_id)?;
        let address = format!("{}:{}", args.host, args.port);
        let handshake = async {
            let stream = TcpStream::connect((args.host.as_str(), args.port))
                .await
                .with_context(|| format!("cannot connect to {address}"))?;
            stream.set_nodelay(true)?;
            let mut conn = Connection {
                stream,
                version: args.protocol,
                read_buf: BytesMut::with_capacity(4096),
                write_buf: BytesMut::with_capacity(4096),
                keep_alive: Duration::from_secs(args.keepalive.into()),
                last_sent: Instant::now(),
                ping_outstanding: false,
            };
            conn.send(&Packet::Connect(Box::new(connect))).await?;
            let connack = match conn.recv().await? {
                Packet::ConnAck(connack) => connack,
                other => bail!("broker answered CONNECT with {}", other.name()),
            };
            if connack.reason.is_error() {
                bail!(
                    "connection refused by broker: {}",
                    connack.reason.describe()
                );
            }
            if let Some(secs) = connack.properties.server_keep_alive {
                conn.keep_alive = Duration::from_secs(secs.into());
            }
            Ok((conn, connack))
        };
        timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .with_context(|| format!("no CONNACK from {address} within {HANDSHAKE_TIMEOUT:?}"))?
    }

    /// Queues `packet` and writes everything queued. Cancel-safe: what was not yet written stays
    /// queued and goes out with the next send.
    pub(super) async fn send(&mut self, packet: &Packet) -> anyhow::Result<()> {
        mqtt::encode(packet, self.version, &mut self.write_buf);
        self.stream
            .write_all_buf(&mut self.write_buf)
            .await
            .context("cannot write to broker")?;
        self.last_sent = Instant::now();
        Ok(())
    }

    /// The next packet from the broker, sending PINGREQ whenever the keepalive interval passes
    /// with nothing sent, and failing if a PINGREQ goes unanswered for a whole interval.
    /// PINGRESP is consumed here; a DISCONNECT from the broker becomes an error naming its
    /// reason. Cancel-safe.
    pub(super) async fn next_packet(&mut self) -> anyhow::Result<Packet> {
        loop {
            let keep_alive = !self.keep_alive.is_zero();
            let ping_at = self.last_sent + self.keep_alive;
            tokio::select! {
                packet = self.recv() => match packet? {
                    Packet::PingResp => self.ping_outstanding = false,
                    Packet::Disconnect(d) => {
                        bail!("broker closed the connection: {}", d.reason.describe())
                    }
                    packet => return Ok(packet),
                },
                () = sleep_until(ping_at), if keep_alive => {
                    if self.ping_outstanding {
                        bail!("broker did not answer PINGREQ within {:?}", self.keep_alive);
                    }
                    self.send(&Packet::PingReq).await?;
                    self.ping_outstanding = true;
                }
            }
        }
    }

    /// Sends DISCONNECT (normal disconnection) and closes the socket, so the broker discards
    /// the will message.
    pub(super) async fn disconnect(mut self) -> anyhow::Result<()> {
        self.send(&Packet::Disconnect(Disconnect::default()))
            .await?;
        self.stream
            .shutdown()
            .await
            .context("cannot close the connection")
    }

    /// Reads until one whole packet is buffered. Cancel-safe: bytes read stay in `read_buf`.
    async fn recv(&mut self) -> anyhow::Result<Packet> {
        loop {
            let decoded = mqtt::decode(&mut self.read_buf, self.version, MAX_PACKET_SIZE)
                .context("invalid packet from broker")?;
            if let Some(packet) = decoded {
                return Ok(packet);
            }
            read_more(&mut self.stream, &mut self.read_buf).await?;
        }
    }
}

/// The CONNECT packet `args` describe. Fails on combinations the broker would refuse anyway,
/// with a message that says which flag to change.
pub(super) fn connect_packet(args: &ConnectArgs, default_id: &str) -> anyhow::Result<Connect> {
    let v5 = args.protocol.is_v5();
    if args.disable_clean_session && args.id.is_none() {
        bail!("--disable-clean-session needs a client id: give one with --id");
    }
    if args.session_expiry.is_some() && !v5 {
        bail!("--session-expiry needs MQTT 5 (-V 5)");
    }
    if args.password.is_some() && args.username.is_none() && !v5 {
        bail!("--password needs --username before MQTT 5");
    }
    let mut connect = Connect {
        protocol: args.protocol,
        clean_start: !args.disable_clean_session,
        keep_alive: args.keepalive,
        client_id: args.id.clone().unwrap_or_else(|| default_id.to_owned()),
        username: args.username.clone(),
        password: args.password.clone().map(Bytes::from),
        will: args.will_topic.as_ref().map(|topic| Will {
            topic: topic.clone(),
            payload: Bytes::from(args.will_payload.clone().unwrap_or_default()),
            qos: args.will_qos,
            retain: args.will_retain,
            ..Will::default()
        }),
        ..Connect::default()
    };
    if v5 {
        // Like mosquitto: a persistent session with no expiry given lasts until the broker's cap.
        let persistent = args.disable_clean_session.then_some(u32::MAX);
        connect.properties.session_expiry_interval = args.session_expiry.or(persistent);
    }
    Ok(connect)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::args::{Cli, Command};
    use super::*;
    use crate::mqtt::QoS;

    fn connect_args(args: &[&str]) -> ConnectArgs {
        let argv = ["nanomq", "sub", "-t", "x"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Some(Command::Sub(a)) => a.connect,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn default_connect() {
        let c = connect_packet(&connect_args(&[]), "nanomq-sub-1").unwrap();
        assert_eq!(c.protocol, ProtocolVersion::V5);
        assert!(c.clean_start);
        assert_eq!(c.keep_alive, 60);
        assert_eq!(c.client_id, "nanomq-sub-1");
        assert_eq!((c.will, c.username, c.password), (None, None, None));
        assert_eq!(c.properties.session_expiry_interval, None);
    }

    #[test]
    fn persistent_session_and_will() {
        let args = connect_args(&[
            "-V",
            "5",
            "-c",
            "-i",
            "me",
            "-u",
            "u",
            "-P",
            "p",
            "--will-topic",
            "w",
            "--will-payload",
            "bye",
            "--will-qos",
            "2",
            "--will-retain",
        ]);
        let c = connect_packet(&args, "unused").unwrap();
        assert!(!c.clean_start);
        assert_eq!(c.client_id, "me");
        assert_eq!(c.properties.session_expiry_interval, Some(u32::MAX));
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password, Some(Bytes::from_static(b"p")));
        let will = c.will.unwrap();
        assert_eq!((will.topic.as_str(), &will.payload[..]), ("w", &b"bye"[..]));
        assert_eq!((will.qos, will.retain), (QoS::ExactlyOnce, true));
        let c = connect_packet(&connect_args(&["-c", "-i", "me", "-x", "30"]), "x").unwrap();
        assert_eq!(c.properties.session_expiry_interval, Some(30));
        let c = connect_packet(&connect_args(&["-c", "-i", "me", "-V", "311"]), "x").unwrap();
        assert_eq!((c.protocol, c.clean_start), (ProtocolVersion::V311, false));
        assert_eq!(c.properties.session_expiry_interval, None);
    }

    #[test]
    fn refused_combinations() {
        let err = |args: &[&str]| {
            connect_packet(&connect_args(args), "x")
                .unwrap_err()
                .to_string()
        };
        assert!(err(&["-c"]).contains("--id"));
        assert!(err(&["-V", "311", "-x", "5"]).contains("MQTT 5"));
        assert!(err(&["-V", "31", "-P", "pw"]).contains("--username"));
        connect_packet(&connect_args(&["-P", "pw"]), "x").unwrap();
    }
}
