//! Living as a daemon: where logs go, what the service manager is told, which signals mean what.
//!
//! Under systemd (cargo feature `systemd`) the broker logs straight to journald when its stderr
//! is the journal, says READY=1 once its listeners are bound, RELOADING=1 / READY=1 around a
//! reload and STOPPING=1 on shutdown, reports connections and message rates in STATUS=, and
//! pings the watchdog only while every component of [`Health`] makes progress, so a wedged
//! broker gets restarted. Without the feature, or without a service manager, logs go to stderr
//! (or a size-rotated file) and there is nobody to notify. Started as root, it drops to `user`
//! after binding, or refuses to run as root unless allowed; it writes a pid file when asked to.

mod health;
mod logfile;
mod logging;
#[cfg(feature = "systemd")]
mod notify;
mod pid_file;
mod privileges;
mod signals;

pub use health::{stall_requested, Health, Heartbeat};
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

/// Whether a service manager listens (`NOTIFY_SOCKET`): without one, status reports are not
/// worth computing.
pub fn has_service_manager() -> bool {
    cfg!(feature = "systemd") && std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Tells the service manager what the broker is doing, in one line (`STATUS=`), shown by
/// `systemctl status`.
pub fn notify_status(text: &str) {
    #[cfg(feature = "systemd")]
    notify::send_status(text);
    #[cfg(not(feature = "systemd"))]
    let _ = text;
}

/// The interval of the service manager's watchdog (`WATCHDOG_USEC`), if it asked for pings.
fn watchdog_interval() -> Option<std::time::Duration> {
    #[cfg(feature = "systemd")]
    return notify::watchdog_interval();
    #[cfg(not(feature = "systemd"))]
    None
}

/// Starts pinging the service manager's watchdog, when it asked for one (`WATCHDOG_USEC`), at
/// half its interval, but only while no component of `health` has been silent for longer than
/// that: a wedged accept loop, router or store stops the pings and systemd restarts the broker.
/// A warning names the silent components. Call it inside the runtime.
pub fn start_watchdog(health: std::sync::Arc<Health>) {
    #[cfg(feature = "systemd")]
    notify::start_watchdog(health);
    #[cfg(not(feature = "systemd"))]
    let _ = health;
}
