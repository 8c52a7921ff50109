//! `nanomq start` and `nanomq check-config`: load the config, set up logging and the runtime,
//! and run the broker until SIGINT or SIGTERM.

use std::future::Future;
use std::io::IsTerminal;

use anyhow::{anyhow, Context};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::args::{CheckConfigArgs, StartArgs};
use crate::config::Config;

/// Runs the broker. A config error is returned before anything starts, so a bad file never
/// leaves a half-configured broker running.
pub(super) fn start(args: StartArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    init_logging(&config.log.level)?;
    match &args.config {
        Some(path) => tracing::info!(path = %path.display(), "config loaded"),
        None => tracing::info!("no config file given: using built-in defaults (tcp 0.0.0.0:1883)"),
    }
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
        let shutdown = shutdown_signal()?;
        crate::broker::run(config, shutdown).await?;
        anyhow::Ok(())
    })?;
    tracing::info!("broker stopped");
    Ok(())
}

/// Parses and validates a config file, reporting the first problem with its line.
pub(super) fn check_config(args: CheckConfigArgs) -> anyhow::Result<()> {
    Config::load(&args.file)?;
    println!("{}: OK", args.file.display());
    Ok(())
}

/// Logs to stderr (coloured only on a terminal, so journald and log files get plain text),
/// filtered by `RUST_LOG` when it is set and not empty (so an operator can turn
/// on debugging without editing the image's config), else by `log.level`.
fn init_logging(level: &str) -> anyhow::Result<()> {
    let filter: Targets = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => directives
            .parse()
            .with_context(|| format!("RUST_LOG={directives:?} is not a valid log filter"))?,
        _ => level
            .parse()
            .context("log.level is not a valid log filter")?,
    };
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry()
        .with(output)
        .with(filter)
        .try_init()
        .map_err(|e| anyhow!("cannot set up logging: {e}"))
}

/// A future that resolves on the first SIGINT or SIGTERM. The handlers are installed now, before
/// the broker starts, so a signal arriving during startup is not lost.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!("received {name}: shutting down");
    })
}
