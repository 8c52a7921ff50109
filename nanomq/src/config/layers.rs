//! Config layering for firmware: built-in defaults, then the image's file (read-only after an
//! OTA update replaces it), then the device's own runtime layer, `runtime.toml` in the state
//! directory. Later layers win key by key: tables merge recursively, while arrays (such as
//! `[[listeners]]`) and scalars are replaced whole. A newer image therefore brings its new
//! defaults and keys, and the device keeps every setting its runtime layer holds.
//!
//! Each layer is parsed on its own first, so syntax errors, unknown keys and wrong types name
//! that layer's file and line. The merged result is validated once; an invalid value is
//! reported at the line of the layer it came from, which is why every leaf remembers its layer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::load::{locate, read_text};
use super::{Config, ConfigError, InvalidValue, Location, Place};

/// The image's config file, used when `--config` is not given and the file exists.
pub const DEFAULT_PATH: &str = "/etc/nanomq/nanomq.toml";
/// The runtime layer's file name inside `persistence.dir`.
pub const RUNTIME_FILE: &str = "runtime.toml";

/// The image's file: `given` (`--config`), else [`DEFAULT_PATH`] when it exists, else none
/// (built-in defaults). A given file that is missing is an error later, never a silent fallback.
pub fn image_path(given: Option<&Path>) -> Option<PathBuf> {
    match given {
        Some(path) => Some(path.to_owned()),
        None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
    }
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// A config file: the image's or the runtime layer.
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One config file's text, kept to point errors at its lines.
#[derive(Debug, Clone)]
pub(super) struct LayerText {
    pub(super) path: PathBuf,
    pub(super) text: String,
}

impl LayerText {
    /// Reads `path`; a missing file is an error.
    pub(super) fn read(path: &Path) -> Result<LayerText, ConfigError> {
        Ok(LayerText {
            path: path.to_owned(),
            text: read_text(path)?,
        })
    }

    /// Reads `path` if it exists.
    pub(super) fn read_optional(path: &Path) -> Result<Option<LayerText>, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(LayerText {
                path: path.to_owned(),
                text,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(ConfigError::Read {
                path: path.to_owned(),
                error,
            }),
        }
    }

    fn origin(&self) -> String {
        self.path.display().to_string()
    }
}

/// The effective configuration and where each of its values came from.
#[derive(Debug, Clone)]
pub struct Layered {
    /// The merged, validated configuration.
    pub config: Config,
    /// The merged TOML, for printing.
    merged: toml::Table,
    /// The files read, in order: the image's, then the runtime layer.
    files: Vec<LayerText>,
    /// Layer of each leaf (a scalar or a whole array): 0 = default, `i` = `files[i - 1]`.
    origins: BTreeMap<Vec<String>, usize>,
}

impl Layered {
    /// Loads defaults, the image's file (`image`, see [`image_path`]) and the runtime layer in
    /// `persistence.dir` (as set by the first two), and validates the result.
    pub fn load(image: Option<&Path>) -> Result<Layered, ConfigError> {
        let merge = Merge::new(image.map(LayerText::read).transpose()?)?;
        let runtime = match merge.runtime_path() {
            Some(path) => LayerText::read_optional(&path)?,
            None => None,
        };
        merge.finish(runtime)
    }

    /// The files read, image first.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// The files read, joined with ` + `, or `built-in defaults`: for log lines.
    pub fn describe(&self) -> String {
        if self.files.is_empty() {
            return "built-in defaults".to_owned();
        }
        let files: Vec<String> = self.files().map(|p| p.display().to_string()).collect();
        files.join(" + ")
    }

    /// The runtime layer's path, when `persistence.dir` is set (the file may not exist).
    pub fn runtime_path(&self) -> Option<PathBuf> {
        runtime_path(&self.merged)
    }

    /// Where the value at `key` (such as `["limits", "max_connections"]`) came from; for a key
    /// inside an array of tables, the layer that set the whole array.
    pub fn source(&self, key: &[&str]) -> Source {
        let path: Vec<String> = key.iter().map(|k| (*k).to_owned()).collect();
        self.source_of(layer_of(&self.origins, &path))
    }

    fn source_of(&self, layer: usize) -> Source {
        match layer.checked_sub(1).and_then(|i| self.files.get(i)) {
            Some(file) => Source::File(file.path.clone()),
            None => Source::Default,
        }
    }

    /// The effective config as TOML, each value followed by a comment naming where it came
    /// from (`# default` or the file's path); an array of tables is commented once, at each
    /// entry's header. Keys without a value (unset options) are left out. Keys are in
    /// alphabetical order.
    pub fn annotated(&self) -> String {
        let mut out = String::new();
        self.write_table(&mut out, &mut Vec::new(), &self.merged, None);
        out
    }

    /// Writes `table`'s plain values, then its sub-tables, then its arrays of tables. `array`
    /// is the layer of the array of tables `table` is an entry of: its keys need no comment.
    fn write_table(
        &self,
        out: &mut String,
        path: &mut Vec<String>,
        table: &toml::Table,
        array: Option<usize>,
    ) {
        let is_table_array = |v: &toml::Value| {
            v.as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(toml::Value::is_table))
        };
        for (key, value) in table {
            if value.is_table() || is_table_array(value) {
                continue;
            }
            path.push(key.clone());
            let line = format!("{} = {value}", key_text(key));
            match array {
                Some(_) => {
                    let _ = writeln!(out, "{line}");
                }
                None => {
                    let source = self.source_of(layer_of(&self.origins, path));
                    let _ = writeln!(out, "{line:<40} # {source}");
                }
            }
            path.pop();
        }
        for (key, value) in table {
            path.push(key.clone());
            if let toml::Value::Table(sub) = value {
                // A header only over values of its own: `[auth]` holding only `[auth.http]`,
                // or an empty `[persistence]`, is implied.
                if sub.values().any(|v| !v.is_table() && !is_table_array(v)) {
                    let _ = writeln!(out, "\n[{}]", header_text(path));
                }
                self.write_table(out, path, sub, array);
            } else if is_table_array(value) {
                let layer = array.unwrap_or_else(|| layer_of(&self.origins, path));
                for entry in value.as_array().into_iter().flatten() {
                    let header = format!("[[{}]]", header_text(path));
                    let _ = match array {
                        Some(_) => writeln!(out, "\n{header}"),
                        None => writeln!(out, "\n{header:<40} # {}", self.source_of(layer)),
                    };
                    if let Some(sub) = entry.as_table() {
                        self.write_table(out, path, sub, Some(layer));
                    }
                }
            }
            path.pop();
        }
    }
}

/// `key` as TOML writes it: bare when it can be, quoted otherwise.
fn key_text(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        toml::Value::String(key.to_owned()).to_string()
    }
}

fn header_text(path: &[String]) -> String {
    path.iter()
        .map(|k| key_text(k))
        .collect::<Vec<_>>()
        .join(".")
}

/// The layer of the leaf at `path`; for a table, the highest layer of any leaf inside it; for a
/// path inside a leaf (an array's entry), the leaf's layer. 0 (default) when nothing matches.
fn layer_of(origins: &BTreeMap<Vec<String>, usize>, path: &[String]) -> usize {
    if let Some(&layer) = origins.get(path) {
        return layer;
    }
    let inside = origins
        .range(path.to_vec()..)
        .take_while(|(k, _)| k.starts_with(path))
        .map(|(_, &layer)| layer)
        .max();
    if let Some(layer) = inside {
        return layer;
    }
    (1..path.len())
        .rev()
        .find_map(|n| origins.get(&path[..n]).copied())
        .unwrap_or(0)
}

/// `persistence.dir` joined with [`RUNTIME_FILE`], as a merged table sets it.
fn runtime_path(merged: &toml::Table) -> Option<PathBuf> {
    let dir = merged.get("persistence")?.get("dir")?.as_str()?;
    Some(Path::new(dir).join(RUNTIME_FILE))
}

/// Layers merged so far, with the layer of every leaf.
pub(super) struct Merge {
    table: toml::Table,
    files: Vec<LayerText>,
    origins: BTreeMap<Vec<String>, usize>,
}

impl Merge {
    /// The built-in defaults, then `image` when there is one.
    pub(super) fn new(image: Option<LayerText>) -> Result<Merge, ConfigError> {
        let defaults = match toml::Value::try_from(Config::default()) {
            Ok(toml::Value::Table(t)) => t,
            // The defaults are plain data; serializing them cannot fail.
            _ => toml::Table::new(),
        };
        let mut origins = BTreeMap::new();
        record(&mut origins, &mut Vec::new(), &defaults, 0);
        let mut merge = Merge {
            table: defaults,
            files: Vec::new(),
            origins,
        };
        if let Some(image) = image {
            merge.add(image)?;
        }
        Ok(merge)
    }

    /// Where the runtime layer is, as the layers so far set `persistence.dir`.
    pub(super) fn runtime_path(&self) -> Option<PathBuf> {
        runtime_path(&self.table)
    }

    /// Adds the runtime layer, if any, and deserializes and validates the result.
    pub(super) fn finish(mut self, runtime: Option<LayerText>) -> Result<Layered, ConfigError> {
        if let Some(runtime) = runtime {
            let table = parse_layer(&runtime)?;
            if table
                .get("persistence")
                .and_then(|p| p.get("dir"))
                .is_some()
            {
                return Err(ConfigError::Invalid {
                    place: Place {
                        origin: runtime.origin(),
                        at: locate(&runtime.text, "persistence", None, "dir"),
                    },
                    invalid: InvalidValue {
                        table: "persistence",
                        index: None,
                        key: "dir",
                        message: "cannot be set in the runtime layer, which lives in that \
                                  directory: set it in the image's config file"
                            .to_owned(),
                    },
                });
            }
            self.merge(runtime, table);
        }
        let origin = self
            .files
            .last()
            .map_or_else(|| "built-in defaults".to_owned(), LayerText::origin);
        // Through text, not `toml::Value`: `Config`'s Deserialize code is then instantiated
        // for one deserializer only, which keeps 130 KiB out of every firmware image.
        let merged = toml::to_string(&self.table).map_err(|e| e.to_string());
        let config: Config = merged
            .and_then(|text| toml::from_str(&text).map_err(|e| e.message().to_owned()))
            .map_err(|message| ConfigError::Syntax {
                place: Place {
                    origin: origin.clone(),
                    at: None,
                },
                message: message.trim_end().to_owned(),
            })?;
        config.validate().map_err(|invalid| self.invalid(invalid))?;
        Ok(Layered {
            config,
            merged: self.table,
            files: self.files,
            origins: self.origins,
        })
    }

    /// Parses `layer` and merges it over what is there.
    fn add(&mut self, layer: LayerText) -> Result<(), ConfigError> {
        let table = parse_layer(&layer)?;
        self.merge(layer, table);
        Ok(())
    }

    fn merge(&mut self, layer: LayerText, table: toml::Table) {
        self.files.push(layer);
        let index = self.files.len();
        merge_into(
            &mut self.table,
            table,
            &mut Vec::new(),
            index,
            &mut self.origins,
        );
    }

    /// Points a validation error at the line of the layer that set the key.
    fn invalid(&self, invalid: InvalidValue) -> ConfigError {
        let mut path: Vec<String> = invalid
            .table
            .split('.')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        if invalid.index.is_none() {
            path.extend(invalid.key.split('.').map(str::to_owned));
        }
        let layer = layer_of(&self.origins, &path);
        let place = match layer.checked_sub(1).and_then(|i| self.files.get(i)) {
            Some(file) => Place {
                origin: file.origin(),
                at: locate(&file.text, invalid.table, invalid.index, invalid.key),
            },
            None => Place {
                origin: "built-in defaults".to_owned(),
                at: None,
            },
        };
        ConfigError::Invalid { place, invalid }
    }
}

/// Parses one layer alone: syntax, unknown keys and types are checked here, against the
/// layer's own text, so the error names its file and line.
pub(super) fn parse_layer(layer: &LayerText) -> Result<toml::Table, ConfigError> {
    let syntax = |e: toml::de::Error| ConfigError::Syntax {
        place: Place {
            origin: layer.origin(),
            at: e
                .span()
                .map(|span| Location::of_offset(&layer.text, span.start)),
        },
        message: e.message().trim_end().to_owned(),
    };
    toml::from_str::<Config>(&layer.text).map_err(syntax)?;
    toml::from_str::<toml::Table>(&layer.text).map_err(syntax)
}

/// Merges `over` into `base`: tables key by key, anything else replaced whole. Leaves that
/// `over` sets are recorded as coming from `layer`.
fn merge_into(
    base: &mut toml::Table,
    over: toml::Table,
    path: &mut Vec<String>,
    layer: usize,
    origins: &mut BTreeMap<Vec<String>, usize>,
) {
    for (key, value) in over {
        path.push(key.clone());
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
                merge_into(b, o, path, layer, origins)
            }
            (_, value) => {
                let stale: Vec<_> = origins
                    .range(path.clone()..)
                    .take_while(|(k, _)| k.starts_with(path))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in stale {
                    origins.remove(&k);
                }
                match &value {
                    toml::Value::Table(t) => record(origins, path, t, layer),
                    _ => {
                        origins.insert(path.clone(), layer);
                    }
                }
                base.insert(key, value);
            }
        }
        path.pop();
    }
}

/// Records every leaf of `table` as coming from `layer`.
fn record(
    origins: &mut BTreeMap<Vec<String>, usize>,
    path: &mut Vec<String>,
    table: &toml::Table,
    layer: usize,
) {
    for (key, value) in table {
        path.push(key.clone());
        match value {
            toml::Value::Table(t) => record(origins, path, t, layer),
            _ => {
                origins.insert(path.clone(), layer);
            }
        }
        path.pop();
    }
}
