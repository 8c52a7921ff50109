//! The task that keeps one bridge connected: connect, subscribe, move messages both ways, and
//! reconnect with exponential backoff and jitter when the link fails.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use super::backoff::Backoff;
use super::cache::{DropReason, Link};
use super::dial::{dial, Stream};
use super::{Bridge, LinkState};
use crate::broker::{publish_from_bridge, Broker, Subscriber};
use crate::config::{BridgeConfig, BridgeProtocol, LimitsConfig, MAX_PACKET_SIZE};
use crate::mqtt::{
    decode, encode, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, PubAck,
    Publish, QoS, RetainHandling, Subscribe, SubscriptionOptions, Will,
};
use crate::router::matches;
use crate::store::Ticket;

/// Bytes encoded per turn before they are written.
const WRITE_BUDGET: usize = 64 * 1024;
/// How long a DISCONNECT at shutdown may take.
const GOODBYE: Duration = Duration::from_secs(1);

/// Why a connected link ended.
enum Ended {
    /// The broker is shutting down.
    Stopped,
    /// The link failed; the text says why.
    Lost(String),
}

/// Runs `bridge` until the broker stops.
pub(crate) async fn run(bridge: Arc<Bridge>, broker: Arc<Broker>) {
    let mut stop = broker.stop.clone();
    let me = Subscriber::Bridge(bridge.clone());
    let config = &bridge.config;
    let mut backoff = Backoff::new(config.reconnect_min_ms, config.reconnect_max_ms);
    // Inbound QoS 2 packet ids awaiting PUBREL outlive a connection whose session the upstream
    // keeps: a PUBLISH it sends again after a reconnect is not routed twice.
    let mut inbound_qos2 = HashSet::new();
    let connect_timeout = Duration::from_secs(config.connect_timeout_secs);
    loop {
        bridge.set_state(LinkState::Connecting);
        let attempt = timeout(connect_timeout, handshake(&bridge, &broker));
        let outcome = tokio::select! {
            outcome = attempt => outcome,
            _ = stopped(&mut stop, &bridge) => return,
        };
        let failure = match outcome {
            Ok(Ok(mut link)) => {
                backoff.reset();
                if link.session_present {
                    link.inbound_qos2 = std::mem::take(&mut inbound_qos2);
                }
                let ended = link.serve(&bridge, &broker, &me, &mut stop).await;
                inbound_qos2 = std::mem::take(&mut link.inbound_qos2);
                let dropped = bridge.cache().disconnected();
                bridge.count_drops(dropped);
                match ended {
                    Ended::Stopped => return,
                    Ended::Lost(why) => format!("connection to {} lost: {why}", config.address),
                }
            }
            Ok(Err(why)) => why,
            Err(_) => format!(
                "no CONNACK from {} within {connect_timeout:?}",
                config.address
            ),
        };
        let wait = backoff.next();
        tracing::warn!(
            bridge = %bridge.name,
            "bridge {}: {failure}; retrying in {:.1}s",
            bridge.name,
            wait.as_secs_f64()
        );
        bridge.set_last_error(failure);
        bridge.set_state(LinkState::BackingOff);
        tokio::select! {
            _ = sleep(wait) => {}
            _ = stopped(&mut stop, &bridge) => return,
        }
    }
}

/// Resolves once the broker is shutting down, or a reload retired the bridge.
async fn stopped(stop: &mut watch::Receiver<bool>, bridge: &Bridge) {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        _ = bridge.retired() => {}
    }
}

/// A connected link to the upstream.
struct Connected {
    reader: ReadHalf<Box<dyn Stream>>,
    writer: WriteHalf<Box<dyn Stream>>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    link: Link,
    /// The packet size we accept: the broker's own limit.
    max_incoming: u32,
    keep_alive: Duration,
    last_sent: Instant,
    ping_sent: Option<Instant>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    inbound_qos2: HashSet<u16>,
    /// The upstream kept the session of the previous connection.
    session_present: bool,
    /// Messages the cache held when the link came up, and when: logged once all are gone.
    backlog: Option<(usize, Instant)>,
}

/// Dials, sends CONNECT and waits for a successful CONNACK, then subscribes.
async fn handshake(bridge: &Bridge, broker: &Broker) -> Result<Connected, String> {
    let config = &bridge.config;
    let stream = dial(config).await?;
    let version = match config.protocol {
        BridgeProtocol::V5 => ProtocolVersion::V5,
        BridgeProtocol::V311 => ProtocolVersion::V311,
    };
    let (reader, writer) = tokio::io::split(stream);
    let max_incoming = broker.config.limits.max_packet_size;
    let mut c = Connected {
        reader,
        writer,
        rbuf: BytesMut::with_capacity(4096),
        wbuf: BytesMut::with_capacity(4096),
        link: Link {
            version,
            window: config.max_inflight.into(),
            max_packet_size: MAX_PACKET_SIZE as usize,
            budget: WRITE_BUDGET,
            max_qos: QoS::ExactlyOnce,
            retain_available: true,
        },
        max_incoming,
        keep_alive: Duration::from_secs(config.keepalive_secs.into()),
        last_sent: Instant::now(),
        ping_sent: None,
        inbound_qos2: HashSet::new(),
        session_present: false,
        backlog: None,
    };
    let connect = connect_packet(config, &broker.config.limits);
    c.push(&Packet::Connect(Box::new(connect)));
    c.flush()
        .await
        .map_err(|e| format!("writing CONNECT: {e}"))?;
    let ack = match c.next_packet().await? {
        Packet::ConnAck(ack) => ack,
        other => return Err(format!("upstream answered CONNECT with {}", other.name())),
    };
    if ack.reason.is_error() {
        return Err(format!(
            "upstream {} refused the connection: {}",
            config.address,
            ack.reason.describe()
        ));
    }
    c.apply_connack(&ack);
    c.session_present = ack.session_present;
    let backlog = {
        let mut cache = bridge.cache();
        cache.connected(ack.session_present);
        cache.len()
    };
    c.backlog = (backlog > 0).then(|| (backlog, Instant::now()));
    bridge.set_state(LinkState::Connected);
    bridge.set_last_error(String::new());
    tracing::info!(
        bridge = %bridge.name,
        session_present = ack.session_present,
        "bridge {} connected to {}",
        bridge.name,
        config.address
    );
    if let Some(subscribe) = subscribe_packet(bridge, version) {
        c.push(&Packet::Subscribe(subscribe));
    }
    Ok(c)
}

/// The bridge's CONNECT. With MQTT 5 it asks for its session expiry, tells the upstream what
/// this broker takes (Receive Maximum and Maximum Packet Size, its own limits; no topic
/// aliases) and carries the configured user properties.
fn connect_packet(config: &BridgeConfig, limits: &LimitsConfig) -> Connect {
    let v5 = config.protocol == BridgeProtocol::V5;
    let mut properties = Properties::default();
    let mut will_properties = Properties::default();
    if v5 {
        properties.session_expiry_interval = Some(config.session_expiry_secs);
        properties.receive_maximum = Some(limits.receive_maximum);
        properties.maximum_packet_size = Some(limits.max_packet_size);
        properties.user_properties = config
            .user_properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        will_properties.will_delay_interval = config
            .will
            .as_ref()
            .map(|w| w.delay_secs)
            .filter(|d| *d > 0);
    }
    Connect {
        protocol: if v5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V311
        },
        clean_start: config.clean_start,
        keep_alive: config.keepalive_secs,
        properties,
        client_id: config.effective_client_id(),
        will: config.will.as_ref().map(|w| Will {
            topic: w.topic.clone(),
            payload: Bytes::from(w.payload.clone()),
            qos: QoS::from_u8(w.qos).unwrap_or_default(),
            retain: w.retain,
            properties: will_properties,
        }),
        username: config.username.clone(),
        password: config.password.clone().map(Bytes::from),
    }
}

/// One SUBSCRIBE for every downlink filter; None when there are none. With MQTT 5, No Local
/// keeps what the bridge forwards from coming back down, and Retain As Published keeps the
/// upstream's RETAIN flags, so retained messages stay retained here too.
fn subscribe_packet(bridge: &Bridge, version: ProtocolVersion) -> Option<Subscribe> {
    let filters: Vec<_> = bridge
        .downlinks
        .iter()
        .map(|d| {
            let options = SubscriptionOptions {
                qos: d.qos,
                no_local: version.is_v5(),
                retain_as_published: version.is_v5(),
                retain_handling: RetainHandling::OnSubscribe,
            };
            (d.filter.clone(), options)
        })
        .collect();
    (!filters.is_empty()).then(|| Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters,
    })
}

impl Connected {
    fn apply_connack(&mut self, ack: &ConnAck) {
        let p = &ack.properties;
        if let Some(max) = p.receive_maximum {
            self.link.window = self.link.window.min(max.into());
        }
        if let Some(max) = p.maximum_packet_size {
            self.link.max_packet_size = self.link.max_packet_size.min(max as usize);
        }
        if let Some(secs) = p.server_keep_alive {
            self.keep_alive = Duration::from_secs(secs.into());
        }
        if let Some(qos) = p.maximum_qos.and_then(QoS::from_u8) {
            self.link.max_qos = qos;
        }
        self.link.retain_available = p.retain_available != Some(0);
    }

    fn push(&mut self, packet: &Packet) {
        encode(packet, self.link.version, &mut self.wbuf);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        while !self.wbuf.is_empty() {
            self.writer.write_buf(&mut self.wbuf).await?;
        }
        self.last_sent = Instant::now();
        self.writer.flush().await
    }

    /// The next packet from the upstream (the handshake reads with this; `serve` parses the
    /// buffer itself).
    async fn next_packet(&mut self) -> Result<Packet, String> {
        loop {
            if let Some(p) = self.parse()? {
                return Ok(p);
            }
            match self.reader.read_buf(&mut self.rbuf).await {
                Ok(0) => return Err("upstream closed the connection".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("reading from upstream: {e}")),
            }
        }
    }

    fn parse(&mut self) -> Result<Option<Packet>, String> {
        decode(&mut self.rbuf, self.link.version, self.max_incoming)
            .map_err(|e| format!("bad packet from upstream: {e}"))
    }

    /// Moves messages both ways until the link fails or the broker stops.
    async fn serve(
        &mut self,
        bridge: &Bridge,
        broker: &Broker,
        me: &Subscriber,
        stop: &mut watch::Receiver<bool>,
    ) -> Ended {
        loop {
            bridge.refill().await;
            if self.wbuf.len() < WRITE_BUDGET {
                let written = bridge
                    .cache()
                    .write(&self.link, Instant::now(), &mut self.wbuf);
                let stats = &bridge.stats;
                stats.messages_sent.fetch_add(written.published, Relaxed);
                stats.bytes_sent.fetch_add(written.bytes, Relaxed);
                stats.resent.fetch_add(written.resent, Relaxed);
                bridge.forget(&written.done);
                bridge.count_drops(written.dropped);
            }
            let ping_at = match self.ping_sent {
                Some(sent) => sent + self.keep_alive,
                None => self.last_sent + self.keep_alive,
            };
            let keepalive = !self.keep_alive.is_zero();
            tokio::select! {
                _ = stopped(stop, bridge) => {
                    self.wbuf.clear();
                    self.push(&Packet::Disconnect(Disconnect::default()));
                    let _ = timeout(GOODBYE, self.flush()).await;
                    return Ended::Stopped;
                }
                read = self.reader.read_buf(&mut self.rbuf) => match read {
                    Ok(0) => return Ended::Lost("closed by the upstream".into()),
                    Ok(_) => {
                        self.ping_sent = None;
                        if let Err(why) = self.handle_input(bridge, broker, me).await {
                            return Ended::Lost(why);
                        }
                    }
                    Err(e) => return Ended::Lost(e.to_string()),
                },
                wrote = self.writer.write_buf(&mut self.wbuf), if !self.wbuf.is_empty() => {
                    if let Err(e) = wrote {
                        return Ended::Lost(e.to_string());
                    }
                    self.last_sent = Instant::now();
                }
                _ = bridge.wake.notified(), if self.wbuf.len() < WRITE_BUDGET => {}
                _ = sleep_until(ping_at), if keepalive => {
                    if self.ping_sent.is_some() {
                        return Ended::Lost(format!("no PINGRESP within {:?}", self.keep_alive));
                    }
                    self.push(&Packet::PingReq);
                    self.ping_sent = Some(Instant::now());
                    self.last_sent = Instant::now();
                }
            }
        }
    }

    /// Handles every complete packet in the read buffer.
    async fn handle_input(
        &mut self,
        bridge: &Bridge,
        broker: &Broker,
        me: &Subscriber,
    ) -> Result<(), String> {
        // Acknowledgements of what came down, held in order until what routing stored for
        // them is durable (under `sync = "always"`): one wait for the whole read.
        let mut held = Vec::new();
        let mut durable_at = None;
        while let Some(packet) = self.parse()? {
            match packet {
                Packet::PubAck(ack) => self.acknowledged(bridge, ack, false),
                Packet::PubComp(ack) => self.acknowledged(bridge, ack, true),
                Packet::PubRec(rec) => {
                    let (release, refused) = bridge
                        .cache()
                        .received(rec.packet_id, rec.reason.is_error());
                    if release {
                        let rel = PubAck {
                            packet_id: rec.packet_id,
                            ..PubAck::default()
                        };
                        self.push(&Packet::PubRel(rel));
                    }
                    if let Some(entry) = refused {
                        bridge.count_drops(vec![(entry, DropReason::Refused(rec.reason))]);
                    }
                }
                Packet::Publish(p) => {
                    let (ack, ticket) = self.downlink(bridge, broker, me, p)?;
                    held.extend(ack);
                    durable_at = durable_at.max(ticket);
                }
                Packet::PubRel(rel) => {
                    self.inbound_qos2.remove(&rel.packet_id);
                    let comp = PubAck {
                        packet_id: rel.packet_id,
                        ..PubAck::default()
                    };
                    self.push(&Packet::PubComp(comp));
                }
                Packet::SubAck(ack) => {
                    for (d, reason) in bridge.downlinks.iter().zip(&ack.reasons) {
                        if reason.is_error() {
                            tracing::warn!(
                                bridge = %bridge.name,
                                "bridge {}: upstream refused the subscription to {}: {}",
                                bridge.name,
                                d.filter,
                                reason.describe()
                            );
                        }
                    }
                }
                Packet::PingResp => {}
                Packet::Disconnect(d) => {
                    return Err(format!("upstream disconnected: {}", d.reason.describe()));
                }
                other => return Err(format!("unexpected {} from upstream", other.name())),
            }
        }
        if let (Some(ticket), Some(store)) = (durable_at, &broker.store) {
            std::future::poll_fn(|cx| store.poll_durable(ticket, cx)).await;
        }
        for ack in &held {
            self.push(ack);
        }
        Ok(())
    }

    /// Logs, once, that what waited for the link has gone up (the cache emptied).
    fn backlog_sent(&mut self, bridge: &Bridge) {
        let Some((messages, since)) = self.backlog else {
            return;
        };
        if bridge.cache().is_empty() {
            self.backlog = None;
            tracing::info!(
                bridge = %bridge.name,
                messages,
                "bridge {}: backlog of {messages} messages sent in {:.3}s",
                bridge.name,
                since.elapsed().as_secs_f64()
            );
        }
    }

    fn acknowledged(&mut self, bridge: &Bridge, ack: PubAck, pubcomp: bool) {
        let entry = bridge.cache().acknowledged(ack.packet_id, pubcomp);
        match entry {
            Some(e) if ack.reason.is_error() => {
                bridge.count_drops(vec![(e, DropReason::Refused(ack.reason))]);
            }
            Some(e) => {
                bridge.forget([&e]);
                self.backlog_sent(bridge);
            }
            None => tracing::debug!(
                bridge = %bridge.name,
                packet_id = ack.packet_id,
                "acknowledgement for an unknown packet id"
            ),
        }
    }

    /// A PUBLISH from the upstream: renamed by the first downlink whose filter matches and
    /// routed locally. Returns its acknowledgement, and the ticket that must be durable first
    /// (what routing stored, under `sync = "always"`), as for a client.
    fn downlink(
        &mut self,
        bridge: &Bridge,
        broker: &Broker,
        me: &Subscriber,
        p: Publish,
    ) -> Result<(Option<Packet>, Option<Ticket>), String> {
        if p.properties.topic_alias.is_some() {
            return Err("upstream used a topic alias, which the bridge does not allow".into());
        }
        bridge.stats.messages_received.fetch_add(1, Relaxed);
        bridge
            .stats
            .bytes_received
            .fetch_add(p.payload.len() as u64, Relaxed);
        let (qos, packet_id) = (p.qos, p.packet_id);
        let fresh = qos != QoS::ExactlyOnce || self.inbound_qos2.insert(packet_id);
        let mut wait = None;
        let downlink = bridge
            .downlinks
            .iter()
            .find(|d| matches(&d.filter, &p.topic));
        if let (true, Some(d)) = (fresh, downlink) {
            let topic: Arc<str> = if d.template.is_identity() {
                Arc::from(p.topic.as_str())
            } else {
                Arc::from(d.template.apply(&p.topic))
            };
            let routed = publish_from_bridge(broker, me, topic, p);
            let waits = broker.store.as_ref().is_some_and(|s| s.acks_wait());
            if qos != QoS::AtMostOnce && waits {
                wait = routed.stored;
            }
        }
        let ack = PubAck {
            packet_id,
            ..PubAck::default()
        };
        let ack = match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Packet::PubAck(ack)),
            QoS::ExactlyOnce => Some(Packet::PubRec(ack)),
        };
        Ok((ack, wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BridgeWillConfig;

    fn config(protocol: BridgeProtocol) -> BridgeConfig {
        BridgeConfig {
            name: "cloud".into(),
            protocol,
            username: Some("edge".into()),
            password: Some("secret".into()),
            will: Some(BridgeWillConfig {
                topic: "edge/status".into(),
                payload: "offline".into(),
                qos: 1,
                retain: true,
                delay_secs: 5,
            }),
            user_properties: [("site".to_owned(), "7".to_owned())].into(),
            ..BridgeConfig::default()
        }
    }

    #[test]
    fn connect_carries_credentials_will_and_v5_properties() {
        let limits = LimitsConfig::default();
        let c = connect_packet(&config(BridgeProtocol::V5), &limits);
        assert_eq!(c.protocol, ProtocolVersion::V5);
        assert_eq!(c.client_id, "nanomq-bridge-cloud");
        assert!(!c.clean_start);
        assert_eq!(c.keep_alive, 60);
        assert_eq!(c.username.as_deref(), Some("edge"));
        assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
        let p = &c.properties;
        assert_eq!(p.session_expiry_interval, Some(3600));
        assert_eq!(p.receive_maximum, Some(limits.receive_maximum));
        assert_eq!(p.maximum_packet_size, Some(limits.max_packet_size));
        assert_eq!(p.topic_alias_maximum, None, "no aliases from the upstream");
        assert_eq!(p.user_properties, [("site".to_owned(), "7".to_owned())]);
        let will = c.will.unwrap();
        assert_eq!(
            (will.topic.as_str(), &will.payload[..]),
            ("edge/status", &b"offline"[..])
        );
        assert_eq!((will.qos, will.retain), (QoS::AtLeastOnce, true));
        assert_eq!(will.properties.will_delay_interval, Some(5));
    }

    #[test]
    fn a_v311_connect_has_no_properties() {
        let c = connect_packet(&config(BridgeProtocol::V311), &LimitsConfig::default());
        assert_eq!(c.protocol, ProtocolVersion::V311);
        assert_eq!(c.properties, Properties::default());
        assert_eq!(c.will.unwrap().properties, Properties::default());
    }
}
