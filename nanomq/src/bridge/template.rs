//! Topic templates: how a bridge renames a topic on its way up or down. `{topic}` is the whole
//! topic, `{N}` its Nth level (from 1) and `{N..}` the levels from the Nth on; everything else
//! is copied. Checked against the filter at config load, so a template never asks for a level
//! that a matching topic may lack.

/// Why a template cannot be used with its filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` without its `}`, or something between them that is not `topic`, `N` or `N..`.
    #[error("`{0}` is not a placeholder: use {{topic}}, {{N}} or {{N..}} (N from 1)")]
    Placeholder(String),
    /// A level the filter does not guarantee.
    #[error("level {level} is not in every topic `{filter}` matches (they have {levels})")]
    Level {
        /// The level asked for.
        level: usize,
        /// The filter.
        filter: String,
        /// How many levels every matching topic is sure to have.
        levels: usize,
    },
    /// Wildcards or a NUL in the fixed text would make every renamed topic invalid.
    #[error("`+`, `#` and NUL cannot appear in a topic")]
    Wildcard,
    /// Nothing at all.
    #[error("the template is empty")]
    Empty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Topic,
    Level(usize),
    From(usize),
}

/// A parsed template; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<Part>,
    /// Just `{topic}`: the topic goes through unchanged, and no string is built.
    identity: bool,
}

impl TopicTemplate {
    /// Parses `template` for topics that match `filter`.
    pub fn parse(template: &str, filter: &str) -> Result<Self, TemplateError> {
        if template.is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest
                        .find('}')
                        .ok_or_else(|| TemplateError::Placeholder(rest.to_owned()))?;
                    parts.push(placeholder(&rest[1..end], filter)?);
                    rest = &rest[end + 1..];
                }
                found => {
                    let end = found.unwrap_or(rest.len());
                    let text = &rest[..end];
                    if text.contains(['+', '#', '\0']) {
                        return Err(TemplateError::Wildcard);
                    }
                    if text.contains('}') {
                        return Err(TemplateError::Placeholder(text.to_owned()));
                    }
                    parts.push(Part::Text(text.to_owned()));
                    rest = &rest[end..];
                }
            }
        }
        let identity = parts == [Part::Topic];
        Ok(TopicTemplate { parts, identity })
    }

    /// True when topics go through unchanged.
    pub fn is_identity(&self) -> bool {
        self.identity
    }

    /// The topic renamed. `topic` must match the filter the template was parsed with (levels
    /// it lacks render as empty).
    pub fn apply(&self, topic: &str) -> String {
        let mut out = String::with_capacity(topic.len() + 16);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Topic => out.push_str(topic),
                Part::Level(n) => out.push_str(topic.split('/').nth(n - 1).unwrap_or("")),
                Part::From(n) => out.push_str(topic.splitn(*n, '/').nth(n - 1).unwrap_or("")),
            }
        }
        out
    }
}

/// Levels every topic matching `filter` has: all of them, but a trailing `#` may match none.
fn guaranteed_levels(filter: &str) -> usize {
    let levels = filter.split('/').count();
    if filter.ends_with('#') {
        levels - 1
    } else {
        levels
    }
}

fn placeholder(inner: &str, filter: &str) -> Result<Part, TemplateError> {
    if inner == "topic" {
        return Ok(Part::Topic);
    }
    let bad = || TemplateError::Placeholder(format!("{{{inner}}}"));
    let (digits, from) = match inner.strip_suffix("..") {
        Some(d) => (d, true),
        None => (inner, false),
    };
    let level: usize = digits.parse().map_err(|_| bad())?;
    if level == 0 {
        return Err(bad());
    }
    let levels = guaranteed_levels(filter);
    // `{N..}` may start one past the last sure level: it is then empty for the shortest topics.
    let allowed = if from { levels + 1 } else { levels };
    if level > allowed {
        return Err(TemplateError::Level {
            level,
            filter: filter.to_owned(),
            levels,
        });
    }
    Ok(if from {
        Part::From(level)
    } else {
        Part::Level(level)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(template: &str, filter: &str, topic: &str) -> String {
        TopicTemplate::parse(template, filter).unwrap().apply(topic)
    }

    #[test]
    fn prefix_suffix_and_identity() {
        assert_eq!(apply("site1/{topic}", "a/#", "a/b/c"), "site1/a/b/c");
        assert_eq!(apply("{topic}/up", "a/#", "a/b"), "a/b/up");
        assert!(TopicTemplate::parse("{topic}", "#").unwrap().is_identity());
        assert!(!TopicTemplate::parse("x/{topic}", "#")
            .unwrap()
            .is_identity());
    }

    #[test]
    fn levels_and_ranges() {
        assert_eq!(
            apply("d/{2}/t/{3..}", "s/+/#", "s/dev7/x/y"),
            "d/dev7/t/x/y"
        );
        assert_eq!(apply("{3..}", "cmd/site1/#", "cmd/site1/x/y"), "x/y");
        assert_eq!(apply("c/{3..}", "cmd/site1/#", "cmd/site1"), "c/");
        assert_eq!(apply("{1}-{2}", "+/+", "a/b"), "a-b");
    }

    #[test]
    fn levels_a_topic_may_lack_are_refused() {
        assert_eq!(
            TopicTemplate::parse("{3}", "a/#"),
            Err(TemplateError::Level {
                level: 3,
                filter: "a/#".into(),
                levels: 1
            })
        );
        assert!(TopicTemplate::parse("{3..}", "a/+/#").is_ok());
        assert!(TopicTemplate::parse("{4..}", "a/+/#").is_err());
    }

    #[test]
    fn bad_templates() {
        for t in ["", "{", "{x}", "{0}", "{1.}", "a}", "a/+/{topic}", "#"] {
            assert!(TopicTemplate::parse(t, "a/b/c").is_err(), "{t}");
        }
    }
}
