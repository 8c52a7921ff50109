//! `$SYS/broker/...` topics with Mosquitto's names, published retained every `sys.interval_secs`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::publish::{message, route, FROM_BROKER};
use super::Broker;
use crate::mqtt::{Properties, QoS};

/// Publishes the `$SYS` tree until shutdown; does nothing when the interval is 0.
pub(crate) async fn publish_loop(broker: Arc<Broker>) {
    let secs = broker.config.sys.interval_secs;
    if secs == 0 {
        return;
    }
    publish(
        &broker,
        "$SYS/broker/version",
        concat!("nanomq ", env!("CARGO_PKG_VERSION")).into(),
    );
    let mut stop = broker.stop.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(secs));
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => publish_stats(&broker),
        }
    }
}

fn publish_stats(broker: &Broker) {
    let m = &broker.metrics;
    let load = |c: &portable_atomic::AtomicU64| c.load(Ordering::Relaxed).to_string();
    let connected = m.clients_connected.load(Ordering::Relaxed);
    let total = broker.sessions.len() as u64;
    let uptime = broker.started.elapsed().as_secs();
    let stats: [(&str, String); 14] = [
        ("uptime", format!("{uptime} seconds")),
        ("clients/connected", connected.to_string()),
        ("clients/active", connected.to_string()),
        ("clients/total", total.max(connected).to_string()),
        (
            "clients/disconnected",
            total.saturating_sub(connected).to_string(),
        ),
        ("clients/maximum", load(&m.clients_maximum)),
        ("messages/received", load(&m.messages_received)),
        ("messages/sent", load(&m.messages_sent)),
        ("messages/dropped", load(&m.messages_dropped)),
        ("bytes/received", load(&m.bytes_received)),
        ("bytes/sent", load(&m.bytes_sent)),
        (
            "subscriptions/count",
            broker.subscriptions.len().to_string(),
        ),
        ("retained messages/count", broker.retained.len().to_string()),
        ("messages/expired", load(&m.messages_expired)),
    ];
    for (name, value) in stats {
        publish(broker, &format!("$SYS/broker/{name}"), value);
    }
    #[cfg(feature = "bridge")]
    for bridge in broker.bridges.running() {
        publish_bridge(broker, &bridge);
    }
}

/// `$SYS/broker/bridges/<name>/...`: the link's state, its last error and its counters.
#[cfg(feature = "bridge")]
fn publish_bridge(broker: &Broker, bridge: &crate::bridge::Bridge) {
    let load = |c: &portable_atomic::AtomicU64| c.load(Ordering::Relaxed).to_string();
    let s = &bridge.stats;
    let (cached, cached_bytes) = bridge.cached();
    let stats: [(&str, String); 10] = [
        ("state", bridge.state().name().to_owned()),
        ("last_error", bridge.last_error()),
        ("cache/messages", cached.to_string()),
        ("cache/bytes", cached_bytes.to_string()),
        ("cache/dropped", load(&s.dropped)),
        ("messages/sent", load(&s.messages_sent)),
        ("messages/received", load(&s.messages_received)),
        ("messages/resent", load(&s.resent)),
        ("bytes/sent", load(&s.bytes_sent)),
        ("bytes/received", load(&s.bytes_received)),
    ];
    for (name, value) in stats {
        publish(
            broker,
            &format!("$SYS/broker/bridges/{}/{name}", bridge.name),
            value,
        );
    }
}

fn publish(broker: &Broker, topic: &str, value: String) {
    let m = message(
        Arc::from(topic),
        Bytes::from(value),
        QoS::AtMostOnce,
        true,
        Properties::default(),
        Instant::now(),
    );
    route(broker, Arc::new(m), FROM_BROKER);
}
