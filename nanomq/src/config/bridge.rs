//! `[[bridges]]`: uplinks to cloud brokers. Each bridge is an MQTT client of one upstream broker
//! that forwards local messages up (`[[bridges.forwards]]`) and brings remote ones down
//! (`[[bridges.subscriptions]]`), with an offline cache for what cannot go up yet.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::InvalidValue;
use crate::router::{validate_topic_filter, validate_topic_name};

/// MQTT version a bridge speaks to its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BridgeProtocol {
    /// MQTT 5.0: No Local keeps forwarded messages from coming back down.
    #[default]
    #[serde(rename = "5")]
    V5,
    /// MQTT 3.1.1, for upstreams without MQTT 5.
    #[serde(rename = "3.1.1")]
    V311,
}

/// What the offline cache drops when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheFullPolicy {
    /// Drop the oldest cached message: the upstream gets the freshest data.
    #[default]
    DropOldest,
    /// Keep what is cached and drop the newcomer.
    DropNew,
}

/// One `[[bridges]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// Names the bridge in logs, `$SYS/broker/bridges/<name>/...` and the cache; letters, digits,
    /// `-` and `_`, unique.
    pub name: String,
    /// `host:port` of the upstream broker.
    pub address: String,
    /// `"5"` or `"3.1.1"`.
    pub protocol: BridgeProtocol,
    /// Client id at the upstream. Absent means `nanomq-bridge-<name>`.
    pub client_id: Option<String>,
    /// User name at the upstream. Absent means none.
    pub username: Option<String>,
    /// Password at the upstream (needs `username` in MQTT 3.1.1). Absent means none.
    pub password: Option<String>,
    /// Keep Alive in seconds (0 turns pings off; the upstream may ask for another value).
    pub keepalive_secs: u16,
    /// Start a new upstream session on every connect. False keeps the upstream's session, so
    /// QoS 1/2 messages for the bridge's subscriptions wait there while the link is down.
    pub clean_start: bool,
    /// MQTT 5 Session Expiry Interval asked of the upstream, in seconds.
    pub session_expiry_secs: u32,
    /// Seconds for TCP connect, TLS and CONNACK together.
    pub connect_timeout_secs: u64,
    /// First wait before reconnecting, in milliseconds; doubled after each failure (with
    /// jitter) up to `reconnect_max_ms`, and back to this after a successful connect.
    pub reconnect_min_ms: u64,
    /// Longest wait between reconnect attempts, in milliseconds.
    pub reconnect_max_ms: u64,
    /// QoS 1/2 messages sent and not yet acknowledged by the upstream; also capped by the
    /// upstream's Receive Maximum. Must be non-zero.
    pub max_inflight: u16,
    /// `[bridges.tls]`: connect with TLS. Absent means plain TCP.
    pub tls: Option<BridgeTlsConfig>,
    /// `[bridges.will]`: a will the upstream publishes if the bridge vanishes. Absent means none.
    pub will: Option<BridgeWillConfig>,
    /// `[bridges.user_properties]`: MQTT 5 User Properties sent in CONNECT, to tell the
    /// upstream (its auth hooks, its rules) which device this is. Empty means none.
    pub user_properties: BTreeMap<String, String>,
    /// `[bridges.cache]`: bounds of the offline cache.
    pub cache: BridgeCacheConfig,
    /// `[[bridges.forwards]]`: local messages sent up.
    pub forwards: Vec<ForwardConfig>,
    /// `[[bridges.subscriptions]]`: remote messages brought down.
    pub subscriptions: Vec<SubscriptionConfig>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            name: String::new(),
            address: String::new(),
            protocol: BridgeProtocol::V5,
            client_id: None,
            username: None,
            password: None,
            keepalive_secs: 60,
            clean_start: false,
            session_expiry_secs: 3600,
            connect_timeout_secs: 10,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            max_inflight: 32,
            tls: None,
            will: None,
            user_properties: BTreeMap::new(),
            cache: BridgeCacheConfig::default(),
            forwards: Vec::new(),
            subscriptions: Vec::new(),
        }
    }
}

impl BridgeConfig {
    /// The client id used at the upstream.
    pub fn effective_client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("nanomq-bridge-{}", self.name))
    }

    /// The host part of `address` (brackets of an IPv6 literal removed): the default TLS
    /// server name.
    pub fn host(&self) -> &str {
        let host = self
            .address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// `[bridges.tls]`: how the bridge checks the upstream and, optionally, proves who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeTlsConfig {
    /// PEM bundle of the CAs trusted to sign the upstream's certificate.
    pub ca: PathBuf,
    /// PEM client certificate (chain), for upstreams that ask for one. Needs `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Name sent as SNI and checked against the certificate. Absent means the host of
    /// `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// ALPN protocols offered (AWS IoT wants `["x-amzn-mqtt-ca"]` on port 443). Absent means none.
    #[serde(default)]
    pub alpn: Vec<String>,
}

/// `[bridges.will]`: the bridge's will at the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeWillConfig {
    /// Topic of the will.
    pub topic: String,
    /// Payload, as UTF-8 text.
    #[serde(default)]
    pub payload: String,
    /// QoS of the will (0..=2).
    #[serde(default)]
    pub qos: u8,
    /// Publish the will retained.
    #[serde(default)]
    pub retain: bool,
    /// MQTT 5 Will Delay Interval in seconds: a bridge back within it sends no will.
    #[serde(default)]
    pub delay_secs: u32,
}

/// `[bridges.cache]`: what the bridge keeps while the upstream cannot take it. With
/// `persistence.dir` set the cache is in the state database and survives restarts and crashes;
/// without, it is in memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeCacheConfig {
    /// Messages cached at most; at least 1.
    pub max_messages: u64,
    /// Topic and payload bytes cached at most; at least 1.
    pub max_bytes: u64,
    /// Seconds a message may wait in the cache; older ones are dropped, not sent. 0 means no
    /// limit.
    pub max_age_secs: u64,
    /// `drop-oldest` or `drop-new` when the cache is full.
    pub full_policy: CacheFullPolicy,
    /// Cache QoS 0 forwards while the upstream is away too (they are dropped otherwise).
    pub qos0: bool,
    /// With `persistence.dir`: waiting messages held in memory at most; the rest wait only
    /// on disk and are read back in order as these go. At least 1.
    pub memory_messages: usize,
}

impl Default for BridgeCacheConfig {
    fn default() -> Self {
        BridgeCacheConfig {
            max_messages: 100_000,
            max_bytes: 64 * 1024 * 1024,
            max_age_secs: 0,
            full_policy: CacheFullPolicy::DropOldest,
            qos0: false,
            memory_messages: 10_000,
        }
    }
}

/// One `[[bridges.forwards]]` entry: local messages that go up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// Local topic filter whose messages are forwarded.
    pub filter: String,
    /// Remote topic, a template of the local one: `{topic}` is the whole local topic, `{N}`
    /// its Nth level (from 1) and `{N..}` the levels from the Nth on. `"site1/{topic}"` adds a
    /// prefix, `"{topic}/up"` a suffix. Absent means the local topic unchanged.
    #[serde(default = "whole_topic")]
    pub remote: String,
    /// Highest QoS forwarded with (0..=2): messages go up with the lower of theirs and this.
    #[serde(default = "qos1")]
    pub qos: u8,
    /// Keep the RETAIN flag on forwarded messages (so the upstream retains them).
    #[serde(default = "yes")]
    pub retain: bool,
}

/// One `[[bridges.subscriptions]]` entry: remote messages that come down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// Remote topic filter subscribed at the upstream.
    pub filter: String,
    /// Local topic, a template of the remote one (as `forwards.remote`). Absent means the
    /// remote topic unchanged.
    #[serde(default = "whole_topic")]
    pub local: String,
    /// QoS of the upstream subscription (0..=2).
    #[serde(default = "qos1")]
    pub qos: u8,
}

fn whole_topic() -> String {
    "{topic}".to_owned()
}

fn qos1() -> u8 {
    1
}

fn yes() -> bool {
    true
}

/// The rules of `[[bridges]]` serde cannot express. Nested entries are counted across the whole
/// file (`bridges.forwards[3]` is the fourth `[[bridges.forwards]]`), as the line finder counts
/// headers; messages name the bridge.
pub(super) fn validate(bridges: &[BridgeConfig], max_levels: usize) -> Result<(), InvalidValue> {
    let mut forwards = 0;
    let mut subscriptions = 0;
    for (i, b) in bridges.iter().enumerate() {
        let invalid = |key, message: String| InvalidValue {
            table: "bridges",
            index: Some(i),
            key,
            message,
        };
        if b.name.is_empty()
            || !b
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            let message = format!("{:?}: use letters, digits, - and _", b.name);
            return Err(invalid("name", message));
        }
        if bridges[..i].iter().any(|other| other.name == b.name) {
            return Err(invalid("name", format!("{:?} names two bridges", b.name)));
        }
        let port = b
            .address
            .rsplit_once(':')
            .map(|(h, p)| (h, p.parse::<u16>()));
        if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p != 0) {
            let message = format!("{:?} is not host:port", b.address);
            return Err(invalid("address", message));
        }
        if b.password.is_some() && b.username.is_none() && b.protocol == BridgeProtocol::V311 {
            let message = "MQTT 3.1.1 sends a password only with a user name".to_owned();
            return Err(invalid("password", message));
        }
        if b.protocol == BridgeProtocol::V311 && !b.user_properties.is_empty() {
            let message = "\"3.1.1\" has no user properties: drop [bridges.user_properties]";
            return Err(invalid("protocol", message.to_owned()));
        }
        let non_zero = [
            ("max_inflight", b.max_inflight == 0),
            ("connect_timeout_secs", b.connect_timeout_secs == 0),
            ("reconnect_min_ms", b.reconnect_min_ms == 0),
        ];
        if let Some((key, _)) = non_zero.iter().find(|(_, zero)| *zero) {
            return Err(invalid(key, "0 is below the minimum of 1".into()));
        }
        if b.reconnect_max_ms < b.reconnect_min_ms {
            let message = format!("{} is below reconnect_min_ms", b.reconnect_max_ms);
            return Err(invalid("reconnect_max_ms", message));
        }
        if b.forwards.is_empty() && b.subscriptions.is_empty() {
            let message = format!("bridge {:?} has no forwards and no subscriptions", b.name);
            return Err(invalid("name", message));
        }
        if cfg!(not(feature = "tls")) && b.tls.is_some() {
            let message = "this build has no TLS (cargo feature `tls`)".to_owned();
            return Err(invalid("tls", message));
        }
        if let Some(tls) = &b.tls {
            if tls.cert.is_some() != tls.key.is_some() {
                let message = "a client certificate needs both cert and key".to_owned();
                return Err(InvalidValue {
                    table: "bridges.tls",
                    index: Some(i),
                    key: if tls.cert.is_some() { "key" } else { "cert" },
                    message,
                });
            }
        }
        if let Some(w) = &b.will {
            let invalid = |key, message| InvalidValue {
                table: "bridges.will",
                index: Some(i),
                key,
                message,
            };
            if w.qos > 2 {
                return Err(invalid(
                    "qos",
                    format!("{} is not a QoS: use 0, 1 or 2", w.qos),
                ));
            }
            validate_topic_name(&w.topic, max_levels)
                .map_err(|e| invalid("topic", format!("{:?}: {e}", w.topic)))?;
        }
        let c = &b.cache;
        let zero = [
            ("max_messages", c.max_messages == 0),
            ("max_bytes", c.max_bytes == 0),
            ("memory_messages", c.memory_messages == 0),
        ];
        if let Some((key, _)) = zero.iter().find(|(_, zero)| *zero) {
            return Err(InvalidValue {
                table: "bridges.cache",
                index: Some(i),
                key,
                message: "0 is below the minimum of 1".into(),
            });
        }
        let forward_routes = b.forwards.iter().map(|f| (&*f.filter, &*f.remote, f.qos));
        forwards += check_routes(&b.name, FORWARDS, forwards, forward_routes, max_levels)?;
        let downlinks = b
            .subscriptions
            .iter()
            .map(|s| (&*s.filter, &*s.local, s.qos));
        subscriptions +=
            check_routes(&b.name, SUBSCRIPTIONS, subscriptions, downlinks, max_levels)?;
    }
    Ok(())
}

/// Forwards and subscriptions: their table, and the key of their template.
const FORWARDS: (&str, &str) = ("bridges.forwards", "remote");
const SUBSCRIPTIONS: (&str, &str) = ("bridges.subscriptions", "local");

/// Checks one bridge's forwards or subscriptions (filter, template, QoS), numbered from `first`
/// across the file; returns how many there were.
fn check_routes<'a>(
    bridge: &str,
    (table, template_key): (&'static str, &'static str),
    first: usize,
    routes: impl Iterator<Item = (&'a str, &'a str, u8)>,
    max_levels: usize,
) -> Result<usize, InvalidValue> {
    let mut count = 0;
    for (filter, template, qos) in routes {
        check_route(filter, template, qos, max_levels).map_err(|(key, message)| InvalidValue {
            table,
            index: Some(first + count),
            key: if key == "template" { template_key } else { key },
            message: format!("bridge {bridge:?}: {message}"),
        })?;
        count += 1;
    }
    Ok(count)
}

/// A forward's or subscription's filter, template and QoS.
fn check_route(
    filter: &str,
    template: &str,
    qos: u8,
    max_levels: usize,
) -> Result<(), (&'static str, String)> {
    if qos > 2 {
        return Err(("qos", format!("{qos} is not a QoS: use 0, 1 or 2")));
    }
    if filter.starts_with("$share/") {
        return Err((
            "filter",
            format!("{filter:?}: a bridge cannot join a share group"),
        ));
    }
    validate_topic_filter(filter, max_levels)
        .map_err(|e| ("filter", format!("{filter:?}: {e}")))?;
    crate::bridge::TopicTemplate::parse(template, filter)
        .map_err(|e| ("template", format!("{template:?}: {e}")))?;
    Ok(())
}
