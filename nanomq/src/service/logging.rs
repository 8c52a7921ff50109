//! Where log lines go and which ones: stderr, or journald when systemd connected stderr to the
//! journal (or `log.journald` says so), and a size-rotated file when `log.file` is set, instead
//! of stderr; filtered by `RUST_LOG` or else `log.level`, which a reload can change.

use std::io::IsTerminal;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Registry};

use super::logfile::RotatingFile;
use crate::config::LogConfig;

/// Why logging could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A filter that `tracing` cannot parse, with where it came from.
    #[error("{origin} = {directives:?} is not a valid log filter: {error}")]
    Filter {
        /// `RUST_LOG` or `log.level`.
        origin: &'static str,
        /// The text as given.
        directives: String,
        /// The parser's reason.
        error: tracing_subscriber::filter::ParseError,
    },
    /// `log.file` cannot be opened for appending.
    #[error("cannot open the log file {path}: {error}")]
    File {
        /// The file as configured.
        path: std::path::PathBuf,
        /// The operating system's reason.
        error: std::io::Error,
    },
    /// A global subscriber was already installed (only in tests).
    #[error("cannot set up logging: {0}")]
    Install(String),
    /// The filter could not be swapped (the subscriber is gone).
    #[error("cannot change the log filter: {0}")]
    Reload(#[from] reload::Error),
}

/// Changes the log filter of the running process.
pub struct LogControl {
    filter: reload::Handle<Targets, Registry>,
    /// `RUST_LOG` was set: an operator's override wins over the config file, also on reload.
    overridden: bool,
}

impl LogControl {
    /// Applies a new `log.level`, unless `RUST_LOG` overrides it. Returns whether the filter
    /// changed.
    pub fn set_level(&self, level: &str) -> Result<bool, LogError> {
        if self.overridden {
            return Ok(false);
        }
        let targets = parse(level, "log.level")?;
        self.filter.reload(targets)?;
        Ok(true)
    }
}

/// Installs the process-wide logger: plain lines on stderr (coloured only on a terminal), or
/// structured journald entries when stderr is the journal or `log.journald` is set (cargo
/// feature `systemd`), and plain lines in `log.file` instead of stderr when it is set. The
/// filter is `RUST_LOG` when set and not empty, so an operator can turn on debugging without
/// editing the image's config, else `log.level`.
pub fn init_logging(config: &LogConfig) -> Result<LogControl, LogError> {
    let (targets, overridden) = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => (parse(&directives, "RUST_LOG")?, true),
        _ => (parse(&config.level, "log.level")?, false),
    };
    let (filter, handle) = reload::Layer::new(targets);
    let journal = journal_layer(config.journald);
    let journald_missing = config.journald && journal.is_none();
    let file = match &config.file {
        Some(path) => {
            let max_bytes = config.max_size_kb.saturating_mul(1024);
            let file = RotatingFile::open(path, max_bytes, config.keep).map_err(|error| {
                LogError::File {
                    path: path.clone(),
                    error,
                }
            })?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(file)
                    .with_ansi(false),
            )
        }
        None => None,
    };
    let stderr = (journal.is_none() && file.is_none()).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journal)
        .with(file)
        .with(stderr)
        .try_init()
        .map_err(|e| LogError::Install(e.to_string()))?;
    if journald_missing {
        tracing::warn!(
            "log.journald is set, but journald's socket cannot be reached (or this build has no \
             systemd feature): logging to {}",
            if config.file.is_some() {
                "the log file"
            } else {
                "stderr"
            }
        );
    }
    Ok(LogControl {
        filter: handle,
        overridden,
    })
}

fn parse(directives: &str, origin: &'static str) -> Result<Targets, LogError> {
    directives.parse().map_err(|error| LogError::Filter {
        origin,
        directives: directives.to_owned(),
        error,
    })
}

/// The journald layer when `forced` or when systemd connected stderr to the journal.
#[cfg(feature = "systemd")]
fn journal_layer(forced: bool) -> Option<tracing_journald::Layer> {
    if !forced && !stderr_is_journal() {
        return None;
    }
    // Without the journal's socket (a container, a test) stderr still reaches the journal.
    // No field prefix: `client_id` becomes CLIENT_ID, as `journalctl -o json` users expect.
    tracing_journald::layer()
        .ok()
        .map(|layer| layer.with_field_prefix(None))
}

/// Whether systemd connected stderr to the journal: `JOURNAL_STREAM` names the stream's
/// `device:inode`, which must be stderr's own (a child process may inherit the variable with
/// stderr redirected elsewhere).
#[cfg(feature = "systemd")]
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;

    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr().as_fd()) else {
        return false;
    };
    #[allow(clippy::useless_conversion)] // dev_t and ino_t differ in width between targets
    let ours = format!("{}:{}", u64::from(stat.st_dev), u64::from(stat.st_ino));
    stream == ours
}

/// Without the `systemd` feature `log.journald` has no effect (validation does not refuse it,
/// so one config file serves every build).
#[cfg(not(feature = "systemd"))]
fn journal_layer(_forced: bool) -> Option<tracing_subscriber::layer::Identity> {
    None
}
