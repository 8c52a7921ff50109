//! The router's heartbeat: a task that takes, a few times per watchdog period, every lock a
//! PUBLISH or CONNECT needs (the subscription tree on a lookup, the retained store, each
//! session registry shard) and beats only when it got them all. A lock held forever, or every
//! worker thread wedged, stops the beats and with them the watchdog pings.

use std::sync::Arc;

use tokio::time::{Instant, MissedTickBehavior};

use super::Broker;
use crate::service::{stall_requested, Heartbeat};

/// A topic nobody can subscribe to by accident: `$` topics are not matched by root wildcards.
const PROBE_TOPIC: &str = "$SYS/nanomq/health/probe";

/// Probes the routing structures every beat period until shutdown.
pub(crate) async fn router_probe_loop(broker: Arc<Broker>, heartbeat: Heartbeat) {
    let mut stop = broker.stop.clone();
    let mut tick = tokio::time::interval(broker.health.beat_period());
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stall_at = stall_requested("router").map(|after| Instant::now() + after);
    let mut matched = Vec::new();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        if stall_at.is_some_and(|at| Instant::now() >= at) {
            tracing::warn!("NANOMQ_TEST_STALL: the router probe stops beating");
            std::future::pending::<()>().await;
        }
        broker.subscriptions.match_topic(
            PROBE_TOPIC,
            super::publish::FROM_BROKER,
            |_| true,
            &mut matched,
        );
        matched.clear();
        let _ = broker.retained.len();
        let _ = broker.sessions.len();
        heartbeat.beat();
    }
}
