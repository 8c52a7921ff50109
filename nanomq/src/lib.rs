//! nanomq: an edge MQTT broker.
pub mod broker;
pub mod config;
pub mod mqtt;
