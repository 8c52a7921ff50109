//! systemd's notification protocol (sd_notify): datagrams to `$NOTIFY_SOCKET`.

use std::time::Duration;

use sd_notify::NotifyState;

use super::ServiceState;

/// Sends `state`; does nothing when `NOTIFY_SOCKET` is unset (not started by systemd).
pub(super) fn send(state: ServiceState) {
    let message = match state {
        ServiceState::Ready => NotifyState::Ready,
        ServiceState::Reloading => NotifyState::Reloading,
        ServiceState::Stopping => NotifyState::Stopping,
    };
    if let Err(e) = sd_notify::notify(&[message]) {
        tracing::warn!("cannot notify the service manager ({state:?}): {e}");
    }
}

/// See [`super::start_watchdog`].
pub(super) fn start_watchdog() {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let period = (interval / 2).max(Duration::from_millis(1));
    tracing::info!("systemd watchdog every {interval:?}: pinging every {period:?}");
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            if let Err(e) = sd_notify::notify(&[NotifyState::Watchdog]) {
                tracing::warn!("cannot ping the systemd watchdog: {e}");
            }
        }
    });
}
