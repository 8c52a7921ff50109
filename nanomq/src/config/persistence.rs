//! `[persistence]`: where durable state lives and how hard the broker tries to keep it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// When a write to the state database counts as done. See `store` for what is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Every commit is fsynced, and a PUBACK/PUBREC for a message that must be kept (queued for
    /// an offline-capable session, or retained) goes out only after its commit: nothing
    /// acknowledged is lost, even to a power cut.
    #[default]
    Always,
    /// Commits are fsynced at most once per `batch_window_ms`, and acknowledgements do not wait
    /// (unless the writer has fallen behind: see `store::MAX_BACKLOG`): a power cut or crash
    /// loses at most the last window.
    Batch,
    /// No fsync at all: commits reach the operating system within `batch_window_ms` and survive
    /// a crash of the broker, not of the machine.
    Off,
}

/// `[persistence]` section. Without `dir` the broker keeps everything in memory (and says so in
/// the log at start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistenceConfig {
    /// The state directory (`/var/lib/nanomq` on a device): the SQLite database `nanomq.db`
    /// (with its WAL) lives here, and `runtime.toml`, the device's own config layer read over
    /// the image's file (which cannot set this key). Absent means memory only and no runtime
    /// layer.
    pub dir: Option<PathBuf>,
    /// `always`, `batch` or `off`; see [`SyncMode`].
    pub sync: SyncMode,
    /// Milliseconds between group commits for `batch` and `off` (1 to 10000).
    pub batch_window_ms: u64,
    /// Messages stored for all sessions together; more are dropped (counted, logged).
    pub max_messages: u64,
    /// Payload bytes stored for all sessions together; more are dropped (counted, logged).
    pub max_bytes: u64,
    /// Payload bytes stored for one session; more are dropped (counted, logged). Its message
    /// count is bounded by `limits.max_queued_messages` plus the in-flight window.
    pub max_session_bytes: u64,
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        PersistenceConfig {
            dir: None,
            sync: SyncMode::Always,
            batch_window_ms: 10,
            max_messages: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
            max_session_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Largest `batch_window_ms`: beyond ten seconds, `batch` is no longer a group commit.
pub const MAX_BATCH_WINDOW_MS: u64 = 10_000;
