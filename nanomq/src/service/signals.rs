//! The signals a daemon answers: SIGTERM and SIGINT stop it, SIGHUP reloads its config.

use tokio::signal::unix::{signal, SignalKind};

/// What a signal asks the broker to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: read the config file again.
    Reload,
    /// SIGTERM or SIGINT (named): shut down gracefully.
    Shutdown(&'static str),
}

/// The installed handlers. Installing them early, before the broker binds anything, means a
/// signal that arrives during startup is acted on instead of killing the process (SIGHUP's
/// default action is to terminate).
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers; needs a running tokio runtime.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Shutdown("SIGINT"),
            _ = self.terminate.recv() => Signal::Shutdown("SIGTERM"),
            _ = self.hangup.recv() => Signal::Reload,
        }
    }
}
