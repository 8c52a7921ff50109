//! Reading a config file and pointing every error at its line.
//!
//! TOML errors carry a byte span, turned here into `line:column`. Validation runs on the parsed
//! structs, which have no spans; the line of an invalid value is found again by scanning the text
//! for its key inside its `[table]`. That scan understands the layout people write (one key per
//! line under a header) and falls back to dotted keys and inline tables; when it finds nothing
//! the error still names the file and the key.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Config, InvalidValue};

/// Why a configuration could not be loaded. Every variant names where the problem is, so the
/// operator never has to guess which file or key is meant.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, unreadable or not UTF-8. There is no silent fallback to defaults: a
    /// broker started with a mistyped path must not run with settings nobody chose.
    #[error("cannot read config file {}: {error}", path.display())]
    Read {
        /// The path as given.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("{place}: {message}")]
    Syntax {
        /// File and position of the offending text.
        place: Place,
        /// The parser's explanation, e.g. "unknown field `x`, expected one of ...".
        message: String,
    },
    /// Well-formed, but a value the broker cannot run with.
    #[error("{place}: {invalid}")]
    Invalid {
        /// File and, when the key was found in the text, its position.
        place: Place,
        /// Which key and why.
        invalid: InvalidValue,
    },
}

/// A 1-based line and column (in characters) in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line number, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text`; offsets past the end point after the last
    /// character, and offsets inside a multi-byte character count as that character.
    pub fn of_offset(text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// Where an error is: the file (or other origin) and, when known, the position in it. Displays
/// as `origin:line:column`, the form editors and terminals turn into links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// File name or another label for where the text came from.
    pub origin: String,
    /// Position in the text, when it could be determined.
    pub at: Option<Location>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(at) => write!(f, "{}:{}:{}", self.origin, at.line, at.column),
            None => f.write_str(&self.origin),
        }
    }
}

/// Reads a config file as text; errors name the path.
pub(super) fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })
}

impl Config {
    /// Parses and validates config `text` alone, without layers; `origin` (usually the file
    /// name) prefixes every error. [`super::Layered::load`] reads the files a broker runs with.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            place: Place {
                origin: origin.to_owned(),
                at: e.span().map(|span| Location::of_offset(text, span.start)),
            },
            message: e.message().trim_end().to_owned(),
        })?;
        config.validate().map_err(|invalid| ConfigError::Invalid {
            place: Place {
                origin: origin.to_owned(),
                at: locate(text, invalid.table, invalid.index, invalid.key),
            },
            invalid,
        })?;
        Ok(config)
    }
}

/// Finds where `key` is set inside `[table]` (`""` is the root table), or inside the
/// `index`th `[[table]]` entry (or the sub-table `[table]` of the `index`th entry of the array
/// it belongs to, as `[bridges.tls]`). Tries, in order: `key = ...` under the right header; a dotted key
/// or inline table naming both `table` and `key` on one line; the header itself.
pub(super) fn locate(text: &str, table: &str, index: Option<usize>, key: &str) -> Option<Location> {
    let mut current: (String, Option<usize>) = (String::new(), None);
    let mut array_counts: Vec<(String, usize)> = Vec::new();
    let mut header = None;
    let mut loose = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(rest) = trimmed.strip_prefix("[[") {
            let name = header_name(rest, "]]");
            let count = match array_counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => {
                    *c += 1;
                    *c - 1
                }
                None => {
                    array_counts.push((name.clone(), 1));
                    0
                }
            };
            current = (name, Some(count));
        } else if let Some(rest) = trimmed.strip_prefix('[') {
            let name = header_name(rest, "]");
            // `[bridges.tls]` belongs to the latest `[[bridges]]` entry: it has that index.
            let index = array_counts
                .iter()
                .filter(|(n, _)| {
                    name.strip_prefix(n.as_str())
                        .is_some_and(|r| r.starts_with('.'))
                })
                .max_by_key(|(n, _)| n.len())
                .map(|(_, c)| c - 1);
            current = (name, index);
        } else {
            if current.0 == table && current.1 == index && assigns(trimmed, key) {
                return Some(Location::of_offset(text, start + indent));
            }
            if loose.is_none() && !table.is_empty() && mentions(trimmed, table, key) {
                loose = Some(Location::of_offset(text, start + indent));
            }
            continue;
        }
        if header.is_none() && current.0 == table && current.1 == index {
            header = Some(Location::of_offset(text, start + indent));
        }
    }
    loose.or(header)
}

/// The table name of a header line, without brackets, spaces or trailing comment.
fn header_name(rest: &str, close: &str) -> String {
    let name = rest.split(close).next().unwrap_or_default();
    name.split('.')
        .map(|part| part.trim().trim_matches('"'))
        .collect::<Vec<_>>()
        .join(".")
}

/// True if `line` (leading blanks removed) is `key = ...` or `"key" = ...`.
fn assigns(line: &str, key: &str) -> bool {
    let rest = line
        .strip_prefix(key)
        .or_else(|| line.strip_prefix('"')?.strip_prefix(key)?.strip_prefix('"'));
    rest.is_some_and(|rest| rest.trim_start().starts_with('='))
}

/// True if `line` names `table` and then assigns `key` later on the same line, as in
/// `limits.max_qos = 3` or `limits = { max_qos = 3 }`.
fn mentions(line: &str, table: &str, key: &str) -> bool {
    let Some(after_table) = line.find(table).map(|i| &line[i + table.len()..]) else {
        return false;
    };
    after_table.match_indices(key).any(|(i, _)| {
        let before_ok = after_table[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-'));
        before_ok && after_table[i + key.len()..].trim_start().starts_with('=')
    })
}
