//! nanomq: an edge MQTT broker for embedded Linux.
//!
//! # Layout
//!
//! `mqtt` is the wire codec for MQTT 3.1, 3.1.1 and 5.0: pure, one file per packet, fuzzed.
//!
//! `session` is the per-client protocol state (queues, in-flight windows, packet ids, topic
//! aliases, expiry) with no I/O: packets in, packets out, the clock passed in.
//!
//! `router` holds the topic tree (wildcards, `$` topics, shared subscriptions) and the retained
//! store; the publish path reads it without a global lock.
//!
//! `broker` drives everything: accept loops, one task per connection, the client registry with
//! takeover, wills and session expiry, `$SYS`, and graceful shutdown.
//!
//! `auth` decides who may connect and what they may do: the password file (argon2id, and
//! Mosquitto's hashes for migration, SCRAM-SHA-256 verifiers for MQTT 5 enhanced
//! authentication), the ACL file with its first-match rules, an HTTP auth service asked before
//! both (its own small HTTP/1.1 client and answer cache), and their reload.
//!
//! `bridge` connects the broker to cloud brokers as their client: local messages forwarded up
//! (renamed by topic templates) through an ordered, bounded offline cache, remote ones brought
//! down, reconnecting with backoff.
//!
//! `alloc` is the daemon's global allocator: the system's, with slabs for the small
//! cache-line-aligned blocks tokio allocates per connection.
//!
//! `service` is how the daemon lives under a service manager: logging to stderr or journald,
//! systemd readiness and watchdog notifications, and the signals that stop or reload it.
//!
//! `config` is the TOML schema with defaults and line-numbered errors; `cli` the `nanomq`
//! command line (`start`, `check-config`, `passwd`, `pub`, `sub`, and the `bench` load
//! generator).
#![warn(missing_docs, unreachable_pub)]

pub mod alloc;
pub mod auth;
#[cfg(feature = "bridge")]
pub mod bridge;
pub mod broker;
pub mod cli;
pub mod config;
pub mod mqtt;
pub mod router;
pub mod service;
pub mod session;
#[cfg(feature = "persistence")]
pub mod store;
#[cfg(not(feature = "persistence"))]
#[path = "store/disabled.rs"]
pub mod store;
