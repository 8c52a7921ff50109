//! nanomq: an edge MQTT broker.
pub mod mqtt;
pub mod router;
