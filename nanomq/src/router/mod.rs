//! Routing tables: which sessions receive a PUBLISH, and which retained messages a new
//! subscription receives.
//!
//! Pure data structures: no I/O, no tokio, no clock. The broker owns one [`SubscriptionTree`] and
//! one [`RetainedStore`] behind an `Arc`, calls them from any connection task, and does the
//! delivery itself. Both are generic over what they store, so they can be tested with plain
//! integers and the broker can plug in its session handle and shared message type.
//!
//! # Layout
//!
//! `topic` validates topic names, topic filters and `$share/{group}/{filter}` filters, maps
//! refusals to reason codes, and matches a single filter against a single name.
//!
//! `tree` is the subscription table on the publish path: a trie with one lock per node, so
//! concurrent publishes never wait on a global lock and subscribe/unsubscribe lock only the nodes
//! they change. `fanout` turns the subscriptions a topic matches into one [`Delivery`] per
//! receiver: merging a subscriber's overlapping subscriptions, honouring No Local, and picking
//! one member per share group.
//!
//! `retained` keeps the last retained message per topic name in a trie, so a subscription only
//! walks the branches its filter can match.

mod fanout;
mod retained;
#[cfg(test)]
mod test_rng;
mod topic;
mod tree;

pub use fanout::Delivery;
pub use retained::RetainedStore;

pub use topic::{
    matches, parse_shared, validate_topic_filter, validate_topic_name, SharedFilter, TopicError,
    TopicKind, MAX_TOPIC_LEN,
};
pub use tree::{Subscription, SubscriptionTree};

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Takes a read lock, ignoring poisoning: every critical section in this module leaves the data
/// consistent (each is a single insert, remove or flag change), so a panic elsewhere while the
/// lock was held must not take routing down with it.
fn read_lock<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Takes a write lock, ignoring poisoning for the same reason as [`read_lock`].
fn write_lock<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
