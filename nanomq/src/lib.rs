//! nanomq: an edge MQTT broker.
pub mod broker;
pub mod cli;
pub mod config;
pub mod mqtt;
