//! Schema, example-file and error-position tests.

use std::net::SocketAddr;
use std::path::Path;

use super::load::locate;
use super::*;

const EXAMPLE: &str = include_str!("../../nanomq.example.toml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "nanomq.toml")
}

/// The error's position and its full message, for compact assertions.
fn error(text: &str) -> (Option<Location>, String) {
    let err = parse(text).expect_err("config should be rejected");
    let at = match &err {
        ConfigError::Syntax { place, .. } | ConfigError::Invalid { place, .. } => place.at,
        ConfigError::Read { .. } => panic!("unexpected read error: {err}"),
    };
    (at, err.to_string())
}

fn line(at: Option<Location>) -> usize {
    at.expect("error should carry a location").line
}

#[test]
fn empty_file_gives_the_built_in_defaults() {
    let config = parse("").unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.log.level, "info");
    assert_eq!(config.runtime.worker_threads, 0);
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(config.listeners[0].kind, ListenerKind::Tcp);
    assert_eq!(
        config.listeners[0].bind,
        "0.0.0.0:1883".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.listeners[0].max_connections, 0);
    let l = &config.limits;
    assert_eq!(l.max_connections, 100_000);
    assert_eq!(l.max_packet_size, 1_048_576);
    assert_eq!((l.receive_maximum, l.max_inflight), (32, 32));
    assert_eq!(l.max_queued_messages, 1000);
    assert_eq!(l.queue_full_policy, QueueFullPolicy::DropNew);
    assert_eq!(l.max_topic_levels, 128);
    assert_eq!(l.max_topic_alias, 64);
    assert_eq!(l.max_subscriptions_per_client, 1000);
    assert_eq!((l.max_keepalive, l.min_keepalive), (65535, 0));
    assert_eq!(l.connect_timeout_secs, 10);
    assert_eq!(l.max_session_expiry_secs, 4_294_967_295);
    let m = &config.mqtt;
    assert!(m.retain_available && m.outgoing_topic_aliases && m.shared_subscriptions);
    assert!(m.wildcard_subscriptions && m.subscription_identifiers);
    assert_eq!(m.max_outgoing_topic_alias, 64);
    assert_eq!(m.max_qos, 2);
    assert_eq!(config.sys.interval_secs, 10);
    config.validate().unwrap();
}

#[test]
fn example_file_is_exactly_the_defaults() {
    assert_eq!(parse(EXAMPLE).unwrap(), Config::default());
}

#[test]
fn example_file_documents_every_key() {
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let mut checked = 0;
    for (table, value) in defaults.as_table().unwrap() {
        let (table, entries, index) = match value {
            toml::Value::Table(t) => (table.as_str(), t.clone(), None),
            toml::Value::Array(a) => (table.as_str(), a[0].as_table().unwrap().clone(), Some(0)),
            other => {
                let mut root = toml::Table::new();
                root.insert(table.clone(), other.clone());
                ("", root, None)
            }
        };
        for key in entries.keys() {
            let at = locate(EXAMPLE, table, index, key)
                .unwrap_or_else(|| panic!("{table}.{key} missing from the example"));
            let text = EXAMPLE.lines().nth(at.line - 1).unwrap();
            assert!(text.starts_with(key.as_str()), "{table}.{key} missing");
            let comment = EXAMPLE.lines().nth(at.line - 2).unwrap();
            assert!(comment.starts_with('#'), "{table}.{key} has no comment");
            checked += 1;
        }
    }
    assert_eq!(checked, 38);
}

/// Keys without a default value (None) are shown commented out, each with its comment.
#[test]
fn example_file_shows_the_optional_keys() {
    for key in [
        "# file = ",
        "# user = ",
        "# group = ",
        "# pid_file = ",
        "# dir = ",
        "[auth]",
        "# allow_anonymous = ",
        "# password_file = ",
        "# acl_file = ",
        "# [auth.http]",
        "# dir = ",
    ] {
        let at = EXAMPLE
            .lines()
            .position(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} missing from the example"));
        if key.starts_with("# ") {
            let comment = EXAMPLE.lines().nth(at - 1).unwrap();
            assert!(
                comment.starts_with('#') && !comment.contains(" = "),
                "{key} has no comment above it"
            );
        }
    }
    let auth = parse(EXAMPLE).unwrap().auth;
    assert_eq!(auth, AuthConfig::default());
}

#[test]
fn full_custom_file() {
    let text = r#"
[log]
level = "nanomq=debug,warn"

[runtime]
worker_threads = 2

[[listeners]]
bind = "127.0.0.1:0"

[[listeners]]
kind = "tcp"
bind = "[::1]:8883"
max_connections = 10

[limits]
max_connections = 50
max_packet_size = 4096
receive_maximum = 8
max_inflight = 4
max_queued_messages = 100
queue_full_policy = "drop-oldest"
max_topic_levels = 8
max_topic_alias = 0
max_subscriptions_per_client = 0
max_keepalive = 600
min_keepalive = 30
connect_timeout_secs = 3
max_pending_connections = 5
connect_rate_per_ip = 20
max_session_expiry_secs = 86400

[mqtt]
retain_available = false
outgoing_topic_aliases = false
max_outgoing_topic_alias = 10
shared_subscriptions = false
wildcard_subscriptions = false
subscription_identifiers = false
max_qos = 1

[sys]
interval_secs = 0

[auth]
allow_anonymous = true
password_file = "/etc/nanomq/passwd"
acl_file = "/etc/nanomq/acl"
"#;
    let config = parse(text).unwrap();
    let expected = Config {
        log: LogConfig {
            level: "nanomq=debug,warn".to_owned(),
            ..LogConfig::default()
        },
        runtime: RuntimeConfig { worker_threads: 2 },
        listeners: vec![
            ListenerConfig {
                kind: ListenerKind::Tcp,
                bind: "127.0.0.1:0".parse().unwrap(),
                ..ListenerConfig::default()
            },
            ListenerConfig {
                kind: ListenerKind::Tcp,
                bind: "[::1]:8883".parse().unwrap(),
                max_connections: 10,
                ..ListenerConfig::default()
            },
        ],
        limits: LimitsConfig {
            max_connections: 50,
            max_packet_size: 4096,
            receive_maximum: 8,
            max_inflight: 4,
            max_queued_messages: 100,
            queue_full_policy: QueueFullPolicy::DropOldest,
            max_topic_levels: 8,
            max_topic_alias: 0,
            max_subscriptions_per_client: 0,
            max_keepalive: 600,
            min_keepalive: 30,
            connect_timeout_secs: 3,
            max_pending_connections: 5,
            connect_rate_per_ip: 20,
            max_session_expiry_secs: 86400,
        },
        mqtt: MqttConfig {
            retain_available: false,
            outgoing_topic_aliases: false,
            max_outgoing_topic_alias: 10,
            shared_subscriptions: false,
            wildcard_subscriptions: false,
            subscription_identifiers: false,
            max_qos: 1,
        },
        sys: SysConfig { interval_secs: 0 },
        auth: AuthConfig {
            allow_anonymous: Some(true),
            password_file: Some("/etc/nanomq/passwd".into()),
            acl_file: Some("/etc/nanomq/acl".into()),
            http: None,
        },
        ..Config::default()
    };
    assert_eq!(config, expected);
}

#[test]
fn partial_sections_keep_the_other_defaults() {
    let config = parse("[limits]\nmax_inflight = 5\n").unwrap();
    assert_eq!(config.limits.max_inflight, 5);
    assert_eq!(config.limits.receive_maximum, 32);
    assert_eq!(config.listeners, Config::default().listeners);
    let config = parse("[[listeners]]\nmax_connections = 3\n").unwrap();
    assert_eq!(
        config.listeners[0].bind,
        Config::default().listeners[0].bind
    );
}

#[test]
fn unknown_key_names_the_key_and_line() {
    let (at, msg) = error("[log]\nlevel = \"info\"\n\n[limits]\n  max_conections = 10\n");
    assert_eq!(at, Some(Location { line: 5, column: 3 }));
    assert!(
        msg.starts_with("nanomq.toml:5:3: unknown field `max_conections`, expected one of"),
        "{msg}"
    );
    assert!(msg.contains("`max_connections`"), "{msg}");
    let (at, msg) = error("[limts]\n");
    assert_eq!(line(at), 1);
    assert!(msg.contains("unknown field `limts`"), "{msg}");
    let (at, msg) = error("[[listeners]]\nbind = \"127.0.0.1:1\"\nport = 3\n");
    assert_eq!(line(at), 3);
    assert!(msg.contains("`port`"), "{msg}");
}

#[test]
fn wrong_type_names_the_line() {
    let (at, msg) = error("[limits]\nmax_inflight = 1\nmax_packet_size = \"big\"\n");
    assert_eq!(line(at), 3);
    assert!(msg.starts_with("nanomq.toml:3:"), "{msg}");
    assert!(msg.contains("invalid type"), "{msg}");
    let (at, msg) = error("[limits]\nreceive_maximum = 70000\n");
    assert_eq!(line(at), 2);
    assert!(msg.contains("70000"), "{msg}");
    let (at, msg) = error("[[listeners]]\nbind = \"localhost\"\n");
    assert_eq!(line(at), 2);
    assert!(msg.contains("address"), "{msg}");
    let (at, msg) = error("[[listeners]]\nkind = \"quic\"\n");
    assert_eq!(line(at), 2);
    assert!(msg.contains("unknown variant `quic`"), "{msg}");
    let (at, msg) = error("\n\n[limits]\nqueue_full_policy = \"block\"\n");
    assert_eq!(line(at), 4);
    assert!(msg.contains("drop-oldest"), "{msg}");
}

#[test]
fn toml_syntax_error_names_the_line() {
    let (at, msg) = error("[log]\nlevel = info\n");
    assert_eq!(line(at), 2);
    assert!(msg.starts_with("nanomq.toml:2:"), "{msg}");
}

/// Each validation rule, with the key it must name and the line it must point at.
#[test]
fn validation_rules_name_key_and_line() {
    let cases: &[(&str, &str, usize)] = &[
        (
            "[limits]\nmax_packet_size = 15\n",
            "limits.max_packet_size",
            2,
        ),
        (
            "[limits]\nmax_packet_size = 268435461\n",
            "limits.max_packet_size",
            2,
        ),
        (
            "[limits]\n\nreceive_maximum = 0\n",
            "limits.receive_maximum",
            3,
        ),
        ("[limits]\nmax_inflight = 0\n", "limits.max_inflight", 2),
        (
            "[limits]\nmax_queued_messages = 0\n",
            "limits.max_queued_messages",
            2,
        ),
        (
            "[limits]\nmax_topic_levels = 0\n",
            "limits.max_topic_levels",
            2,
        ),
        (
            "[limits]\nmax_connections = 0\n",
            "limits.max_connections",
            2,
        ),
        (
            "[limits]\nconnect_timeout_secs = 0\n",
            "limits.connect_timeout_secs",
            2,
        ),
        (
            "[limits]\nmax_keepalive = 60\nmin_keepalive = 61\n",
            "limits.min_keepalive",
            3,
        ),
        (
            "[limits]\nmax_connections = 1\n[mqtt]\nmax_qos = 3\n",
            "mqtt.max_qos",
            4,
        ),
        ("[log]\nlevel = \"info,,=x[\"\n", "log.level", 2),
        ("# none\nlisteners = []\n", "listeners", 2),
    ];
    for (text, key, expected_line) in cases {
        let (at, msg) = error(text);
        assert_eq!(line(at), *expected_line, "{text}: {msg}");
        let prefix = format!("nanomq.toml:{expected_line}:1: {key}: ");
        assert!(msg.starts_with(&prefix), "{text}: {msg}");
    }
}

#[test]
fn duplicate_bind_points_at_the_second_listener() {
    let text =
        "[[listeners]]\nbind = \"0.0.0.0:1883\"\n\n[[listeners]]\nbind = \"127.0.0.1:1883\"\n";
    let (at, msg) = error(text);
    assert_eq!(line(at), 5);
    assert!(
        msg.contains("listeners[1].bind: 127.0.0.1:1883 conflicts"),
        "{msg}"
    );
    // Both default to 0.0.0.0:1883: no bind key to point at, so the header is named.
    let (at, msg) = error("[[listeners]]\n[[listeners]]\nmax_connections = 1\n");
    assert_eq!(line(at), 2);
    assert!(msg.contains("listeners[1].bind"), "{msg}");
    // Port 0 twice is fine: each listener gets its own free port.
    parse("[[listeners]]\nbind = \"127.0.0.1:0\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\n")
        .unwrap();
}

#[test]
fn dotted_keys_and_inline_tables_are_located() {
    let (at, msg) = error("log.level = \"info\"\nlimits.max_inflight = 0\n");
    assert_eq!(line(at), 2);
    assert!(msg.contains("limits.max_inflight"), "{msg}");
    let (at, _) = error("\nlimits = { max_connections = 9, max_inflight = 0 }\n");
    assert_eq!(line(at), 2);
}

#[test]
fn location_of_offset() {
    let text = "ab\ncé\nx";
    assert_eq!(
        Location::of_offset(text, 0),
        Location { line: 1, column: 1 }
    );
    assert_eq!(
        Location::of_offset(text, 3),
        Location { line: 2, column: 1 }
    );
    // Offset 6 is past "cé" (é is two bytes); 5 falls inside é.
    assert_eq!(
        Location::of_offset(text, 6),
        Location { line: 2, column: 3 }
    );
    assert_eq!(
        Location::of_offset(text, 5),
        Location { line: 2, column: 2 }
    );
    assert_eq!(
        Location::of_offset(text, 99),
        Location { line: 3, column: 2 }
    );
}

#[test]
fn missing_file_names_the_path_and_never_falls_back() {
    let path = Path::new("/nonexistent/nanomq-test.toml");
    let err = Layered::load(Some(path)).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    let msg = err.to_string();
    assert!(
        msg.starts_with("cannot read config file /nonexistent/nanomq-test.toml: "),
        "{msg}"
    );
}

#[test]
fn load_reads_a_real_file() {
    let dir = std::env::temp_dir().join(format!("nanomq-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nanomq.toml");
    std::fs::write(&path, "[limits]\nmax_inflight = 0\n").unwrap();
    let msg = Layered::load(Some(&path)).unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "{}:2:1: limits.max_inflight: 0 is below the minimum of 1",
            path.display()
        )
    );
    std::fs::write(&path, "[sys]\ninterval_secs = 1\n").unwrap();
    assert_eq!(
        Layered::load(Some(&path)).unwrap().config.sys.interval_secs,
        1
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serialized_defaults_parse_back() {
    let text = toml::to_string(&Config::default()).unwrap();
    assert_eq!(parse(&text).unwrap(), Config::default());
}

#[test]
fn transport_settings_must_fit_the_kind() {
    let tls = "[listeners.tls]\ncert = \"s.crt\"\nkey = \"s.key\"\n";
    let (_, msg) = error("[[listeners]]\nkind = \"tls\"\nbind = \"127.0.0.1:0\"\n");
    assert!(
        msg.contains("listeners[0].tls") && msg.contains("cert and key"),
        "{msg}"
    );
    let (_, msg) = error(&format!("[[listeners]]\nkind = \"tcp\"\n{tls}"));
    assert!(msg.contains("do not use TLS"), "{msg}");
    let (_, msg) = error(&format!(
        "[[listeners]]\nkind = \"tls\"\n{tls}verify = \"required\"\n"
    ));
    assert!(msg.contains("listeners[0].tls.ca"), "{msg}");
    let (_, msg) = error("[[listeners]]\nkind = \"ws\"\npath = \"mqtt\"\n");
    assert!(msg.contains("listeners[0].path"), "{msg}");
    let (at, msg) = error(&format!(
        "[[listeners]]\nkind = \"wss\"\n{tls}verify = \"sometimes\"\n"
    ));
    assert_eq!(line(at), 6);
    assert!(msg.contains("unknown variant `sometimes`"), "{msg}");

    let config = parse(&format!(
        "[[listeners]]\nkind = \"wss\"\nbind = \"127.0.0.1:0\"\npath = \"/ws\"\n{tls}\
         verify = \"optional\"\nca = \"ca.crt\"\nalpn = []\n"
    ))
    .unwrap();
    let l = &config.listeners[0];
    assert_eq!((l.kind, l.path.as_str()), (ListenerKind::Wss, "/ws"));
    let t = l.tls.as_ref().unwrap();
    assert_eq!(t.verify, ClientCertificates::Optional);
    assert_eq!(t.ca.as_deref(), Some(std::path::Path::new("ca.crt")));
    assert_eq!(t.alpn, Some(vec![]));
}

/// A build without a transport's feature refuses its listeners by naming the feature.
#[test]
fn kinds_left_out_of_the_build_name_their_feature() {
    let tls = "[listeners.tls]\ncert = \"s.crt\"\nkey = \"s.key\"\n";
    let tls_listener = parse(&format!("[[listeners]]\nkind = \"tls\"\n{tls}"));
    assert_eq!(tls_listener.is_ok(), cfg!(feature = "tls"));
    if let Err(e) = tls_listener {
        assert!(e.to_string().contains("`tls` cargo feature"), "{e}");
    }
    let ws_listener = parse("[[listeners]]\nkind = \"ws\"\n");
    assert_eq!(ws_listener.is_ok(), cfg!(feature = "websocket"));
    if let Err(e) = ws_listener {
        assert!(e.to_string().contains("`websocket` cargo feature"), "{e}");
    }
}

#[test]
fn user_names_from_certificates_need_client_certificates() {
    let tls = "[listeners.tls]\ncert = \"s.crt\"\nkey = \"s.key\"\nusername_from = \"cn\"\n";
    let (_, msg) = error(&format!("[[listeners]]\nkind = \"tls\"\n{tls}"));
    assert!(msg.contains("listeners[0].tls.username_from"), "{msg}");
    let config = parse(&format!(
        "[[listeners]]\nkind = \"tls\"\n{tls}verify = \"required\"\nca = \"ca.crt\"\n"
    ))
    .unwrap();
    let from = config.listeners[0].tls.as_ref().unwrap().username_from;
    assert_eq!(from, UsernameFrom::Cn);
}
