//! Living as a daemon: where logs go, what the service manager is told, which signals mean what.
//!
//! Under systemd (cargo feature `systemd`) the broker logs straight to journald when its stderr
//! is the journal, says READY=1 once its listeners are bound, RELOADING=1 / READY=1 around a
//! reload and STOPPING=1 on shutdown, and pings the watchdog from its own runtime so a wedged
//! broker gets restarted. Without the feature, or without a service manager, logs go to stderr
//! and there is nobody to notify. Started as root, it drops to `user` after binding, or refuses
//! to run as root unless allowed; it writes a pid file when asked to.

mod logging;
#[cfg(feature = "systemd")]
mod notify;
mod pid_file;
mod privileges;
mod signals;

pub use logging::{init_logging, LogControl, LogError};
pub use pid_file::{PidFile, PidFileError};
pub use privileges::{PrivilegeError, Privileges};
pub use signals::{Signal, Signals};

/// A state change the service manager (systemd's `Type=notify`) waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    /// Every listener is bound: clients can connect.
    Ready,
    /// A configuration reload has begun; `Ready` follows when it is done.
    Reloading,
    /// Graceful shutdown has begun.
    Stopping,
}

/// Tells the service manager about a state change. A lost notification is logged, not fatal:
/// the broker serves clients either way.
pub fn notify(state: ServiceState) {
    #[cfg(feature = "systemd")]
    notify::send(state);
    #[cfg(not(feature = "systemd"))]
    let _ = state;
}

/// Starts pinging the service manager's watchdog, when it asked for one (`WATCHDOG_USEC`), at
/// half its interval. The pings come from a task on the broker's runtime: if every worker
/// thread wedges, they stop and systemd restarts the broker. Call it inside the runtime.
pub fn start_watchdog() {
    #[cfg(feature = "systemd")]
    notify::start_watchdog();
}
