//! The database layout and the encoding of messages in it.
//!
//! A message is kept as the MQTT 5 PUBLISH packet that carries it (topic, QoS, RETAIN,
//! properties, payload), written and read by the broker's own codec, so every property survives
//! a restart without a column per property. Its expiry is a wall-clock time in milliseconds,
//! since the monotonic clock starts again with the process.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use tokio::time::Instant;

use crate::mqtt::{decode, OutgoingPublish, Packet, ProtocolVersion, QoS};
use crate::session::{Message, StoreId};

/// The layout this build writes (`PRAGMA user_version`).
pub(super) const VERSION: i64 = 2;

/// Creates the tables of [`VERSION`] in an empty database.
pub(super) const CREATE: &str = "
CREATE TABLE retained (
    topic TEXT PRIMARY KEY,
    packet BLOB NOT NULL,
    expires_at INTEGER
);
CREATE TABLE sessions (
    client_id TEXT PRIMARY KEY,
    expiry INTEGER NOT NULL,
    owner TEXT,
    detached_at INTEGER
);
CREATE TABLE subscriptions (
    client_id TEXT NOT NULL,
    filter TEXT NOT NULL,
    options INTEGER NOT NULL,
    identifier INTEGER,
    PRIMARY KEY (client_id, filter)
) WITHOUT ROWID;
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    packet BLOB NOT NULL,
    expires_at INTEGER
);
CREATE TABLE queue (
    seq INTEGER PRIMARY KEY,
    client_id TEXT NOT NULL,
    msg_id INTEGER NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    subscription_ids BLOB,
    bytes INTEGER NOT NULL,
    packet_id INTEGER,
    released INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX queue_by_client ON queue (client_id, msg_id);
CREATE INDEX queue_by_message ON queue (msg_id);
CREATE TABLE inbound_qos2 (
    client_id TEXT NOT NULL,
    packet_id INTEGER NOT NULL,
    PRIMARY KEY (client_id, packet_id)
) WITHOUT ROWID;
";

/// Version 2 adds the bridges' caches: each message a bridge holds for its upstream, as the
/// PUBLISH it goes up as (remote topic, forwarded QoS and RETAIN), in arrival order (`row`).
pub(super) const CREATE_V2: &str = "
CREATE TABLE bridge_cache (
    row INTEGER PRIMARY KEY,
    bridge TEXT NOT NULL,
    packet BLOB NOT NULL,
    expires_at INTEGER,
    accepted_at INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE INDEX bridge_cache_by_bridge ON bridge_cache (bridge, row);
";

/// Encodes a message as the PUBLISH packet kept in `packet` columns.
pub(super) fn encode_message(m: &Message) -> Vec<u8> {
    encode_publish(&m.topic, m.qos, m.retain, m)
}

/// Encodes `m` as a PUBLISH to `topic` with `qos` and `retain`.
pub(super) fn encode_publish(topic: &str, qos: QoS, retain: bool, m: &Message) -> Vec<u8> {
    let publish = OutgoingPublish {
        dup: false,
        qos,
        retain,
        topic,
        packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
        topic_alias: None,
        message_expiry_interval: None,
        subscription_identifiers: &[],
        properties: &m.properties,
        payload: &m.payload,
    };
    let mut out = BytesMut::with_capacity(publish.encoded_len(ProtocolVersion::V5));
    publish.encode(ProtocolVersion::V5, &mut out);
    out.to_vec()
}

/// Decodes a `packet` column back into a message with row id `id` (0: not a `messages` row).
pub(super) fn decode_message(
    packet: &[u8],
    expires_at: Option<i64>,
    id: u64,
    now: (Instant, SystemTime),
) -> Result<Message, String> {
    let mut buf = BytesMut::from(packet);
    let p = match decode(&mut buf, ProtocolVersion::V5, u32::MAX) {
        Ok(Some(Packet::Publish(p))) if buf.is_empty() => p,
        Ok(_) => return Err("a stored message is not one PUBLISH packet".into()),
        Err(e) => return Err(format!("a stored message does not decode: {e}")),
    };
    Ok(Message {
        topic: Arc::from(p.topic.as_str()),
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties: p.properties,
        expires_at: expires_at.map(|at| instant_of(at, now)),
        store_id: StoreId::new(id),
    })
}

/// Wall-clock milliseconds of a monotonic deadline.
pub(super) fn expiry_ms(at: Option<Instant>) -> Option<i64> {
    let at = at?;
    let now = Instant::now();
    let wall = if at >= now {
        SystemTime::now() + (at - now)
    } else {
        SystemTime::now() - (now - at)
    };
    Some(unix_ms(wall))
}

/// The monotonic deadline of wall-clock milliseconds `at`, given the two clocks read together.
pub(super) fn instant_of(at: i64, (mono, wall): (Instant, SystemTime)) -> Instant {
    let now = unix_ms(wall);
    if at >= now {
        mono + Duration::from_millis((at - now) as u64)
    } else {
        mono.checked_sub(Duration::from_millis((now - at) as u64))
            .unwrap_or(mono)
    }
}

/// Milliseconds since the Unix epoch (negative before it, which a sane clock never is).
pub(super) fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Subscription identifiers as a blob of little-endian u32s (None when there are none).
pub(super) fn encode_ids(ids: &[u32]) -> Option<Vec<u8>> {
    (!ids.is_empty()).then(|| ids.iter().flat_map(|i| i.to_le_bytes()).collect())
}

/// The inverse of [`encode_ids`].
pub(super) fn decode_ids(blob: Option<Vec<u8>>) -> Vec<u32> {
    blob.unwrap_or_default()
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
