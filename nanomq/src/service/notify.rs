//! systemd's notification protocol (sd_notify): datagrams to `$NOTIFY_SOCKET`.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use super::{Health, ServiceState};

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

/// Sends `STATUS=text`. A failure is logged at debug only: it repeats every few seconds.
pub(super) fn send_status(text: &str) {
    if let Err(e) = sd_notify::notify(&[NotifyState::Status(text)]) {
        tracing::debug!("cannot send STATUS to the service manager: {e}");
    }
}

/// The watchdog interval systemd asked for, if any.
pub(super) fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

/// See [`super::start_watchdog`].
pub(super) fn start_watchdog(health: Arc<Health>) {
    let Some(interval) = watchdog_interval() else {
        return;
    };
    let period = (interval / 2).max(Duration::from_millis(1));
    tracing::info!(
        "systemd watchdog every {interval:?}: pinging every {period:?} while healthy \
         (components beat every {:?})",
        health.beat_period()
    );
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_stale = false;
        loop {
            ticks.tick().await;
            let stale = health.stale(period);
            if !stale.is_empty() {
                if !was_stale {
                    tracing::warn!(
                        components = %stale.join(", "),
                        "not pinging the systemd watchdog: no progress from {} for over {period:?}",
                        stale.join(", ")
                    );
                }
                was_stale = true;
                continue;
            }
            if was_stale {
                tracing::warn!(
                    "every component makes progress again: pinging the systemd watchdog"
                );
                was_stale = false;
            }
            if let Err(e) = sd_notify::notify(&[NotifyState::Watchdog]) {
                tracing::warn!("cannot ping the systemd watchdog: {e}");
            }
        }
    });
}
