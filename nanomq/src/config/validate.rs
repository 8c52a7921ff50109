//! The rules serde cannot express: ranges, relations between keys, duplicate listeners.
//!
//! They run on every loaded config, so the broker can rely on them (for example that
//! `receive_maximum` is non-zero, as MQTT 5 requires of the value it advertises).

use std::net::SocketAddr;

use super::{ClientCertificates, Config, HttpAuthConfig, ListenerConfig, UsernameFrom};
use crate::auth::http::client::HttpUrl;

/// Smallest useful maximum packet size: a CONNECT with a short client id fits.
pub const MIN_PACKET_SIZE: u32 = 16;
/// Largest packet MQTT can frame: 268,435,455 bytes of remaining length plus a 5-byte header.
pub const MAX_PACKET_SIZE: u32 = 268_435_460;

/// A value the broker cannot run with, and the key it was set under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", key_path(.table, *.index, .key))]
pub struct InvalidValue {
    /// Section of the key, `""` for the root table.
    pub table: &'static str,
    /// Which `[[table]]` entry, for arrays of tables.
    pub index: Option<usize>,
    /// The key, as written in the file.
    pub key: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// `limits.max_qos` or `listeners[1].bind`, as an operator would point at the key.
fn key_path(table: &str, index: Option<usize>, key: &str) -> String {
    match (table.is_empty(), index) {
        (true, _) => key.to_owned(),
        (false, Some(i)) => format!("{table}[{i}].{key}"),
        (false, None) => format!("{table}.{key}"),
    }
}

impl Config {
    /// Checks the rules that serde's types do not: ranges, relations between keys and
    /// duplicate listeners. [`Config::parse`] and [`super::Layered::load`] call it; call it yourself on a
    /// config built in code.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let invalid = |table, key, message: String| InvalidValue {
            table,
            index: None,
            key,
            message,
        };
        if let Err(e) = self
            .log
            .level
            .parse::<tracing_subscriber::filter::Targets>()
        {
            return Err(invalid(
                "log",
                "level",
                format!("not a tracing filter: {e}"),
            ));
        }
        if self.log.max_size_kb == 0 {
            return Err(invalid("log", "max_size_kb", at_least(1, "0")));
        }
        self.validate_listeners()?;
        let l = &self.limits;
        if l.max_connections == 0 {
            return Err(invalid("limits", "max_connections", at_least(1, "0")));
        }
        if l.max_packet_size < MIN_PACKET_SIZE {
            let value = l.max_packet_size.to_string();
            return Err(invalid(
                "limits",
                "max_packet_size",
                at_least(MIN_PACKET_SIZE, &value),
            ));
        }
        if l.max_packet_size > MAX_PACKET_SIZE {
            let message = format!(
                "{} exceeds the MQTT maximum of {MAX_PACKET_SIZE}",
                l.max_packet_size
            );
            return Err(invalid("limits", "max_packet_size", message));
        }
        let non_zero = [
            ("receive_maximum", l.receive_maximum == 0),
            ("max_inflight", l.max_inflight == 0),
            ("max_queued_messages", l.max_queued_messages == 0),
            ("max_topic_levels", l.max_topic_levels == 0),
            ("connect_timeout_secs", l.connect_timeout_secs == 0),
        ];
        if let Some((key, _)) = non_zero.iter().find(|(_, zero)| *zero) {
            return Err(invalid("limits", key, at_least(1, "0")));
        }
        if l.min_keepalive > l.max_keepalive {
            let message = format!(
                "{} is greater than limits.max_keepalive ({})",
                l.min_keepalive, l.max_keepalive
            );
            return Err(invalid("limits", "min_keepalive", message));
        }
        if self.mqtt.max_qos > 2 {
            let message = format!("{} is not a QoS: use 0, 1 or 2", self.mqtt.max_qos);
            return Err(invalid("mqtt", "max_qos", message));
        }
        let p = &self.persistence;
        if !(1..=super::MAX_BATCH_WINDOW_MS).contains(&p.batch_window_ms) {
            let message = format!(
                "{} is outside 1..={}",
                p.batch_window_ms,
                super::MAX_BATCH_WINDOW_MS
            );
            return Err(invalid("persistence", "batch_window_ms", message));
        }
        let non_zero = [
            ("max_messages", p.max_messages == 0),
            ("max_bytes", p.max_bytes == 0),
            ("max_session_bytes", p.max_session_bytes == 0),
        ];
        if let Some((key, _)) = non_zero.iter().find(|(_, zero)| *zero) {
            return Err(invalid("persistence", key, at_least(1, "0")));
        }
        if let Some(http) = &self.auth.http {
            validate_http(http).map_err(|(key, message)| invalid("auth.http", key, message))?;
        }
        self.validate_bridges(l.max_topic_levels)
    }

    #[cfg(feature = "bridge")]
    fn validate_bridges(&self, max_levels: usize) -> Result<(), InvalidValue> {
        super::bridge::validate(&self.bridges, max_levels)
    }

    /// A build without the `bridge` feature refuses any `[[bridges]]` entry by name.
    #[cfg(not(feature = "bridge"))]
    fn validate_bridges(&self, _max_levels: usize) -> Result<(), InvalidValue> {
        if self.bridges.is_empty() {
            return Ok(());
        }
        Err(InvalidValue {
            table: "bridges",
            index: Some(0),
            key: "name",
            message: "this build has no bridges (cargo feature `bridge`)".to_owned(),
        })
    }

    /// At least one listener, and no two that would fight over the same port.
    fn validate_listeners(&self) -> Result<(), InvalidValue> {
        if self.listeners.is_empty() {
            return Err(InvalidValue {
                table: "",
                index: None,
                key: "listeners",
                message: "is empty: the broker needs at least one listener".to_owned(),
            });
        }
        for (i, listener) in self.listeners.iter().enumerate() {
            validate_transport(listener).map_err(|(key, message)| InvalidValue {
                table: "listeners",
                index: Some(i),
                key,
                message,
            })?;
            let earlier = self.listeners[..i]
                .iter()
                .position(|other| binds_overlap(other.bind, listener.bind));
            if let Some(j) = earlier {
                return Err(InvalidValue {
                    table: "listeners",
                    index: Some(i),
                    key: "bind",
                    message: format!(
                        "{} conflicts with listeners[{j}].bind = {}",
                        listener.bind, self.listeners[j].bind
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The transport settings fit the kind, and the kind is compiled in.
fn validate_transport(l: &ListenerConfig) -> Result<(), (&'static str, String)> {
    let kind = l.kind.name();
    let missing = |feature: &str| {
        format!(
            "\"{kind}\" listeners need the `{feature}` cargo feature, which this build leaves out"
        )
    };
    if l.kind.is_tls() && !cfg!(feature = "tls") {
        return Err(("kind", missing("tls")));
    }
    if l.kind.is_websocket() && !cfg!(feature = "websocket") {
        return Err(("kind", missing("websocket")));
    }
    if l.kind.is_websocket() && !l.path.starts_with('/') {
        return Err(("path", format!("{:?} must start with \"/\"", l.path)));
    }
    match (&l.tls, l.kind.is_tls()) {
        (None, true) => Err((
            "tls",
            format!("\"{kind}\" listeners need a [listeners.tls] table with cert and key"),
        )),
        (Some(_), false) => Err((
            "tls",
            format!("\"{kind}\" listeners do not use TLS: use kind = \"tls\" or \"wss\""),
        )),
        (Some(tls), true) if tls.verify != ClientCertificates::None && tls.ca.is_none() => Err((
            "tls.ca",
            "is needed to verify client certificates (tls.verify is not \"none\")".to_owned(),
        )),
        (Some(tls), true)
            if tls.username_from != UsernameFrom::Connect
                && tls.verify == ClientCertificates::None =>
        {
            Err((
                "tls.username_from",
                "needs client certificates: set tls.verify to \"optional\" or \"required\""
                    .to_owned(),
            ))
        }
        _ => Ok(()),
    }
}

/// Longest `auth.http.timeout_ms`: a parked PUBLISH or SUBSCRIBE waits at most this long.
pub const MAX_HTTP_TIMEOUT_MS: u64 = 60_000;

/// Headers the HTTP client writes itself.
const RESERVED_HEADERS: [&str; 5] = [
    "host",
    "content-length",
    "content-type",
    "connection",
    "transfer-encoding",
];

/// URLs parse, numbers are in range, headers cannot break the request.
fn validate_http(http: &HttpAuthConfig) -> Result<(), (&'static str, String)> {
    if http.url.is_none() && http.acl_url.is_none() {
        return Err((
            "url",
            "is missing: [auth.http] needs url, acl_url or both".to_owned(),
        ));
    }
    for (key, url) in [("url", &http.url), ("acl_url", &http.acl_url)] {
        if let Some(url) = url {
            HttpUrl::parse(url).map_err(|e| (key, e))?;
        }
    }
    if http.timeout_ms == 0 {
        return Err(("timeout_ms", at_least(1, "0")));
    }
    if http.timeout_ms > MAX_HTTP_TIMEOUT_MS {
        let message = format!(
            "{} exceeds the maximum of {MAX_HTTP_TIMEOUT_MS}",
            http.timeout_ms
        );
        return Err(("timeout_ms", message));
    }
    if http.cache_max_entries == 0 {
        return Err(("cache_max_entries", at_least(1, "0")));
    }
    if http.max_concurrent_requests == 0 {
        return Err(("max_concurrent_requests", at_least(1, "0")));
    }
    for (name, value) in &http.headers {
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            return Err(("headers", format!("{name:?} is not a header name")));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(("headers", format!("{name} is set by the broker itself")));
        }
        if value.chars().any(|c| c.is_ascii_control() && c != '\t') {
            return Err((
                "headers",
                format!("the value of {name} holds control characters (CR, LF, ...)"),
            ));
        }
    }
    Ok(())
}

/// "`value` is below the minimum of `min`".
fn at_least(min: u32, value: &str) -> String {
    format!("{value} is below the minimum of {min}")
}

/// True if binding both addresses would fail with "address in use": the same non-zero port on
/// the same address, or on a wildcard address covering the other (`0.0.0.0` covers IPv4; `[::]`
/// covers both families, as on Linux by default). Port 0 never conflicts: each gets a free port.
fn binds_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    let covers = |wild: SocketAddr, other: SocketAddr| {
        wild.ip().is_unspecified() && (wild.is_ipv6() || other.is_ipv4())
    };
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn overlapping_binds() {
        assert!(binds_overlap(addr("0.0.0.0:1883"), addr("0.0.0.0:1883")));
        assert!(binds_overlap(addr("0.0.0.0:1883"), addr("127.0.0.1:1883")));
        assert!(binds_overlap(addr("127.0.0.1:1883"), addr("[::]:1883")));
        assert!(!binds_overlap(
            addr("127.0.0.1:1883"),
            addr("127.0.0.2:1883")
        ));
        assert!(!binds_overlap(addr("0.0.0.0:1883"), addr("0.0.0.0:1884")));
        assert!(!binds_overlap(addr("0.0.0.0:1883"), addr("[::1]:1883")));
        assert!(!binds_overlap(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
    }

    #[test]
    fn key_paths() {
        assert_eq!(key_path("", None, "listeners"), "listeners");
        assert_eq!(key_path("limits", None, "max_qos"), "limits.max_qos");
        assert_eq!(key_path("listeners", Some(1), "bind"), "listeners[1].bind");
    }
}
