//! `[auth.http]`: the example's commented block, defaults, and the validation errors with
//! their lines.

use std::collections::BTreeMap;

use super::*;

const EXAMPLE: &str = include_str!("../../nanomq.example.toml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "nanomq.toml")
}

/// The example's commented `[auth.http]` block, uncommented: every key at its default but
/// the URLs and the header, which have none.
#[test]
fn example_block_uncommented_is_the_defaults() {
    let start = EXAMPLE
        .lines()
        .position(|l| l == "# [auth.http]")
        .expect("[auth.http] block in the example");
    let mut text = String::from("[auth]\n");
    let mut keys = 0;
    for line in EXAMPLE.lines().skip(start) {
        let Some(rest) = line.strip_prefix("# ") else {
            break;
        };
        if !rest.starts_with("# ") {
            keys += usize::from(rest.contains(" = "));
            text.push_str(rest);
            text.push('\n');
        }
    }
    let http = parse(&text).unwrap().auth.http.expect("[auth.http] parsed");
    let expected = HttpAuthConfig {
        url: Some("http://127.0.0.1:8991/mqtt/auth".to_owned()),
        acl_url: Some("http://127.0.0.1:8991/mqtt/acl".to_owned()),
        headers: BTreeMap::from([("Authorization".to_owned(), "Bearer change-me".to_owned())]),
        ..HttpAuthConfig::default()
    };
    assert_eq!(http, expected);
    let documented = toml::Value::try_from(HttpAuthConfig::default())
        .unwrap()
        .as_table()
        .unwrap()
        .len();
    // url and acl_url have no default and are not serialized; headers (empty) is.
    assert_eq!(
        keys,
        documented + 2,
        "every [auth.http] key is in the example"
    );
}

#[test]
fn defaults_and_get() {
    let config =
        parse("[auth.http]\nurl = \"http://auth.local/check\"\nmethod = \"get\"\n").unwrap();
    let http = config.auth.http.unwrap();
    assert_eq!(http.method, HttpMethod::Get);
    assert_eq!(http.timeout_ms, 3000);
    assert_eq!(http.cache_ttl_secs, 60);
    assert_eq!(http.cache_max_entries, 10_000);
    assert_eq!(http.max_concurrent_requests, 32);
    assert!(http.acl_url.is_none() && http.headers.is_empty());
}

#[test]
fn errors_name_the_key_and_line() {
    let cases = [
        (
            "[auth.http]\ntimeout_ms = 10\n",
            1,
            "auth.http.url: is missing: [auth.http] needs url, acl_url or both",
        ),
        (
            "[auth.http]\nurl = \"https://auth.local/\"\n",
            2,
            "auth.http.url: https:// is not supported",
        ),
        (
            "[auth.http]\nacl_url = \"ftp://x/\"\n",
            2,
            "auth.http.acl_url: \"ftp://x/\" is not an http:// URL",
        ),
        (
            "[auth.http]\nurl = \"http://x:99999/\"\n",
            2,
            "auth.http.url: \"99999\" is not a port",
        ),
        (
            "[auth.http]\nurl = \"http:///path\"\n",
            2,
            "auth.http.url: names no host",
        ),
        (
            "[auth.http]\nurl = \"http://x/\"\n\ntimeout_ms = 0\n",
            4,
            "auth.http.timeout_ms: 0 is below the minimum of 1",
        ),
        (
            "[auth.http]\nurl = \"http://x/\"\ntimeout_ms = 60001\n",
            3,
            "auth.http.timeout_ms: 60001 exceeds the maximum of 60000",
        ),
        (
            "[auth.http]\nurl = \"http://x/\"\nmax_concurrent_requests = 0\n",
            3,
            "auth.http.max_concurrent_requests: 0 is below",
        ),
        (
            "[auth.http]\nurl = \"http://x/\"\ncache_max_entries = 0\n",
            3,
            "auth.http.cache_max_entries: 0 is below",
        ),
        (
            "[auth.http]\nurl = \"http://x/\"\nheaders = { X-A = \"a\\r\\nX-B: b\" }\n",
            3,
            "auth.http.headers: the value of X-A holds control characters",
        ),
        (
            "[auth.http]\nurl = \"http://x/\"\nheaders = { Host = \"evil\" }\n",
            3,
            "auth.http.headers: Host is set by the broker itself",
        ),
        (
            "[auth.http]\nurl = \"http://x/\"\nheaders = { \"a b\" = \"c\" }\n",
            3,
            "auth.http.headers: \"a b\" is not a header name",
        ),
        (
            "[auth.http]\nurl = \"http://x/\"\nmethod = \"put\"\n",
            3,
            "unknown variant `put`",
        ),
    ];
    for (text, line, message) in cases {
        let err = parse(text).expect_err(text);
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("nanomq.toml:{line}:")),
            "{text:?}: {shown}"
        );
        assert!(shown.contains(message), "{text:?}: {shown}");
    }
}

#[test]
fn urls_parse_into_host_port_and_target() {
    use crate::auth::http::client::HttpUrl;
    let u = HttpUrl::parse("http://auth.local").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.target.as_str()),
        ("auth.local", 80, "/")
    );
    let u = HttpUrl::parse("http://127.0.0.1:8080/a/b?x=1").unwrap();
    assert_eq!(
        (
            u.host.as_str(),
            u.port,
            u.target.as_str(),
            u.authority.as_str()
        ),
        ("127.0.0.1", 8080, "/a/b?x=1", "127.0.0.1:8080")
    );
    let u = HttpUrl::parse("http://[::1]:81?q").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.target.as_str()),
        ("::1", 81, "/?q")
    );
    for bad in [
        "http://[::1",
        "http://[zz]/",
        "http://a b/",
        "http://u:p@host/",
        "http://host/#frag",
        "http://host:0/",
        "http://ho%st/",
    ] {
        assert!(HttpUrl::parse(bad).is_err(), "{bad} accepted");
    }
}
