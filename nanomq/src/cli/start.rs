//! `nanomq start` and `nanomq check-config`: load the config, set up logging and the runtime,
//! run the broker until SIGINT or SIGTERM, and reload the config on SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::args::{CheckConfigArgs, StartArgs};
use crate::auth::Authenticator;
use crate::broker::{CertificateReloader, Listener};
use crate::config::Config;
use crate::service::{self, Health, LogControl, ServiceState, Signal, Signals};

/// Runs the broker. A config error is returned before anything starts, so a bad file never
/// leaves a half-configured broker running.
pub(super) fn start(args: StartArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let log = service::init_logging(&config.log)?;
    match &args.config {
        Some(path) => tracing::info!(path = %path.display(), "config loaded"),
        None => tracing::info!("no config file given: using built-in defaults (tcp 0.0.0.0:1883)"),
    }
    // Before anything listens: a password or ACL file that does not load stops the start,
    // naming its line.
    let auth = Arc::new(Authenticator::load(&config.auth)?);
    tracing::info!("auth: {}", auth.summary());
    // Room for every connection the config allows, plus listeners and the like.
    let expected = config.limits.max_connections as u64 + 64;
    match super::raise_open_file_limit(expected) {
        Ok(limit) => tracing::info!(limit, "open-file limit"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let threads = match config.runtime.worker_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("nanomq-worker")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let signals = Signals::install().context("cannot install signal handlers")?;
        // Before anything that registers with it (the store opens before READY=1).
        let health = Health::new();
        let listeners = crate::broker::bind(&config).await?;
        service::notify(ServiceState::Ready);
        service::start_watchdog(health.clone());
        let reload = Reload {
            path: args.config,
            log,
            certificates: listeners.iter().map(Listener::reloader).collect(),
            auth: auth.clone(),
            running: config.clone(),
        };
        let supervisor = answer_signals(signals, reload);
        crate::broker::serve(config, auth, listeners, health, supervisor).await?;
        anyhow::Ok(())
    })?;
    tracing::info!("broker stopped");
    Ok(())
}

/// Parses and validates a config file, and the password, ACL, certificate and key files it
/// names, reporting the first problem with its file and line.
pub(super) fn check_config(args: CheckConfigArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.file)?;
    Authenticator::load(&config.auth)?;
    crate::broker::check_transports(&config)?;
    println!("{}: OK", args.file.display());
    Ok(())
}

/// Answers signals until one asks for shutdown: SIGHUP reloads the config file, with the service
/// manager told RELOADING=1 before and READY=1 after; SIGTERM or SIGINT ends it (STOPPING=1).
async fn answer_signals(mut signals: Signals, mut reload: Reload) {
    loop {
        match signals.next().await {
            Signal::Shutdown(name) => {
                tracing::info!("received {name}: shutting down");
                service::notify(ServiceState::Stopping);
                return;
            }
            Signal::Reload => {
                service::notify(ServiceState::Reloading);
                reload.run();
                service::notify(ServiceState::Ready);
            }
        }
    }
}

/// What SIGHUP reloads: the config file, the listeners' certificates, and the password and ACL
/// files.
struct Reload {
    path: Option<PathBuf>,
    log: LogControl,
    certificates: Vec<CertificateReloader>,
    /// The broker's authenticator; its files are read again on every reload.
    auth: Arc<Authenticator>,
    /// The config as the broker runs it.
    running: Config,
}

impl Reload {
    /// Reads the config file again. A file that does not load is refused as a whole and the
    /// running config stays. What can change live is applied: the log level, the TLS
    /// certificates (read again from the files the listeners were started with), and `[auth]`
    /// with the password and ACL files (read again even when `[auth]` did not change; a file
    /// that does not load is refused and the ones in use stay). Other changed sections are
    /// named as waiting for a restart, and stay pending (named again on the next reload).
    fn run(&mut self) {
        let Some(path) = &self.path else {
            tracing::info!("received SIGHUP: running on built-in defaults, nothing to reload");
            return;
        };
        let new = match Config::load(path) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!("config reload refused, the running config stays: {e}");
                return;
            }
        };
        if new.log.level != self.running.log.level {
            match self.log.set_level(&new.log.level) {
                Ok(true) => tracing::info!(level = %new.log.level, "log level changed"),
                Ok(false) => tracing::info!("log.level changed, but RUST_LOG overrides it"),
                Err(e) => {
                    tracing::error!("config reload refused, the running config stays: {e}");
                    return;
                }
            }
            self.running.log.level = new.log.level.clone();
        }
        for listener in &self.certificates {
            match listener.reload() {
                Ok(true) => tracing::info!(listener = listener.name(), "certificates reloaded"),
                Ok(false) => {}
                Err(e) => tracing::error!(
                    listener = listener.name(),
                    "certificate reload failed, the certificates in use stay: {e}"
                ),
            }
        }
        match self.auth.reload(&new.auth) {
            Ok(summary) => {
                tracing::info!("auth reloaded: {summary}");
                self.running.auth = new.auth.clone();
            }
            Err(e) => {
                tracing::error!("auth reload refused, the password file and ACL in use stay: {e}")
            }
        }
        let pending = sections_needing_restart(&self.running, &new);
        if pending.is_empty() {
            tracing::info!(path = %path.display(), "config reloaded");
        } else {
            tracing::warn!(
                path = %path.display(),
                "config reloaded; changes to {} take effect after a restart",
                pending.join(", ")
            );
        }
    }
}

/// The sections of `new` that differ from the running config and cannot change live
/// (`log.level` and `[auth]` can).
fn sections_needing_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    let Config {
        log,
        runtime,
        listeners,
        limits,
        mqtt,
        sys,
        auth: _,
    } = new;
    let log_destination_changed = log.journald != running.log.journald
        || log.file != running.log.file
        || log.max_size_kb != running.log.max_size_kb
        || log.keep != running.log.keep;
    [
        ("[log] destination", log_destination_changed),
        ("[runtime]", *runtime != running.runtime),
        ("[[listeners]]", *listeners != running.listeners),
        ("[limits]", *limits != running.limits),
        ("[mqtt]", *mqtt != running.mqtt),
        ("[sys]", *sys != running.sys),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}
