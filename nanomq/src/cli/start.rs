//! `nanomq start` and `nanomq check-config`: load the config layers, set up logging and the
//! runtime, run the broker until SIGINT or SIGTERM, and reload the config on SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::args::{CheckConfigArgs, StartArgs};
use crate::auth::Authenticator;
use crate::broker::{CertificateReloader, Listener, Live, LIVE_LIMITS};
use crate::config::{image_path, Config, Layered};
use crate::service::{
    self, Health, LogControl, PidFile, Privileges, ServiceState, Signal, Signals,
};

/// Runs the broker. A config error is returned before anything starts, so a bad file never
/// leaves a half-configured broker running.
pub(super) fn start(args: StartArgs) -> anyhow::Result<()> {
    let layered = Layered::load(image_path(args.config.as_deref()).as_deref())?;
    let config = layered.config.clone();
    let privileges = Privileges::check(
        config.user.as_deref(),
        config.group.as_deref(),
        config.allow_root || args.allow_root,
    )?;
    let log = service::init_logging(&config.log)?;
    log_layers(&layered);
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
        let Prepared {
            listeners,
            state,
            pid_file,
        } = prepare(&config, &privileges, &args, &health).await?;
        service::notify(ServiceState::Ready);
        service::start_watchdog(health.clone());
        let live = Live::new(&config, auth);
        let reload = Reload {
            image: args.config,
            log,
            certificates: listeners.iter().map(Listener::reloader).collect(),
            live: live.clone(),
            running: config.clone(),
        };
        let supervisor = answer_signals(signals, reload);
        crate::broker::serve(config, live, listeners, health, state, supervisor).await?;
        drop(pid_file);
        anyhow::Ok(())
    })?;
    tracing::info!("broker stopped");
    Ok(())
}

/// Opens the state database in `persistence.dir`, or says that state stays in memory.
#[cfg(feature = "persistence")]
fn open_state(
    config: &Config,
    recover: bool,
    health: &Health,
) -> anyhow::Result<Option<crate::store::Opened>> {
    let Some(dir) = &config.persistence.dir else {
        tracing::info!(
            "no state directory (persistence.dir): sessions and retained messages are kept in \
             memory only and lost on restart"
        );
        return Ok(None);
    };
    let heartbeat = health.register("store");
    let options = crate::store::OpenOptions {
        recover,
        beat: Box::new(move || heartbeat.beat()),
        beat_every: health.beat_period(),
        stall_after: service::stall_requested("store"),
    };
    let opened = crate::store::Store::open(&config.persistence, dir, options)?;
    tracing::info!(
        path = %opened.store.path().display(),
        sync = ?config.persistence.sync,
        "state database open"
    );
    Ok(Some(opened))
}

/// Without the `persistence` feature a configured state directory is an error: the operator
/// asked for durability this build cannot give.
#[cfg(not(feature = "persistence"))]
fn open_state(
    config: &Config,
    _recover: bool,
    _health: &Health,
) -> anyhow::Result<Option<crate::store::Opened>> {
    if config.persistence.dir.is_some() {
        anyhow::bail!(
            "persistence.dir is set, but this nanomq was built without the `persistence` \
             feature: remove the key or use a build with it"
        );
    }
    tracing::info!(
        "built without persistence: sessions and retained messages are kept in memory only"
    );
    Ok(None)
}

/// Everything before READY=1, in this order: bind the listeners (ports below 1024 need root),
/// drop root, then create files, as the unprivileged user so they are its own: the store opens
/// here, then the pid file is written.
async fn prepare(
    config: &Config,
    privileges: &Privileges,
    args: &StartArgs,
    health: &Health,
) -> anyhow::Result<Prepared> {
    let listeners = crate::broker::bind(config).await?;
    privileges.drop_root()?;
    // After the drop, so its files belong to the broker's user.
    let state = open_state(config, args.recover_store, health)?;
    let pid_file = config
        .pid_file
        .as_deref()
        .map(PidFile::create)
        .transpose()?;
    Ok(Prepared {
        listeners,
        state,
        pid_file,
    })
}

/// What [`prepare`] readied.
struct Prepared {
    listeners: Vec<Listener>,
    state: Option<crate::store::Opened>,
    pid_file: Option<PidFile>,
}

/// Logs which layers the config came from.
fn log_layers(layered: &Layered) {
    if layered.files().next().is_none() {
        tracing::info!("no config file: using built-in defaults (tcp 0.0.0.0:1883)");
    } else {
        tracing::info!("config loaded from {}", layered.describe());
    }
}

/// Loads the config layers as `start` would, checks the password, ACL, certificate and key
/// files they name, and prints the effective config with where each value came from; the first
/// problem is reported with its file and line.
pub(super) fn check_config(args: CheckConfigArgs) -> anyhow::Result<()> {
    let layered = Layered::load(image_path(args.file.as_deref()).as_deref())?;
    let config = &layered.config;
    Authenticator::load(&config.auth)?;
    crate::broker::check_transports(config)?;
    if args.quiet {
        println!("{}: OK", layered.describe());
    } else {
        print!("{}", layered.annotated());
        println!("\n# {}: OK", layered.describe());
    }
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

/// What SIGHUP reloads: the config layers, the listeners' certificates, the password and ACL
/// files, and the limits read at accept and CONNECT.
struct Reload {
    /// `--config`, if given: the image's file is chosen again on every reload, as at start.
    image: Option<PathBuf>,
    log: LogControl,
    certificates: Vec<CertificateReloader>,
    /// What the broker applies live: its authenticator (its files are read again on every
    /// reload), its limits and its bridges.
    live: Live,
    /// The config as the broker runs it.
    running: Config,
}

impl Reload {
    /// Reads every config layer again. A config that does not load is refused as a whole and
    /// the running config stays. What can change live is applied: the log level, the TLS
    /// certificates (read again from the files the listeners were started with), `[auth]`
    /// with the password and ACL files (read again even when `[auth]` did not change; a file
    /// that does not load is refused and the ones in use stay), and the limits of
    /// [`LIVE_LIMITS`] and `listeners[].max_connections`. Other changes are named, key by key
    /// for `[limits]`, as waiting for a restart, and stay pending (named again on the next
    /// reload).
    fn run(&mut self) {
        let layered = match Layered::load(image_path(self.image.as_deref()).as_deref()) {
            Ok(layered) => layered,
            Err(e) => {
                tracing::error!("config reload refused, the running config stays: {e}");
                return;
            }
        };
        let path = layered.describe();
        let new = layered.config;
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
        match self.live.auth.reload(&new.auth) {
            Ok(summary) => {
                tracing::info!("auth reloaded: {summary}");
                self.running.auth = new.auth.clone();
            }
            Err(e) => {
                tracing::error!("auth reload refused, the password file and ACL in use stay: {e}")
            }
        }
        self.apply_limits(&new);
        #[cfg(feature = "bridge")]
        self.apply_bridges(&new);
        let pending = changes_needing_restart(&self.running, &new);
        if pending.is_empty() {
            tracing::info!(%path, "config reloaded");
        } else {
            tracing::warn!(
                %path,
                "config reloaded; changes to {} take effect after a restart",
                pending.join(", ")
            );
        }
    }

    /// Starts, replaces and stops bridges as `[[bridges]]` now says, and records it as running.
    #[cfg(feature = "bridge")]
    fn apply_bridges(&mut self, new: &Config) {
        match self.live.bridges.reload(&new.bridges) {
            Ok(changes) => {
                if !changes.is_empty() {
                    tracing::info!("bridges reloaded: {changes}");
                }
                self.running.bridges = new.bridges.clone();
            }
            Err(e) => tracing::error!("bridge reload refused, the bridges in use stay: {e}"),
        }
    }

    /// Applies the live limits and records them as running, naming each one that changed.
    fn apply_limits(&mut self, new: &Config) {
        self.live.limits.apply(new);
        let (running, wanted) = (limit_values(&self.running), limit_values(new));
        for key in LIVE_LIMITS {
            if running.get(key) != wanted.get(key) {
                if let Some(value) = wanted.get(key) {
                    tracing::info!("limits.{key} changed to {value}");
                }
            }
        }
        let r = &mut self.running.limits;
        let n = &new.limits;
        r.max_connections = n.max_connections;
        r.max_pending_connections = n.max_pending_connections;
        r.connect_rate_per_ip = n.connect_rate_per_ip;
        r.connect_timeout_secs = n.connect_timeout_secs;
        r.min_keepalive = n.min_keepalive;
        r.max_keepalive = n.max_keepalive;
        r.max_session_expiry_secs = n.max_session_expiry_secs;
        if self.running.listeners.len() == new.listeners.len() {
            for (i, (r, n)) in self
                .running
                .listeners
                .iter_mut()
                .zip(&new.listeners)
                .enumerate()
            {
                if r.max_connections != n.max_connections {
                    tracing::info!(
                        "listeners[{i}].max_connections changed to {}",
                        n.max_connections
                    );
                    r.max_connections = n.max_connections;
                }
            }
        }
    }
}

/// `[limits]` as key-value pairs, to compare key by key.
fn limit_values(config: &Config) -> toml::Table {
    toml::Table::try_from(&config.limits).unwrap_or_default()
}

/// What in `new` differs from the running config and cannot change live: sections, or keys for
/// `[limits]` (`[log]`, `[auth]` and the live limits can change).
fn changes_needing_restart(running: &Config, new: &Config) -> Vec<String> {
    let Config {
        log,
        runtime,
        listeners,
        limits: _,
        mqtt,
        sys,
        auth: _,
        user,
        group,
        allow_root,
        pid_file,
        persistence,
        bridges: _,
    } = new;
    let log_destination_changed = log.journald != running.log.journald
        || log.file != running.log.file
        || log.max_size_kb != running.log.max_size_kb
        || log.keep != running.log.keep;
    let (was, now) = (limit_values(running), limit_values(new));
    let limits = now
        .iter()
        .filter(|(key, value)| was.get(*key) != Some(*value))
        .map(|(key, _)| format!("limits.{key}"));
    [
        ("[log] destination", log_destination_changed),
        ("[runtime]", *runtime != running.runtime),
        ("[[listeners]]", *listeners != running.listeners),
        ("[mqtt]", *mqtt != running.mqtt),
        ("[sys]", *sys != running.sys),
        ("user", *user != running.user),
        ("group", *group != running.group),
        ("allow_root", *allow_root != running.allow_root),
        ("pid_file", *pid_file != running.pid_file),
        ("[persistence]", *persistence != running.persistence),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(name, _)| name.to_owned())
    .chain(limits)
    .collect()
}
