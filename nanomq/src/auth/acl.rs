//! The ACL file: who may publish to and subscribe to which topics.
//!
//! # Format
//!
//! One rule per line, read top to bottom; the first rule that matches a request decides it.
//! Blank lines and lines starting with `#` are ignored (there are no end-of-line comments: `#`
//! is a wildcard).
//!
//! ```text
//! default deny
//! allow user:alice     publish   sensors/alice/#
//! allow all            subscribe sensors/+/temperature
//! deny  ip:10.0.0.0/8  both      $SYS/#
//! allow client:gw-1    both      gateways/%c/#
//! allow all            both      users/%u/#
//! allow cn:gateway-1   subscribe #
//! ```
//!
//! - `default allow` or `default deny`, at most once, anywhere: what happens to a request no
//!   rule matches. A file without it denies.
//! - `allow` or `deny`, then WHO, then ACTION, then a topic FILTER (the rest of the line, so a
//!   filter may hold spaces; it may not start or end with one).
//! - WHO: `all`; `anonymous` (clients that gave no user name); `user:NAME`; `client:ID`;
//!   `ip:ADDRESS` or `ip:ADDRESS/PREFIX` (IPv4 or IPv6; IPv4 clients on a dual-stack socket
//!   count as IPv4; the address may not have bits set past the prefix); `cn:NAME` (the common
//!   name of a client certificate). Names and ids cannot hold spaces.
//! - ACTION: `publish`, `subscribe` or `both`.
//! - FILTER: an MQTT topic filter (`+` and `#` as usual). `%u` stands for the client's user name
//!   and `%c` for its client id. A rule whose filter uses `%u` does not match a client without a
//!   user name, and a rule does not match when the value put in is empty or holds `/`, `+` or
//!   `#` (a client id `a/#` must not widen `devices/%c` to `devices/a/#`).
//!
//! # What a rule's filter means
//!
//! - PUBLISH to topic T: a rule matches when its filter matches T as a subscription would.
//! - SUBSCRIBE to filter F: an `allow` rule matches when its filter *covers* F, that is every
//!   topic F can match is one the rule's filter matches (`sensors/#` covers `sensors/+/temp`;
//!   `sensors/+/temp` does not cover `sensors/#`). A `deny` rule matches when its filter
//!   *overlaps* F, that is some topic matches both (`deny all subscribe secret/#` refuses `#`
//!   and `secret/+/x` as well as `secret/a`). A subscription is thus granted only if no earlier
//!   deny rule could ever deliver a denied topic through it.
//! - `$` topics follow MQTT matching: a filter that starts with a wildcard never matches a topic
//!   that starts with `$`, so `allow all both #` does not open `$SYS/...`, and neither does
//!   `deny all both #` close it: name `$SYS/#` for that.
//! - Shared subscriptions `$share/GROUP/F` are checked as F; rules themselves name plain
//!   filters.
//!
//! Subscriptions are checked when made. One granted stays until it is unsubscribed, also across
//! a reload of the ACL and when a persistent session resumes.

use std::net::IpAddr;

use crate::router::{matches, parse_shared, validate_topic_filter};

/// A parsed ACL file: ordered rules and the policy for requests no rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    rules: Vec<Rule>,
    default: Access,
}

/// A rule's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The request goes ahead.
    Allow,
    /// The request is refused.
    Deny,
}

/// What a client asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// PUBLISH to a topic name (wills included).
    Publish,
    /// SUBSCRIBE to a topic filter.
    Subscribe,
}

/// The client a request comes from, as the ACL sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    /// The user name from CONNECT, if any.
    pub username: Option<&'a str>,
    /// The client id (assigned by the broker if the client sent none).
    pub client_id: &'a str,
    /// The peer address; IPv4-mapped IPv6 addresses are given as IPv4.
    pub ip: IpAddr,
    /// The common name of the client certificate, when the client presented one on a TLS
    /// listener that verified it; `cn:` rules match nothing else.
    pub cert_cn: Option<&'a str>,
}

/// A line the ACL parser refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, for the operator.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    who: Who,
    actions: Actions,
    filter: RuleFilter,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    All,
    Anonymous,
    User(Box<str>),
    Client(Box<str>),
    Net { addr: IpAddr, prefix: u8 },
    Cn(Box<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Actions {
    Publish,
    Subscribe,
    Both,
}

/// A rule's topic filter; `Pattern` holds `%u` or `%c` and is filled in per request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RuleFilter {
    Plain(Box<str>),
    Pattern(Box<str>),
}

impl Acl {
    /// Parses the text of an ACL file. The error names the first bad line.
    pub fn parse(text: &str) -> Result<Acl, LineError> {
        let mut rules = Vec::new();
        let mut default: Option<(Access, usize)> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let err = |message: String| LineError { line, message };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(trimmed);
            match keyword {
                "default" => {
                    let access = match rest {
                        "allow" => Access::Allow,
                        "deny" => Access::Deny,
                        other => {
                            return Err(err(format!(
                                "`default` takes `allow` or `deny`, not `{other}`"
                            )))
                        }
                    };
                    if let Some((_, first)) = default {
                        return Err(err(format!(
                            "second `default` (the first is on line {first})"
                        )));
                    }
                    default = Some((access, line));
                }
                "allow" | "deny" => {
                    let access = if keyword == "allow" {
                        Access::Allow
                    } else {
                        Access::Deny
                    };
                    rules.push(parse_rule(access, rest).map_err(err)?);
                }
                other => {
                    return Err(err(format!(
                        "expected `allow`, `deny` or `default`, found `{other}`"
                    )))
                }
            }
        }
        Ok(Acl {
            rules,
            default: default.map_or(Access::Deny, |(access, _)| access),
        })
    }

    /// Number of rules, for log lines.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when the file holds no rule (only the default applies).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The policy for requests no rule matches.
    pub fn default_access(&self) -> Access {
        self.default
    }

    /// True when some rule names a user (`user:` or `%u`): such rules trust the user name, which
    /// only a password file verifies.
    pub fn trusts_user_names(&self) -> bool {
        self.rules.iter().any(|r| {
            matches!(r.who, Who::User(_) | Who::Anonymous)
                || matches!(&r.filter, RuleFilter::Pattern(p) if p.contains("%u"))
        })
    }

    /// May `subject` publish to the topic name `topic`?
    pub fn may_publish(&self, subject: &Subject<'_>, topic: &str) -> bool {
        self.decide(subject, Action::Publish, topic)
    }

    /// May `subject` subscribe to `filter` (a `$share/` filter is checked on its inner filter)?
    /// `filter` must be valid.
    pub fn may_subscribe(&self, subject: &Subject<'_>, filter: &str) -> bool {
        let plain = match parse_shared(filter) {
            Ok(Some(shared)) => shared.filter,
            Ok(None) => filter,
            Err(_) => return false,
        };
        self.decide(subject, Action::Subscribe, plain)
    }

    /// First match wins. Nothing is allocated unless a matching rule needs `%u` or `%c` filled
    /// in.
    fn decide(&self, subject: &Subject<'_>, action: Action, requested: &str) -> bool {
        let mut expanded = String::new();
        for rule in &self.rules {
            if !rule.actions.includes(action) || !rule.who.matches(subject) {
                continue;
            }
            let filter: &str = match &rule.filter {
                RuleFilter::Plain(f) => f,
                RuleFilter::Pattern(p) => {
                    if !substitute(p, subject, &mut expanded) {
                        continue;
                    }
                    &expanded
                }
            };
            let hit = match (action, rule.access) {
                (Action::Publish, _) => matches(filter, requested),
                (Action::Subscribe, Access::Allow) => covers(filter, requested),
                (Action::Subscribe, Access::Deny) => overlaps(filter, requested),
            };
            if hit {
                return rule.access == Access::Allow;
            }
        }
        self.default == Access::Allow
    }
}

/// The filter inside a `$share/GROUP/FILTER` subscription; None for any other filter.
pub fn inner_filter(filter: &str) -> Option<&str> {
    parse_shared(filter).ok().flatten().map(|s| s.filter)
}

impl Actions {
    fn includes(self, action: Action) -> bool {
        matches!(
            (self, action),
            (Actions::Both, _)
                | (Actions::Publish, Action::Publish)
                | (Actions::Subscribe, Action::Subscribe)
        )
    }
}

impl Who {
    fn matches(&self, s: &Subject<'_>) -> bool {
        match self {
            Who::All => true,
            Who::Anonymous => s.username.is_none(),
            Who::User(name) => s.username == Some(&**name),
            Who::Client(id) => s.client_id == &**id,
            Who::Cn(cn) => s.cert_cn == Some(&**cn),
            Who::Net { addr, prefix } => in_network(s.ip, *addr, *prefix),
        }
    }
}

/// Splits off the first whitespace-separated word; the rest comes back trimmed.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (s, ""),
    }
}

fn parse_rule(access: Access, rest: &str) -> Result<Rule, String> {
    const SHAPE: &str = "expected `allow|deny WHO publish|subscribe|both FILTER`";
    let (who, rest) = split_word(rest);
    let (actions, filter) = split_word(rest);
    if who.is_empty() || actions.is_empty() || filter.is_empty() {
        return Err(SHAPE.to_owned());
    }
    let who = parse_who(who)?;
    let actions = match actions {
        "publish" => Actions::Publish,
        "subscribe" => Actions::Subscribe,
        "both" => Actions::Both,
        other => {
            return Err(format!(
                "unknown action `{other}`: use publish, subscribe or both"
            ))
        }
    };
    Ok(Rule {
        access,
        who,
        actions,
        filter: parse_filter(filter)?,
    })
}

fn parse_who(word: &str) -> Result<Who, String> {
    match word {
        "all" => return Ok(Who::All),
        "anonymous" => return Ok(Who::Anonymous),
        _ => {}
    }
    let Some((kind, value)) = word.split_once(':') else {
        return Err(format!(
            "unknown subject `{word}`: use all, anonymous, user:NAME, client:ID, ip:ADDRESS[/PREFIX] or cn:NAME"
        ));
    };
    if value.is_empty() {
        return Err(format!("`{kind}:` needs a value"));
    }
    match kind {
        "user" => Ok(Who::User(value.into())),
        "client" => Ok(Who::Client(value.into())),
        "cn" => Ok(Who::Cn(value.into())),
        "ip" => parse_network(value),
        _ => Err(format!(
            "unknown subject kind `{kind}:`: use user:, client:, ip: or cn:"
        )),
    }
}

fn parse_network(value: &str) -> Result<Who, String> {
    let (addr, prefix) = match value.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (value, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IPv4 or IPv6 address"))?;
    let bits = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => bits,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= bits => n,
            _ => return Err(format!("prefix `/{p}` is not a number from 0 to {bits}")),
        },
    };
    if masked(addr, prefix) != bits_of(addr) {
        let network = network_of(addr, prefix);
        return Err(format!(
            "{addr}/{prefix} has bits set past the prefix; did you mean {network}/{prefix}?"
        ));
    }
    Ok(Who::Net { addr, prefix })
}

/// The address as a 128-bit number (IPv4 in the low 32 bits).
fn bits_of(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address with every bit past `prefix` cleared, as a number.
fn masked(addr: IpAddr, prefix: u8) -> u128 {
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let host_bits = u32::from(width - prefix);
    let mask = if host_bits >= 128 {
        0
    } else {
        !0u128 << host_bits
    };
    bits_of(addr) & mask
}

fn network_of(addr: IpAddr, prefix: u8) -> IpAddr {
    let n = masked(addr, prefix);
    match addr {
        IpAddr::V4(_) => IpAddr::from(u32::try_from(n).unwrap_or(0).to_be_bytes()),
        IpAddr::V6(_) => IpAddr::from(n.to_be_bytes()),
    }
}

/// True when `ip` is in `network/prefix`; IPv4 never matches an IPv6 network or the reverse.
fn in_network(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    ip.is_ipv4() == network.is_ipv4() && masked(ip, prefix) == masked(network, prefix)
}

fn parse_filter(filter: &str) -> Result<RuleFilter, String> {
    if filter.starts_with("$share/") {
        return Err(
            "rules name plain filters: shared subscriptions are checked on their inner filter"
                .to_owned(),
        );
    }
    let pattern = filter.contains("%u") || filter.contains("%c");
    // Placeholders are checked as if filled in with a plain word.
    let probe = filter.replace("%u", "u").replace("%c", "c");
    if let Err(e) = validate_topic_filter(&probe, 0) {
        return Err(format!("`{filter}`: {e}"));
    }
    Ok(if pattern {
        RuleFilter::Pattern(filter.into())
    } else {
        RuleFilter::Plain(filter.into())
    })
}

/// Fills `%u` and `%c` in `pattern` into `out`; false when a value is missing, empty, or holds a
/// character that would change the filter's shape.
fn substitute(pattern: &str, s: &Subject<'_>, out: &mut String) -> bool {
    out.clear();
    let mut rest = pattern;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let value = match rest.as_bytes().get(at + 1) {
            Some(b'u') => s.username,
            Some(b'c') => Some(s.client_id),
            _ => {
                out.push('%');
                rest = &rest[at + 1..];
                continue;
            }
        };
        match value {
            Some(v) if !v.is_empty() && !v.contains(['/', '+', '#']) => out.push_str(v),
            _ => return false,
        }
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    true
}

/// True when every topic the filter `requested` can match is matched by `rule`. Both are valid,
/// plain filters.
pub(crate) fn covers(rule: &str, requested: &str) -> bool {
    if leading_wildcard(rule) && requested.starts_with('$') {
        return false;
    }
    let mut r = rule.split('/');
    let mut q = requested.split('/');
    loop {
        match (r.next(), q.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True when some topic is matched by both filters. Both are valid, plain filters.
pub(crate) fn overlaps(rule: &str, requested: &str) -> bool {
    // A filter that starts with a wildcard matches no `$` topic; one whose first level is a
    // literal `$...` matches only `$` topics.
    if (leading_wildcard(rule) && requested.starts_with('$'))
        || (leading_wildcard(requested) && rule.starts_with('$'))
    {
        return false;
    }
    let mut r = rule.split('/');
    let mut q = requested.split('/');
    loop {
        match (r.next(), q.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

fn leading_wildcard(filter: &str) -> bool {
    matches!(filter.split('/').next(), Some("+" | "#"))
}
