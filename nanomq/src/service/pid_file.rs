//! The pid file: how `nanomq reload` (and init scripts) find the running broker.

use std::path::{Path, PathBuf};

/// A written pid file, removed again when dropped (a clean exit). A broker killed outright
/// leaves it behind; readers check that the process is still a broker.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

/// Why a pid file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// Writing failed (the directory must be writable by the user the broker runs as).
    #[error("cannot write pid file {}: {error}", path.display())]
    Write {
        /// The configured path.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// Reading failed: usually no broker was started with this pid file.
    #[error("cannot read pid file {} (is the broker running?): {error}", path.display())]
    Read {
        /// The configured path.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The file does not hold a process id.
    #[error("pid file {} does not hold a process id: {text:?}", path.display())]
    Garbled {
        /// The configured path.
        path: PathBuf,
        /// What it holds.
        text: String,
    },
}

impl PidFile {
    /// Writes this process's id to `path`, atomically: a reader sees the whole number or no
    /// file, never a partial one.
    pub fn create(path: &Path) -> Result<PidFile, PidFileError> {
        let text = format!("{}\n", std::process::id());
        crate::config::runtime::write_atomic(path, text.as_bytes(), 0o644).map_err(|error| {
            PidFileError::Write {
                path: path.to_owned(),
                error,
            }
        })?;
        Ok(PidFile {
            path: path.to_owned(),
        })
    }

    /// The process id in the pid file at `path`.
    pub fn read(path: &Path) -> Result<i32, PidFileError> {
        let text = std::fs::read_to_string(path).map_err(|error| PidFileError::Read {
            path: path.to_owned(),
            error,
        })?;
        text.trim()
            .parse::<i32>()
            .ok()
            .filter(|pid| *pid > 0)
            .ok_or_else(|| PidFileError::Garbled {
                path: path.to_owned(),
                text: text.chars().take(40).collect(),
            })
    }
}

impl Drop for PidFile {
    /// Removes the file if it still names this process (another broker may have taken it).
    fn drop(&mut self) {
        if PidFile::read(&self.path).ok() == i32::try_from(std::process::id()).ok() {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!("cannot remove pid file {}: {e}", self.path.display());
            }
        }
    }
}
