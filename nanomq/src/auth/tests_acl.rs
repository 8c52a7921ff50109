//! ACL parsing (errors with line numbers) and matching tables: actions, subjects, `%u`/`%c`,
//! first match, default policy, `$` topics, shared subscriptions, filter coverage and overlap.

use std::net::IpAddr;

use super::acl::{covers, overlaps, Access, Acl, Subject};

fn subject<'a>(username: Option<&'a str>, client_id: &'a str, ip: &str) -> Subject<'a> {
    Subject {
        username,
        client_id,
        ip: ip.parse::<IpAddr>().unwrap(),
        cert_cn: None,
    }
}

fn acl(text: &str) -> Acl {
    Acl::parse(text).unwrap_or_else(|e| panic!("{text}: line {}: {}", e.line, e.message))
}

#[test]
fn parse_errors_name_the_line() {
    let cases = [
        (
            "allow all publish a\nfoo all publish a\n",
            2,
            "expected `allow`, `deny` or `default`",
        ),
        ("\n\nallow all\n", 3, "expected `allow|deny WHO"),
        ("allow all publish\n", 1, "expected `allow|deny WHO"),
        ("allow all publsh a/b\n", 1, "unknown action `publsh`"),
        (
            "allow everyone publish a\n",
            1,
            "unknown subject `everyone`",
        ),
        (
            "allow group:x publish a\n",
            1,
            "unknown subject kind `group:`",
        ),
        ("allow user: publish a\n", 1, "`user:` needs a value"),
        (
            "allow ip:10.0.0/8 both a\n",
            1,
            "`10.0.0` is not an IPv4 or IPv6 address",
        ),
        (
            "allow ip:10.0.0.0/33 both a\n",
            1,
            "prefix `/33` is not a number from 0 to 32",
        ),
        ("allow ip:::1/129 both a\n", 1, "from 0 to 128"),
        (
            "allow ip:10.1.2.3/8 both a\n",
            1,
            "did you mean 10.0.0.0/8?",
        ),
        ("allow ip:fe80::1/10 both a\n", 1, "did you mean fe80::/10?"),
        ("allow all both a/#/b\n", 1, "`a/#/b`"),
        ("allow all both a+\n", 1, "`+` must be a whole level"),
        (
            "allow all both %u#\n",
            1,
            "`#` must be the whole last level",
        ),
        (
            "allow all both $share/g/a\n",
            1,
            "shared subscriptions are checked on their inner",
        ),
        ("default maybe\n", 1, "`default` takes `allow` or `deny`"),
        (
            "# c\ndefault deny\ndefault allow\n",
            3,
            "second `default` (the first is on line 2)",
        ),
    ];
    for (text, line, message) in cases {
        let err = Acl::parse(text).expect_err(text);
        assert_eq!(err.line, line, "{text:?}: {err:?}");
        assert!(err.message.contains(message), "{text:?}: {err:?}");
    }
}

#[test]
fn parse_accepts_the_documented_example() {
    let a = acl("# example\n\
        default deny\n\
        allow user:alice     publish   sensors/alice/#\n\
        allow all            subscribe sensors/+/temperature\n\
        deny  ip:10.0.0.0/8  both      $SYS/#\n\
        allow client:gw-1    both      gateways/%c/#\n\
        allow all            both      users/%u/#\n\
        allow cn:gateway-1   subscribe #\n\
        \t allow ip:::1 both topic with spaces/+ \n");
    assert_eq!(a.len(), 7);
    assert_eq!(a.default_access(), Access::Deny);
    assert!(a.trusts_user_names());
    assert_eq!(Acl::parse("").unwrap().default_access(), Access::Deny);
    assert!(Acl::parse("").unwrap().is_empty());
    assert_eq!(
        Acl::parse("default allow").unwrap().default_access(),
        Access::Allow
    );
    assert!(!acl("allow client:x both a").trusts_user_names());
}

#[test]
fn actions_and_first_match_and_default() {
    let a = acl("\
        deny  all publish   a/secret\n\
        allow all publish   a/#\n\
        allow all subscribe b/#\n\
        allow all both      c/#\n\
        default deny\n");
    let s = subject(None, "c1", "127.0.0.1");
    let table = [
        // (publish?, topic or filter, allowed)
        (true, "a/x", true),
        (true, "a/secret", false),
        (false, "a/x", false),
        (true, "b/x", false),
        (false, "b/x", true),
        (false, "b/+/y", true),
        (true, "c/x", true),
        (false, "c/#", true),
        (true, "d", false),
        (false, "d", false),
    ];
    for (publish, topic, allowed) in table {
        let got = if publish {
            a.may_publish(&s, topic)
        } else {
            a.may_subscribe(&s, topic)
        };
        assert_eq!(got, allowed, "publish={publish} {topic}");
    }
    // Order decides: the same rules the other way round let the secret through.
    let a = acl("allow all publish a/#\ndeny all publish a/secret\n");
    assert!(a.may_publish(&s, "a/secret"));
    // Default allow.
    let a = acl("deny all publish x\ndefault allow\n");
    assert!(a.may_publish(&s, "y") && a.may_subscribe(&s, "#"));
    assert!(!a.may_publish(&s, "x"));
}

#[test]
fn subjects() {
    let a = acl("\
        allow user:alice      publish u\n\
        allow anonymous       publish anon\n\
        allow client:dev-1    publish c\n\
        allow ip:192.168.1.7  publish ip4\n\
        allow ip:10.0.0.0/8   publish net4\n\
        allow ip:2001:db8::/32 publish net6\n\
        allow ip:::1          publish ip6\n\
        allow ip:0.0.0.0/0    publish any4\n\
        allow cn:gateway-1    publish cn\n");
    let alice = subject(Some("alice"), "x", "127.0.0.1");
    let bob = subject(Some("bob"), "dev-1", "10.2.3.4");
    let anon = subject(None, "y", "192.168.1.7");
    let v6 = subject(Some("alice"), "z", "2001:db8:1::5");
    let lo6 = subject(None, "z", "::1");
    let cases = [
        (alice, "u", true),
        (bob, "u", false),
        (anon, "u", false),
        (anon, "anon", true),
        (alice, "anon", false),
        (bob, "c", true),
        (alice, "c", false),
        (anon, "ip4", true),
        (bob, "ip4", false),
        (bob, "net4", true),
        (anon, "net4", false),
        (v6, "net6", true),
        (lo6, "net6", false),
        (lo6, "ip6", true),
        (alice, "ip6", false),
        (alice, "any4", true),
        (v6, "any4", false),
    ];
    for (s, topic, allowed) in cases {
        assert_eq!(a.may_publish(&s, topic), allowed, "{s:?} {topic}");
    }
    // cn: needs a certificate name: only a subject that has one matches.
    let mut with_cn = alice;
    assert!(!a.may_publish(&with_cn, "cn"));
    with_cn.cert_cn = Some("gateway-1");
    assert!(a.may_publish(&with_cn, "cn"));
    with_cn.cert_cn = Some("gateway-2");
    assert!(!a.may_publish(&with_cn, "cn"));
}

#[test]
fn user_and_client_substitution() {
    let a = acl("\
        allow all both users/%u/#\n\
        allow all both devices/%c/+/state\n\
        allow all publish gw-%c/%u\n");
    let alice = subject(Some("alice"), "dev-9", "127.0.0.1");
    let anon = subject(None, "dev-9", "127.0.0.1");
    let cases = [
        (alice, "users/alice/x", true),
        (alice, "users/alice", true),
        (alice, "users/bob/x", false),
        (anon, "users/alice/x", false),
        (alice, "devices/dev-9/1/state", true),
        (anon, "devices/dev-9/1/state", true),
        (alice, "devices/dev-8/1/state", false),
        (alice, "gw-dev-9/alice", true),
        (anon, "gw-dev-9/alice", false),
    ];
    for (s, topic, allowed) in cases {
        assert_eq!(a.may_publish(&s, topic), allowed, "{s:?} {topic}");
    }
    assert!(a.may_subscribe(&alice, "users/alice/+"));
    assert!(!a.may_subscribe(&alice, "users/+/x"));
    // Values that would change the filter's shape never match.
    for (user, client) in [("a/b", "ok"), ("a+", "ok"), ("#", "ok"), ("", "ok")] {
        let s = subject(Some(user), client, "127.0.0.1");
        assert!(!a.may_publish(&s, &format!("users/{user}/x")), "{user:?}");
    }
    let sneaky = subject(None, "victim/secret", "127.0.0.1");
    assert!(!a.may_publish(&sneaky, "devices/victim/secret/state"));
    // `%` followed by anything else is a literal.
    let a = acl("allow all publish 100%/%x\n");
    assert!(a.may_publish(&alice, "100%/%x"));
}

#[test]
fn dollar_topics_follow_mqtt_matching() {
    let s = subject(None, "c", "127.0.0.1");
    let open = acl("allow all both #\n");
    assert!(open.may_publish(&s, "a/b"));
    assert!(!open.may_publish(&s, "$SYS/x"));
    assert!(!open.may_subscribe(&s, "$SYS/#"));
    assert!(!acl("allow all both +/x\n").may_publish(&s, "$SYS/x"));
    let sys = acl("allow all both $SYS/#\n");
    assert!(sys.may_publish(&s, "$SYS/x"));
    assert!(sys.may_subscribe(&s, "$SYS/+"));
    assert!(!sys.may_subscribe(&s, "#"));
    // A deny of `#` does not reach `$SYS`: name it.
    let a = acl("deny all both #\nallow all both $SYS/#\n");
    assert!(a.may_subscribe(&s, "$SYS/broker/uptime"));
    assert!(!a.may_subscribe(&s, "a"));
}

#[test]
fn shared_subscriptions_are_checked_on_the_inner_filter() {
    let s = subject(None, "c", "127.0.0.1");
    let a = acl("deny all subscribe secret/#\nallow all subscribe jobs/#\n");
    assert!(a.may_subscribe(&s, "$share/workers/jobs/+"));
    assert!(!a.may_subscribe(&s, "$share/workers/secret/x"));
    assert!(!a.may_subscribe(&s, "$share/workers/#"));
    assert!(
        !a.may_subscribe(&s, "$share/jobs/other"),
        "the group is not a level"
    );
}

#[test]
fn deny_rules_refuse_any_overlapping_subscription() {
    let s = subject(None, "c", "127.0.0.1");
    let a = acl("deny all subscribe secret/#\nallow all subscribe #\n");
    assert!(a.may_subscribe(&s, "public/x"));
    assert!(!a.may_subscribe(&s, "#"), "# would deliver secret/...");
    assert!(!a.may_subscribe(&s, "+/x"));
    assert!(!a.may_subscribe(&s, "secret"));
    assert!(a.may_subscribe(&s, "secrets/x"));
}

#[test]
fn coverage_table() {
    let table = [
        // (rule, requested, covers)
        ("#", "#", true),
        ("#", "a/b", true),
        ("#", "+/+", true),
        ("sensors/#", "sensors/+/temp", true),
        ("sensors/#", "sensors", true),
        ("sensors/#", "sensors/#", true),
        ("sensors/+/temp", "sensors/#", false),
        ("sensors/+/temp", "sensors/+/temp", true),
        ("sensors/+/temp", "sensors/a/temp", true),
        ("sensors/a/temp", "sensors/+/temp", false),
        ("a/+", "a/#", false),
        ("a/+/#", "a/#", false),
        ("a/+/#", "a/b", true),
        ("+/#", "+/x", true),
        ("a", "a/#", false),
        ("a/b", "a", false),
        ("+", "+", true),
        ("+", "#", false),
        ("#", "$SYS/#", false),
        ("+/x", "$SYS/x", false),
        ("$SYS/#", "$SYS/+", true),
        ("$SYS/#", "+/x", false),
        ("a//b", "a/+/b", false),
        ("a/+/b", "a//b", true),
    ];
    for (rule, requested, expected) in table {
        assert_eq!(
            covers(rule, requested),
            expected,
            "{rule} covers {requested}"
        );
    }
}

#[test]
fn overlap_table() {
    let table = [
        // (rule, requested, overlaps)
        ("secret/#", "#", true),
        ("secret/#", "+/x", true),
        ("secret/#", "secret", true),
        ("secret", "secret/#", true),
        ("a/b", "a/c", false),
        ("a/+", "a/b/c", false),
        ("a/+", "+/b", true),
        ("a/b/c", "a/+/#", true),
        ("#", "$SYS/#", false),
        ("$SYS/#", "#", false),
        ("$SYS/#", "$SYS/+", true),
        ("+/x", "$SYS/x", false),
        ("a", "b", false),
        ("a/b", "a/b/c", false),
    ];
    for (rule, requested, expected) in table {
        assert_eq!(
            overlaps(rule, requested),
            expected,
            "{rule} overlaps {requested}"
        );
        assert_eq!(
            overlaps(requested, rule),
            expected,
            "symmetric: {requested} {rule}"
        );
    }
}
