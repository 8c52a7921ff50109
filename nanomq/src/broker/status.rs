//! The one-line status systemd shows in `systemctl status`: connected clients, messages per
//! second in and out over the last interval, retained messages. Read from the metrics atomics
//! by one task; nothing is added to the publish path.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Broker;
use crate::service;

/// How often the status line is refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(3);

/// Sends `STATUS=` right away and then every [`STATUS_INTERVAL`] until shutdown; returns at
/// once when no service manager listens.
pub(crate) async fn report_loop(broker: Arc<Broker>) {
    if !service::has_service_manager() {
        return;
    }
    let mut stop = broker.stop.clone();
    let mut tick = tokio::time::interval(STATUS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let m = &broker.metrics;
    let mut last = (Instant::now(), 0, 0);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let received = m.messages_received.load(Ordering::Relaxed);
        let sent = m.messages_sent.load(Ordering::Relaxed);
        let secs = now.duration_since(last.0).as_secs_f64();
        let line = status_line(
            m.clients_connected.load(Ordering::Relaxed),
            rate(received.saturating_sub(last.1), secs),
            rate(sent.saturating_sub(last.2), secs),
            broker.retained.len(),
        );
        service::notify_status(&line);
        last = (now, received, sent);
    }
}

/// Messages per second; 0 over an empty interval (the first report).
fn rate(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

fn status_line(clients: u64, rate_in: f64, rate_out: f64, retained: usize) -> String {
    let clients_word = if clients == 1 { "client" } else { "clients" };
    format!(
        "{clients} {clients_word}, {} msg/s in, {} msg/s out, {retained} retained",
        show_rate(rate_in),
        show_rate(rate_out)
    )
}

/// Whole numbers, except that a trickle below 10 per second keeps one decimal, so it does not
/// read as nothing.
fn show_rate(rate: f64) -> String {
    if rate > 0.0 && rate < 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_reads_like_a_sentence() {
        assert_eq!(
            status_line(42, 1200.4, 3400.0, 3),
            "42 clients, 1200 msg/s in, 3400 msg/s out, 3 retained"
        );
        assert_eq!(
            status_line(1, rate(1, 3.0), 0.0, 0),
            "1 client, 0.3 msg/s in, 0 msg/s out, 0 retained"
        );
        assert_eq!(rate(5, 0.0), 0.0);
    }
}
