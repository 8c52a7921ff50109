//! `[[bridges]]`: the example's commented block, defaults, and validation errors with their lines.

use super::*;

const EXAMPLE: &str = include_str!("../../nanomq.example.toml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "nanomq.toml")
}

/// The example's commented `[[bridges]]` block, uncommented, parses and validates.
#[test]
fn example_block_uncommented_is_valid() {
    let start = EXAMPLE
        .lines()
        .position(|l| l == "# [[bridges]]")
        .expect("[[bridges]] block in the example");
    let text: String = EXAMPLE
        .lines()
        .skip(start)
        .filter_map(|l| l.strip_prefix("# ").or(l.strip_prefix('#')))
        .filter(|l| !l.starts_with("# "))
        .map(|l| format!("{l}\n"))
        .collect();
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let b = &config.bridges[0];
    assert_eq!(b.name, "cloud");
    assert_eq!(b.forwards[0].remote, "edge-0001/{topic}");
    assert_eq!(b.subscriptions[0].local, "commands/{3..}");
    assert!(b.tls.is_some() && b.will.is_some());
    assert_eq!(b.user_properties["site"], "plant-7");
    let defaults = BridgeConfig::default();
    assert_eq!(b.cache, defaults.cache);
    assert_eq!(
        (
            b.keepalive_secs,
            b.reconnect_min_ms,
            b.reconnect_max_ms,
            b.max_inflight
        ),
        (
            defaults.keepalive_secs,
            defaults.reconnect_min_ms,
            defaults.reconnect_max_ms,
            defaults.max_inflight
        )
    );
}

#[test]
fn defaults_of_a_short_bridge() {
    let text = "[[bridges]]\nname = \"b\"\naddress = \"127.0.0.1:1883\"\n\
                [[bridges.forwards]]\nfilter = \"a/#\"\n";
    let b = &parse(text).unwrap().bridges[0];
    assert_eq!(b.effective_client_id(), "nanomq-bridge-b");
    assert_eq!(b.host(), "127.0.0.1");
    assert_eq!(b.protocol, BridgeProtocol::V5);
    let f = &b.forwards[0];
    assert_eq!((f.remote.as_str(), f.qos, f.retain), ("{topic}", 1, true));
    assert_eq!(Config::default().bridges, []);
}

#[test]
fn ipv6_host() {
    let b = BridgeConfig {
        address: "[::1]:1883".into(),
        ..BridgeConfig::default()
    };
    assert_eq!(b.host(), "::1");
}

#[test]
fn validation_names_the_key_and_line() {
    let head = "[[bridges]]\nname = \"b\"\naddress = \"h:1883\"\n";
    let forward = "[[bridges.forwards]]\nfilter = \"a/#\"\n";
    let cases: Vec<(String, &str, usize)> = vec![
        (
            format!("[[bridges]]\nname = \"b c\"\naddress = \"h:1\"\n{forward}"),
            "bridges[0].name",
            2,
        ),
        (
            format!("[[bridges]]\nname = \"b\"\naddress = \"h\"\n{forward}"),
            "bridges[0].address",
            3,
        ),
        (
            format!("{head}max_inflight = 0\n{forward}"),
            "bridges[0].max_inflight",
            4,
        ),
        (
            format!("{head}reconnect_min_ms = 10\nreconnect_max_ms = 5\n{forward}"),
            "bridges[0].reconnect_max_ms",
            5,
        ),
        (
            format!("{head}protocol = \"3.1.1\"\npassword = \"p\"\n{forward}"),
            "bridges[0].password",
            5,
        ),
        (head.to_owned(), "bridges[0].name", 2),
        (
            format!("{head}{forward}remote = \"x/{{2}}\"\n"),
            "bridges.forwards[0].remote",
            6,
        ),
        (
            format!("{head}{forward}qos = 3\n"),
            "bridges.forwards[0].qos",
            6,
        ),
        (
            format!("{head}[[bridges.forwards]]\nfilter = \"a/#/b\"\n"),
            "bridges.forwards[0].filter",
            5,
        ),
        (
            format!("{head}[[bridges.subscriptions]]\nfilter = \"$share/g/a\"\n"),
            "bridges.subscriptions[0].filter",
            5,
        ),
        (
            format!("{head}[[bridges.subscriptions]]\nfilter = \"c/+\"\nlocal = \"{{3}}\"\n"),
            "bridges.subscriptions[0].local",
            6,
        ),
        (
            format!("{head}[bridges.cache]\nmax_messages = 0\n{forward}"),
            "bridges.cache[0].max_messages",
            5,
        ),
        (
            format!("{head}[bridges.will]\ntopic = \"a/#\"\n{forward}"),
            "bridges.will[0].topic",
            5,
        ),
        (
            format!("{head}[bridges.tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\n{forward}"),
            "bridges.tls[0].key",
            4,
        ),
        (
            format!("{head}protocol = \"3.1.1\"\n[bridges.user_properties]\na = \"b\"\n{forward}"),
            "bridges[0].protocol",
            4,
        ),
        (
            format!("{head}{forward}[[bridges]]\nname = \"b\"\naddress = \"h:1\"\n{forward}"),
            "bridges[1].name",
            7,
        ),
    ];
    for (text, key, want_line) in cases {
        let err = parse(&text).expect_err(&text);
        let message = err.to_string();
        assert!(message.contains(key), "{key} not in {message}\n{text}");
        let ConfigError::Invalid { place, .. } = &err else {
            panic!("not a validation error: {message}");
        };
        assert_eq!(
            place.at.map(|a| a.line),
            Some(want_line),
            "{message}\n{text}"
        );
    }
}

#[test]
fn unknown_bridge_keys_are_refused() {
    let text = "[[bridges]]\nname = \"b\"\naddress = \"h:1\"\nadress = \"x\"\n";
    assert!(parse(text).unwrap_err().to_string().contains("adress"));
}
