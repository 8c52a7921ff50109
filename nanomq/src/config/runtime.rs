//! The runtime layer, `runtime.toml` in the state directory: the settings a device changes for
//! itself (later through the HTTP API), kept across OTA updates of the image's file.
//!
//! Every change is validated against the whole effective config before it is written, and
//! written atomically: a power cut leaves the old file or the new one, never half of one. A temp
//! file left behind by an interrupted write is never read (only `runtime.toml` is).

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::layers::{parse_layer, LayerText, Merge};
use super::{ConfigError, Layered};

/// Why the runtime layer could not be changed. The file is unchanged in every case.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The config does not name a state directory, so there is no runtime layer.
    #[error("no runtime layer: persistence.dir is not set in the image's config file")]
    NoStateDir,
    /// The key cannot be set: empty, or a path through a value that is not a table.
    #[error("cannot set {key}: {reason}")]
    Key {
        /// The key, dotted.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The change would make the config invalid, or a layer does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The file could not be written.
    #[error("cannot write {}: {error}", path.display())]
    Write {
        /// The runtime layer's path.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
}

/// Writes `bytes` to `path` so that a crash or power cut leaves either the old file or the new
/// one: a temp file in the same directory is written and fsynced, renamed over `path`, and the
/// directory is fsynced so the rename itself is durable. A file that exists keeps its
/// permissions and (best effort: only root may give a file away) its owner; a new one gets
/// `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name")
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let previous = std::fs::metadata(path).ok();
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        if let Some(meta) = &previous {
            let _ = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()));
            file.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The runtime layer of a broker configured with a given image file.
#[derive(Debug, Clone)]
pub struct RuntimeLayer {
    image: Option<PathBuf>,
    path: PathBuf,
}

/// One change at a time: each change reads, validates and replaces the whole file.
static WRITING: Mutex<()> = Mutex::new(());

impl RuntimeLayer {
    /// The runtime layer under the `persistence.dir` that the defaults and `image` (see
    /// [`super::image_path`]) set.
    pub fn open(image: Option<&Path>) -> Result<RuntimeLayer, RuntimeError> {
        let merge = Merge::new(image.map(LayerText::read).transpose()?)?;
        let path = merge.runtime_path().ok_or(RuntimeError::NoStateDir)?;
        Ok(RuntimeLayer {
            image: image.map(Path::to_owned),
            path,
        })
    }

    /// The file, `<persistence.dir>/runtime.toml`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets `key` (such as `["limits", "max_connections"]`) to `value` in the runtime layer,
    /// if the resulting effective config is valid. Returns that config; the running broker
    /// applies it on its next reload.
    pub fn set(&self, key: &[&str], value: toml::Value) -> Result<Layered, RuntimeError> {
        self.update(key, |table, leaf| {
            table.insert(leaf.to_owned(), value);
        })
    }

    /// Removes `key` from the runtime layer, so the image's value (or the default) applies
    /// again, if the resulting effective config is valid.
    pub fn remove(&self, key: &[&str]) -> Result<Layered, RuntimeError> {
        self.update(key, |table, leaf| {
            table.remove(leaf);
        })
    }

    /// Applies `change` to the table holding `key`'s last part, drops tables left empty,
    /// validates, and writes.
    fn update(
        &self,
        key: &[&str],
        change: impl FnOnce(&mut toml::Table, &str),
    ) -> Result<Layered, RuntimeError> {
        let _one_at_a_time = WRITING.lock().unwrap_or_else(|e| e.into_inner());
        let Some((leaf, tables)) = key.split_last() else {
            return Err(RuntimeError::Key {
                key: String::new(),
                reason: "the key is empty",
            });
        };
        let current = LayerText::read_optional(&self.path)?;
        let mut root = match &current {
            Some(layer) => parse_layer(layer)?,
            None => toml::Table::new(),
        };
        let mut table = &mut root;
        for part in tables {
            let entry = table
                .entry((*part).to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().ok_or_else(|| RuntimeError::Key {
                key: key.join("."),
                reason: "a part of it is a value, not a table",
            })?;
        }
        change(table, leaf);
        prune_empty(&mut root);
        let text = toml::to_string(&root).map_err(|_| RuntimeError::Key {
            key: key.join("."),
            reason: "the value cannot be written as TOML",
        })?;
        let merge = Merge::new(self.image.as_deref().map(LayerText::read).transpose()?)?;
        let layered = merge.finish(Some(LayerText {
            path: self.path.clone(),
            text: text.clone(),
        }))?;
        if current.as_ref().map_or("", |c| c.text.as_str()) != text {
            write_atomic(&self.path, text.as_bytes(), 0o600).map_err(|error| {
                RuntimeError::Write {
                    path: self.path.clone(),
                    error,
                }
            })?;
        }
        Ok(layered)
    }
}

/// Removes tables that hold nothing, at any depth.
fn prune_empty(table: &mut toml::Table) {
    table.retain(|_, value| match value {
        toml::Value::Table(t) => {
            prune_empty(t);
            !t.is_empty()
        }
        _ => true,
    });
}
