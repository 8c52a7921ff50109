//! Keepalive enforcement by one sweeper for the whole broker, as Mosquitto does it: each
//! attached session carries the second by which its client must have sent something, and once
//! a second the sweeper kicks every connection past its deadline. A timer per connection would
//! cost every idle connection a timer entry (over 100 bytes) and every read a timer reset.
//!
//! A connection is closed between 1.5 times its keepalive and one second later: MQTT asks for
//! the close after 1.5 times the keepalive without a packet, and so does this.

use std::sync::Arc;
use std::time::Duration;

use super::Broker;
use crate::mqtt::ReasonCode;

/// How often deadlines are checked.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The deadline, in whole seconds of broker uptime, for a client that was last heard from at
/// `now_secs` with keepalive `keep_alive` seconds (not 0). Rounded up, so never early.
pub(crate) fn deadline(now_secs: u32, keep_alive: u16) -> u32 {
    now_secs.saturating_add((u32::from(keep_alive) * 3).div_ceil(2))
}

/// Kicks connections past their keepalive deadline until shutdown.
pub(crate) async fn sweep_loop(broker: Arc<Broker>) {
    let mut stop = broker.stop.clone();
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {
                let now = broker.uptime_secs();
                broker.sessions.kick_expired(now, ReasonCode::KEEP_ALIVE_TIMEOUT);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::deadline;

    #[test]
    fn deadline_is_one_and_a_half_keepalives_rounded_up() {
        assert_eq!(deadline(100, 10), 115);
        assert_eq!(deadline(100, 1), 102);
        assert_eq!(deadline(0, u16::MAX), 98_303);
        assert_eq!(deadline(u32::MAX - 1, 60), u32::MAX);
    }
}
