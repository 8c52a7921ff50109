//! Topic names, topic filters and shared-subscription filters (MQTT 5 spec 4.7 and 4.8.2).
//!
//! Everything here is a pure function on `&str`: no allocation, no state. The broker validates
//! every name and filter that arrives from a client with these functions *before* it reaches the
//! [`SubscriptionTree`](super::SubscriptionTree) or the [`RetainedStore`](super::RetainedStore),
//! which take well-formed input for granted.

use crate::mqtt::ReasonCode;

/// Longest topic name or filter the wire format can carry (a UTF-8 string with a u16 length).
pub const MAX_TOPIC_LEN: usize = u16::MAX as usize;

/// The prefix that turns a filter into a shared subscription (spec 4.8.2).
const SHARE_PREFIX: &str = "$share/";

/// Which kind of string a [`TopicError::TooManyLevels`] was about; it decides the reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// A topic name, from PUBLISH or a will.
    Name,
    /// A topic filter, from SUBSCRIBE or UNSUBSCRIBE.
    Filter,
}

/// Why a topic name or filter was refused. Every variant maps to one MQTT 5 reason code through
/// [`TopicError::reason_code`]; the message names the rule that was broken, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// A topic name breaks spec 4.7 (empty, wildcard, too long): reason 0x90.
    #[error("invalid topic name: {0}")]
    InvalidName(&'static str),
    /// A topic filter or shared filter breaks spec 4.7 or 4.8.2: reason 0x8F.
    #[error("invalid topic filter: {0}")]
    InvalidFilter(&'static str),
    /// Well-formed, but deeper than the configured level limit: reason 0x90 for a name, 0x8F for
    /// a filter. Kept apart from the other two so the broker can count and log it as a policy
    /// refusal rather than a protocol error.
    #[error("topic {kind:?} has more than {max} levels")]
    TooManyLevels {
        /// Name or filter.
        kind: TopicKind,
        /// The configured limit that was exceeded.
        max: usize,
    },
}

impl TopicError {
    /// The MQTT 5 reason code to put in the PUBACK, SUBACK or DISCONNECT that refuses the topic.
    pub fn reason_code(self) -> ReasonCode {
        match self {
            TopicError::InvalidName(_)
            | TopicError::TooManyLevels {
                kind: TopicKind::Name,
                ..
            } => ReasonCode::TOPIC_NAME_INVALID,
            TopicError::InvalidFilter(_)
            | TopicError::TooManyLevels {
                kind: TopicKind::Filter,
                ..
            } => ReasonCode::TOPIC_FILTER_INVALID,
        }
    }
}

/// A `$share/{group}/{filter}` subscription split into its parts, both borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    /// The ShareName: non-empty, without `/`, `+` or `#`.
    pub group: &'a str,
    /// The topic filter the group subscribes to; a valid, non-shared filter.
    pub filter: &'a str,
}

/// Checks a topic name for PUBLISH or a will: non-empty, no `+` or `#`, at most 65535 bytes and
/// at most `max_levels` levels (0 means unlimited). Names starting with `$` are accepted; the
/// broker decides separately whether a client may publish to them.
pub fn validate_topic_name(name: &str, max_levels: usize) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::InvalidName("empty"));
    }
    if name.len() > MAX_TOPIC_LEN {
        return Err(TopicError::InvalidName("longer than 65535 bytes"));
    }
    if name.contains(['+', '#']) {
        return Err(TopicError::InvalidName("wildcard in a topic name"));
    }
    check_levels(name.split('/').count(), max_levels, TopicKind::Name)
}

/// Checks a topic filter for SUBSCRIBE or UNSUBSCRIBE: non-empty, at most 65535 bytes, `#` only
/// as the whole last level, `+` only as a whole level. A `$share/` filter is checked with
/// [`parse_shared`] and the level limit applies to its inner filter, so one call validates
/// whatever a client sends.
pub fn validate_topic_filter(filter: &str, max_levels: usize) -> Result<(), TopicError> {
    if filter.len() > MAX_TOPIC_LEN {
        return Err(TopicError::InvalidFilter("longer than 65535 bytes"));
    }
    let plain = match parse_shared(filter)? {
        Some(shared) => shared.filter,
        None => filter,
    };
    let levels = check_plain_filter(plain)?;
    check_levels(levels, max_levels, TopicKind::Filter)
}

/// Splits a shared-subscription filter `$share/{group}/{filter}`. Returns `Ok(None)` for a filter
/// that does not start with `$share/`, and an error when it does but the group is empty or holds
/// `+` or `#`, or the inner filter is missing or invalid (`$share/group` alone is invalid).
/// The level limit is not checked here; [`validate_topic_filter`] does that.
pub fn parse_shared(filter: &str) -> Result<Option<SharedFilter<'_>>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        return Ok(None);
    };
    let Some((group, inner)) = rest.split_once('/') else {
        return Err(TopicError::InvalidFilter(
            "shared subscription without a topic filter",
        ));
    };
    if group.is_empty() {
        return Err(TopicError::InvalidFilter("empty share name"));
    }
    if group.contains(['+', '#']) {
        return Err(TopicError::InvalidFilter("wildcard in a share name"));
    }
    check_plain_filter(inner)?;
    Ok(Some(SharedFilter {
        group,
        filter: inner,
    }))
}

/// True when the topic name `topic` matches the plain (non-shared) filter `filter`: `+` matches
/// exactly one level, `#` zero or more trailing levels (`a/#` matches `a`), empty levels are
/// levels, and a filter starting with a wildcard never matches a topic starting with `$`
/// (MQTT-4.7.2-1). Both arguments are assumed valid; nothing is allocated.
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    if topic.starts_with('$') && matches!(filter_levels.clone().next(), Some("+" | "#")) {
        return false;
    }
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Checks the wildcard rules of a non-shared filter and returns its number of levels.
fn check_plain_filter(filter: &str) -> Result<usize, TopicError> {
    if filter.is_empty() {
        return Err(TopicError::InvalidFilter("empty"));
    }
    let mut levels = filter.split('/').peekable();
    let mut count = 0;
    while let Some(level) = levels.next() {
        count += 1;
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::InvalidFilter(
                "`#` must be the whole last level",
            ));
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::InvalidFilter("`+` must be a whole level"));
        }
    }
    Ok(count)
}

/// Applies the configured level limit; `max == 0` means unlimited.
fn check_levels(levels: usize, max: usize, kind: TopicKind) -> Result<(), TopicError> {
    if max != 0 && levels > max {
        return Err(TopicError::TooManyLevels { kind, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        let valid = [
            "a",
            "a/b",
            "/",
            "a//b",
            "$SYS/uptime",
            " ",
            "sport/tennis/player1",
        ];
        for name in valid {
            assert_eq!(validate_topic_name(name, 0), Ok(()), "{name:?}");
        }
        let invalid = ["", "+", "#", "a/+", "a/#", "a+b", "sport/tennis#"];
        for name in invalid {
            let err = validate_topic_name(name, 0).unwrap_err();
            assert!(matches!(err, TopicError::InvalidName(_)), "{name:?}");
            assert_eq!(err.reason_code(), ReasonCode::TOPIC_NAME_INVALID);
        }
        let long = "a".repeat(MAX_TOPIC_LEN + 1);
        assert!(validate_topic_name(&long, 0).is_err());
        assert_eq!(validate_topic_name(&long[1..], 0), Ok(()));
    }

    #[test]
    fn topic_name_level_limit() {
        assert_eq!(validate_topic_name("a/b/c", 3), Ok(()));
        assert_eq!(validate_topic_name("a/b/c", 0), Ok(()));
        let err = validate_topic_name("a/b/c/d", 3).unwrap_err();
        assert_eq!(
            err,
            TopicError::TooManyLevels {
                kind: TopicKind::Name,
                max: 3
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::TOPIC_NAME_INVALID);
        // Empty levels count.
        assert!(validate_topic_name("a//", 2).is_err());
    }

    #[test]
    fn topic_filters() {
        let valid = [
            "#",
            "+",
            "a",
            "a/b",
            "a/#",
            "a/+",
            "+/+",
            "+/a/#",
            "/",
            "/+",
            "a//b",
            "$SYS/#",
            "$share",
            "sport/+/player1",
        ];
        for filter in valid {
            assert_eq!(validate_topic_filter(filter, 0), Ok(()), "{filter:?}");
        }
        let invalid = [
            "",
            "a/#/b",
            "#/a",
            "a#",
            "a/b#",
            "a+",
            "a/+b",
            "+a/b",
            "##",
            "a/++",
            "sport/tennis#",
        ];
        for filter in invalid {
            let err = validate_topic_filter(filter, 0).unwrap_err();
            assert!(matches!(err, TopicError::InvalidFilter(_)), "{filter:?}");
            assert_eq!(err.reason_code(), ReasonCode::TOPIC_FILTER_INVALID);
        }
        assert!(validate_topic_filter(&"a".repeat(MAX_TOPIC_LEN + 1), 0).is_err());
    }

    #[test]
    fn topic_filter_level_limit() {
        assert_eq!(validate_topic_filter("a/+/#", 3), Ok(()));
        let err = validate_topic_filter("a/+/b/#", 3).unwrap_err();
        assert_eq!(
            err,
            TopicError::TooManyLevels {
                kind: TopicKind::Filter,
                max: 3
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::TOPIC_FILTER_INVALID);
        // The share prefix does not count against the limit; the inner filter does.
        assert_eq!(validate_topic_filter("$share/g/a/b", 2), Ok(()));
        assert!(validate_topic_filter("$share/g/a/b/c", 2).is_err());
    }

    #[test]
    fn shared_filters() {
        let shared = |group, filter| Ok(Some(SharedFilter { group, filter }));
        assert_eq!(parse_shared("$share/g/#"), shared("g", "#"));
        assert_eq!(parse_shared("$share/g/a/+/c"), shared("g", "a/+/c"));
        assert_eq!(
            parse_shared("$share/group-1/$SYS/#"),
            shared("group-1", "$SYS/#")
        );
        assert_eq!(parse_shared("$share/g//"), shared("g", "/"));
        assert_eq!(parse_shared("a/b"), Ok(None));
        assert_eq!(parse_shared("$share"), Ok(None));
        assert_eq!(parse_shared("$SYS/share/g/a"), Ok(None));
        assert_eq!(parse_shared("$shared/g/a"), Ok(None));
        let invalid = [
            "$share/",
            "$share//a",
            "$share/g",
            "$share/g/",
            "$share/g+/a",
            "$share/+/a",
            "$share/#/a",
            "$share/g#/a",
            "$share/g/a/#/b",
            "$share/g/a+",
        ];
        for filter in invalid {
            let err = parse_shared(filter).unwrap_err();
            assert!(matches!(err, TopicError::InvalidFilter(_)), "{filter:?}");
            assert!(validate_topic_filter(filter, 0).is_err(), "{filter:?}");
        }
        assert_eq!(validate_topic_filter("$share/g/#", 0), Ok(()));
    }

    #[test]
    fn matching_table() {
        let table = [
            // (filter, topic, expected)
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
            ("#", "a", true),
            ("#", "a/b/c", true),
            ("#", "/", true),
            ("a/#", "a", true),
            ("a/#", "a/b", true),
            ("a/#", "a/b/c", true),
            ("a/#", "b", false),
            ("a/#", "ab", false),
            ("a/b/#", "a", false),
            ("+", "a", true),
            ("+", "a/b", false),
            ("+", "/", false),
            ("+/+", "/", true),
            ("/+", "/", true),
            ("+/b", "/b", true),
            ("a/+/c", "a//c", true),
            ("a//c", "a//c", true),
            ("a/+", "a/", true),
            ("a/+", "a", false),
            ("sport/tennis/+", "sport/tennis", false),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+/player1", "sport/tennis/player1", true),
            ("+/+/#", "a/b", true),
            ("+/+/#", "a", false),
            // The `$` rule (MQTT-4.7.2-1).
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("+", "$SYS", false),
            ("$SYS/#", "$SYS/x", true),
            ("$SYS/#", "$SYS", true),
            ("$SYS/+", "$SYS/x", true),
            ("$SYS/x", "$SYS/x", true),
            ("a/+", "a/$x", true),
            ("a/#", "a/$x", true),
        ];
        for (filter, topic, expected) in table {
            assert_eq!(matches(filter, topic), expected, "{filter:?} vs {topic:?}");
        }
    }
}
