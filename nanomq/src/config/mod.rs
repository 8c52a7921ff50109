//! Broker configuration: the TOML schema, its built-in defaults, and validation.
//!
//! Every key has a default, so an empty file (or no file) is a working broker on
//! `tcp 0.0.0.0:1883`. Unknown keys are errors, not warnings: a typo such as `max_conections`
//! must not silently leave a limit at its default. Every error names the file, the line and the
//! key. `nanomq.example.toml` documents each key at its default value; tests keep the two equal.
//!
//! Layout: this file holds the schema; `load` reads and parses text into it and turns byte
//! offsets into `line:column`; `validate` holds the rules serde cannot express; `layers` merges
//! the built-in defaults, the image's file and the device's runtime layer, remembering where
//! each value came from; `runtime` writes the runtime layer atomically.

#[cfg(feature = "bridge")]
mod bridge;
mod layers;
mod load;
mod persistence;
pub mod runtime;
mod validate;

#[cfg(test)]
mod tests;
#[cfg(all(test, feature = "bridge"))]
mod tests_bridge;
#[cfg(test)]
mod tests_http;
#[cfg(test)]
mod tests_layers;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[cfg(feature = "bridge")]
pub use bridge::{
    BridgeCacheConfig, BridgeConfig, BridgeProtocol, BridgeTlsConfig, BridgeWillConfig,
    CacheFullPolicy, ForwardConfig, SubscriptionConfig,
};
pub use layers::{image_path, Layered, Source, DEFAULT_PATH, RUNTIME_FILE};
pub use load::{ConfigError, Location, Place};
pub use persistence::{PersistenceConfig, SyncMode, MAX_BATCH_WINDOW_MS};
pub use validate::{InvalidValue, MAX_HTTP_TIMEOUT_MS, MAX_PACKET_SIZE, MIN_PACKET_SIZE};

/// The whole broker configuration, one field per TOML section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[log]`: what the broker logs and where: stderr, journald, a size-rotated file.
    pub log: LogConfig,
    /// `[runtime]`: the async runtime's threads.
    pub runtime: RuntimeConfig,
    /// `[[listeners]]`: sockets clients connect to. Absent means one TCP listener on
    /// `0.0.0.0:1883`; an explicit empty list is rejected, since a broker nobody can reach is
    /// always a mistake.
    pub listeners: Vec<ListenerConfig>,
    /// `[limits]`: the bounds that keep memory and CPU use predictable on small devices.
    pub limits: LimitsConfig,
    /// `[mqtt]`: optional MQTT features the broker offers and advertises in CONNACK.
    pub mqtt: MqttConfig,
    /// `[sys]`: the `$SYS/broker/...` statistics topics.
    pub sys: SysConfig,
    /// `[auth]`: password file, ACL file and whether anonymous clients may connect.
    pub auth: AuthConfig,
    /// User to switch to after binding the listeners, when started as root (outside systemd,
    /// which starts the broker as its own user). Absent means no switch.
    pub user: Option<String>,
    /// Group to switch to with `user`; absent means the user's primary group.
    pub group: Option<String>,
    /// Run as root without `user`. Refused by default: a network daemon should not keep root.
    pub allow_root: bool,
    /// File the broker writes its process id to once it listens, and removes on a clean exit;
    /// `nanomq reload` finds the broker by it. Absent means none is written.
    pub pid_file: Option<PathBuf>,
    /// `[persistence]`: where the broker keeps its state.
    pub persistence: PersistenceConfig,
    /// `[[bridges]]`: uplinks to cloud brokers. Absent means none.
    #[cfg(feature = "bridge")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bridges: Vec<BridgeConfig>,
    /// `[[bridges]]` in a build without bridges: read only to be refused with a clear error,
    /// so the bridge schema's parser (about 100 KiB) stays out of small firmware.
    #[cfg(not(feature = "bridge"))]
    #[serde(skip_serializing)]
    pub bridges: Vec<NotBuilt>,
}

/// An entry of a section whose cargo feature this build leaves out: anything is accepted here,
/// and validation refuses it by name.
#[cfg(not(feature = "bridge"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotBuilt;

#[cfg(not(feature = "bridge"))]
impl<'de> Deserialize<'de> for NotBuilt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| NotBuilt)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log: LogConfig::default(),
            runtime: RuntimeConfig::default(),
            listeners: vec![ListenerConfig::default()],
            limits: LimitsConfig::default(),
            mqtt: MqttConfig::default(),
            sys: SysConfig::default(),
            auth: AuthConfig::default(),
            user: None,
            group: None,
            allow_root: false,
            pid_file: None,
            persistence: PersistenceConfig::default(),
            bridges: Vec::new(),
        }
    }
}

/// `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter directive such as `info` or `nanomq=debug,warn`. `RUST_LOG`, when set,
    /// overrides it so an operator can turn on debugging without editing the image's file.
    pub level: String,
    /// Log to journald even when stderr is not the journal (a supervisor other than systemd).
    /// Under systemd, when stderr is the journal, journald is used anyway.
    pub journald: bool,
    /// A plain-text log file, written instead of stderr (and besides journald under systemd),
    /// as Mosquitto's `log_dest file`. Absent means no file.
    pub file: Option<PathBuf>,
    /// Size in KiB at which `file` is rotated: `nanomq.log` becomes `nanomq.log.1`, and so on.
    pub max_size_kb: u64,
    /// Rotated files kept besides `file` (`nanomq.log.1` to `nanomq.log.<keep>`); 0 truncates
    /// `file` instead.
    pub keep: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            journald: false,
            file: None,
            max_size_kb: 1024,
            keep: 3,
        }
    }
}

/// `[runtime]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Tokio worker threads; 0 means one per CPU core. Lower it to leave cores to other
    /// processes on a shared device.
    pub worker_threads: usize,
}

/// The transport of a listener. Kinds this build was compiled without (cargo features `tls`,
/// `websocket`) are refused by validation with the feature's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// MQTT over plain TCP (usually port 1883).
    #[default]
    Tcp,
    /// MQTT over TLS (usually port 8883).
    Tls,
    /// MQTT over WebSocket (usually port 8083, path `/mqtt`).
    Ws,
    /// MQTT over WebSocket over TLS (usually port 8084).
    Wss,
}

impl ListenerKind {
    /// The name used in the config and in log lines.
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }

    /// Whether the transport starts with a TLS handshake.
    pub fn is_tls(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::Wss)
    }

    /// Whether MQTT travels in WebSocket frames.
    pub fn is_websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }
}

/// One `[[listeners]]` entry: a socket clients connect to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// Transport spoken on this socket.
    pub kind: ListenerKind,
    /// Address to bind; port 0 lets the OS pick a free port (the broker logs the bound address),
    /// which is what tests use.
    pub bind: SocketAddr,
    /// Connections accepted on this listener at once; 0 means only the broker-wide limit applies.
    pub max_connections: usize,
    /// HTTP path of the WebSocket endpoint (`ws` and `wss` only); other paths get 404.
    pub path: String,
    /// `[listeners.tls]`: certificates for `tls` and `wss` listeners (required there, refused
    /// elsewhere).
    pub tls: Option<TlsConfig>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            kind: ListenerKind::Tcp,
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 1883)),
            max_connections: 0,
            path: "/mqtt".to_owned(),
            tls: None,
        }
    }
}

/// Whether a TLS listener asks clients for a certificate (mutual TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCertificates {
    /// Do not ask for one.
    #[default]
    None,
    /// Ask; a client without one still connects, one with a certificate the CA bundle does not
    /// vouch for is refused.
    Optional,
    /// Refuse clients without a certificate the CA bundle vouches for.
    Required,
}

/// Where a TLS client's user name comes from; see [`TlsConfig::username_from`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsernameFrom {
    /// The CONNECT packet.
    #[default]
    Connect,
    /// The client certificate's subject Common Name.
    Cn,
    /// The client certificate's first DNS, e-mail or URI Subject Alternative Name.
    San,
}

/// `[listeners.tls]`: the server's identity and what it asks of clients. The files are read at
/// start and again on every reload (SIGHUP), so renewed certificates take effect without a
/// restart; connections already open keep the old ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM bundle of the CAs that issue client certificates; needed when `verify` is not
    /// `none`.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Client certificates: `none`, `optional` or `required`.
    #[serde(default)]
    pub verify: ClientCertificates,
    /// Where a client's user name comes from: `connect` (the CONNECT packet, checked against
    /// the password file), `cn` (its certificate's Common Name) or `san` (its certificate's
    /// first DNS, e-mail or URI Subject Alternative Name). With `cn` or `san` the certificate
    /// is the credential: no password is checked, and a certificate without that name is
    /// refused (Not authorized); a client without a certificate (`verify = "optional"`) falls
    /// back to CONNECT's user name and password.
    #[serde(default)]
    pub username_from: UsernameFrom,
    /// ALPN protocols offered; a client that offers ALPN must offer one of them. Absent means
    /// `["mqtt"]` for `tls` listeners and `["http/1.1"]` for `wss` ones; empty turns ALPN off.
    #[serde(default)]
    pub alpn: Option<Vec<String>>,
}

/// What happens when a session's queue of undelivered messages is full. QoS 0 messages are
/// always dropped first, whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueFullPolicy {
    /// Keep what is queued and drop the arriving message: the subscriber sees a gap at the end.
    #[default]
    DropNew,
    /// Drop the oldest queued message to make room: the subscriber sees the freshest data.
    DropOldest,
}

/// `[limits]` section. Each bound exists so that one client, or many, cannot make the broker
/// grow without limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Open client connections for the whole broker; must be at least 1.
    pub max_connections: usize,
    /// Largest packet, in bytes, accepted or sent (16..=268435460); advertised in CONNACK as
    /// Maximum Packet Size so v5 clients never send more.
    pub max_packet_size: u32,
    /// Inbound QoS 1/2 publications a client may have unacknowledged; advertised in CONNACK as
    /// Receive Maximum. Must be non-zero.
    pub receive_maximum: u16,
    /// Outbound QoS 1/2 publications in flight per client, further capped by the client's own
    /// Receive Maximum. Must be non-zero.
    pub max_inflight: u16,
    /// Messages waiting to be sent per session, online or offline. Must be non-zero.
    pub max_queued_messages: usize,
    /// Policy when a session queue is full.
    pub queue_full_policy: QueueFullPolicy,
    /// Levels (`/`-separated parts) allowed in a topic name or filter; must be at least 1.
    pub max_topic_levels: usize,
    /// Topic Alias Maximum the broker accepts from clients (inbound); 0 disables inbound aliases.
    pub max_topic_alias: u16,
    /// Subscriptions one client may hold; 0 means unlimited.
    pub max_subscriptions_per_client: usize,
    /// Seconds; a client asking for more (or for 0 while `min_keepalive` > 0) is told this value
    /// as Server Keep Alive.
    pub max_keepalive: u16,
    /// Seconds; clients asking for less are raised to it. 0 lets clients disable keepalive.
    pub min_keepalive: u16,
    /// Seconds a new socket has to complete CONNECT before it is closed; must be at least 1.
    pub connect_timeout_secs: u64,
    /// Sockets allowed at once between accept and a completed CONNECT (TLS and WebSocket
    /// handshakes included); more are closed at accept. 0 means unlimited.
    pub max_pending_connections: usize,
    /// New connections per second accepted from one source address, with bursts of one
    /// second's worth; more are closed at accept. 0 means unlimited.
    pub connect_rate_per_ip: u32,
    /// Cap on the Session Expiry Interval a client may ask for; MQTT 3.1.1 persistent sessions
    /// (clean session 0) expire after this many seconds.
    pub max_session_expiry_secs: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 100_000,
            max_packet_size: 1_048_576,
            receive_maximum: 32,
            max_inflight: 32,
            max_queued_messages: 1000,
            queue_full_policy: QueueFullPolicy::DropNew,
            max_topic_levels: 128,
            max_topic_alias: 64,
            max_subscriptions_per_client: 1000,
            max_keepalive: 65535,
            min_keepalive: 0,
            connect_timeout_secs: 10,
            max_pending_connections: 1024,
            connect_rate_per_ip: 0,
            max_session_expiry_secs: u32::MAX,
        }
    }
}

/// `[mqtt]` section: optional protocol features. Each is advertised to v5 clients in CONNACK and
/// enforced for every protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Store retained messages and deliver them to new subscribers.
    pub retain_available: bool,
    /// Assign topic aliases on messages to v5 clients that allow them, to save bandwidth on
    /// long topics.
    pub outgoing_topic_aliases: bool,
    /// The broker uses at most min(this, the client's Topic Alias Maximum) aliases per client.
    pub max_outgoing_topic_alias: u16,
    /// Accept `$share/group/filter` subscriptions.
    pub shared_subscriptions: bool,
    /// Accept `+` and `#` in subscriptions.
    pub wildcard_subscriptions: bool,
    /// Accept v5 Subscription Identifiers.
    pub subscription_identifiers: bool,
    /// Highest QoS granted to subscriptions and accepted on PUBLISH (0..=2).
    pub max_qos: u8,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            retain_available: true,
            outgoing_topic_aliases: true,
            max_outgoing_topic_alias: 64,
            shared_subscriptions: true,
            wildcard_subscriptions: true,
            subscription_identifiers: true,
            max_qos: 2,
        }
    }
}

/// `[sys]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SysConfig {
    /// Seconds between publications of the `$SYS/broker/...` topics; 0 disables them.
    pub interval_secs: u64,
}

impl Default for SysConfig {
    fn default() -> Self {
        SysConfig { interval_secs: 10 }
    }
}

/// `[auth]` section: who may connect, and what they may publish and subscribe to. Both files are
/// read at start (a broken one stops the start, naming its line) and again on every reload
/// (SIGHUP), when a broken one is refused and the one in use stays. See [`crate::auth`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Whether clients that send no user name may connect. Absent means false when
    /// `password_file` or `http.url` is set and true otherwise.
    pub allow_anonymous: Option<bool>,
    /// `user:hash` lines, managed with `nanomq passwd FILE USER`; Mosquitto password files
    /// (`$7$` and `$6$` hashes) are read too. Absent means user names are not checked.
    pub password_file: Option<PathBuf>,
    /// Rules for PUBLISH and SUBSCRIBE, first match wins. Absent means everything is allowed
    /// (unless `http.acl_url` is set).
    pub acl_file: Option<PathBuf>,
    /// `[auth.http]`: an HTTP service asked before the files. Absent means none.
    pub http: Option<HttpAuthConfig>,
}

/// How requests reach the HTTP auth service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpMethod {
    /// POST with a JSON object of the fields.
    #[default]
    Post,
    /// GET with the fields as URL-encoded query parameters.
    Get,
}

/// `[auth.http]`: an HTTP service that answers allow, deny or ignore for CONNECTs (`url`) and
/// for PUBLISH and SUBSCRIBE (`acl_url`), asked before the password file and the ACL file.
/// See [`crate::auth::http`] for the order of back-ends, the requests and the answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpAuthConfig {
    /// `http://host[:port]/path` asked about every CONNECT. Absent means CONNECTs are checked
    /// by the files only.
    pub url: Option<String>,
    /// `http://host[:port]/path` asked about every PUBLISH and SUBSCRIBE the connection has
    /// no answer for yet. Absent means no HTTP ACL checks.
    pub acl_url: Option<String>,
    /// `post` (a JSON body) or `get` (query parameters).
    pub method: HttpMethod,
    /// Milliseconds a request may take, waiting for a free request slot included (1 to
    /// 60000); after that it counts as no answer.
    pub timeout_ms: u64,
    /// Seconds an answer is reused for the same question; 0 means no cache.
    pub cache_ttl_secs: u64,
    /// Answers kept at most; at least 1.
    pub cache_max_entries: usize,
    /// Requests open at once; more wait for a slot within `timeout_ms`. At least 1.
    pub max_concurrent_requests: usize,
    /// Extra request headers, such as `Authorization`. The client's own (`Host`,
    /// `Content-Length`, `Content-Type`, `Connection`, `Transfer-Encoding`) cannot be set.
    pub headers: BTreeMap<String, String>,
}

impl Default for HttpAuthConfig {
    fn default() -> Self {
        HttpAuthConfig {
            url: None,
            acl_url: None,
            method: HttpMethod::Post,
            timeout_ms: 3000,
            cache_ttl_secs: 60,
            cache_max_entries: 10_000,
            max_concurrent_requests: 32,
            headers: BTreeMap::new(),
        }
    }
}
