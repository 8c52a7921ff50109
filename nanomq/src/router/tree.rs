//! The subscription table on the publish path: a trie of topic-filter levels with one lock per
//! node.
//!
//! # Locking
//!
//! Each node is an `Arc<Node>` holding a `std::sync::RwLock` over its children, its non-shared
//! subscriptions, its share groups and a `removed` flag. There is no lock over the whole tree:
//!
//! - **Publish** (`match_topic`) read-locks one node at a time: it copies out the matching
//!   subscriptions and the `Arc`s of the children it must visit, releases the lock, then moves
//!   on. Publishes never block each other, and a publish holds any lock only for the few
//!   instructions of one node. Share groups advance their round-robin cursor with an atomic, so
//!   a read lock is enough there too.
//! - **Subscribe** walks down taking one lock at a time (a read lock to find a child, a write lock
//!   only to create a missing one), then write-locks the final node to insert.
//! - **Unsubscribe** write-locks the node holding the subscription to remove it. If that leaves
//!   the node empty it is pruned bottom-up: holding the parent's write lock, then the child's,
//!   it unlinks the child and marks it `removed`, then repeats one level up while nodes stay
//!   empty. Locks are always taken parent before child, so there is no deadlock.
//!
//! A subscribe may reach a node that a concurrent unsubscribe has just pruned. Because pruning
//! marks the node `removed` under its own lock, and nothing is ever inserted into a node whose
//! flag is set, the subscribe sees the flag when it locks the node and retries from the root.
//! Invariant: every node without the flag is linked into a parent without the flag, so whatever
//! is inserted is reachable from the root. A publish that races with a change sees the table
//! either before or after it, per node.
//!
//! All walks are iterative (including dropping the tree), so a filter with tens of thousands of
//! levels cannot overflow a stack.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::str::Split;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::fanout::{Collector, Delivery};
use super::topic::parse_shared;
use super::{read_lock, write_lock};
use crate::mqtt::SubscriptionOptions;

/// One client's subscription to one filter, as handed to [`SubscriptionTree::subscribe`] and as
/// stored for a share group's members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription<S> {
    /// The receiving session's handle.
    pub subscriber: S,
    /// Options from SUBSCRIBE, with `qos` already lowered to what the broker grants.
    pub options: SubscriptionOptions,
    /// v5 Subscription Identifier, attached to every delivery this subscription causes.
    pub identifier: Option<u32>,
}

/// The broker's subscription table: concurrent, lock-per-node, safe to share behind an `Arc`.
///
/// `S` is the subscriber handle; its `Eq` and `Hash` decide what "the same subscriber" means
/// (the broker compares sessions by pointer). Filters and topics passed in must already be
/// valid (see [`validate_topic_filter`](super::validate_topic_filter) and
/// [`validate_topic_name`](super::validate_topic_name)).
pub struct SubscriptionTree<S> {
    root: Arc<Node<S>>,
    /// Number of subscriptions, shared members included.
    len: AtomicUsize,
}

struct Node<S> {
    inner: RwLock<NodeInner<S>>,
}

struct NodeInner<S> {
    children: HashMap<Box<str>, Arc<Node<S>>>,
    /// Non-shared subscriptions whose filter ends at this node, by subscriber.
    plain: HashMap<S, Grant>,
    /// Share groups whose inner filter ends at this node; few per filter, so a `Vec`.
    shared: Vec<ShareGroup<S>>,
    /// Set, under this node's lock and its parent's, when the node is unlinked from the tree.
    removed: bool,
}

/// What a non-shared subscription stores besides its subscriber (the map key).
struct Grant {
    options: SubscriptionOptions,
    identifier: Option<u32>,
}

struct ShareGroup<S> {
    name: Box<str>,
    members: Vec<Subscription<S>>,
    /// Round-robin position; advanced by every matching publish under a read lock.
    cursor: AtomicUsize,
}

/// A `+` branch still to visit during a match: the node and the topic levels after it.
type Pending<'t, S> = (Arc<Node<S>>, Split<'t, char>);

impl<S: Clone + Eq + Hash> SubscriptionTree<S> {
    /// An empty table.
    pub fn new() -> Self {
        SubscriptionTree {
            root: Arc::new(Node::new()),
            len: AtomicUsize::new(0),
        }
    }

    /// Adds `sub` for `filter`, which may be a shared filter `$share/group/f`, or replaces the
    /// options and identifier of the same subscriber's subscription to the same (group, filter).
    /// Returns true if that subscription already existed, which Retain Handling 1 needs.
    ///
    /// A malformed `$share/` filter is stored as a plain filter, as [`unsubscribe`] treats it;
    /// validate filters first.
    ///
    /// [`unsubscribe`]: SubscriptionTree::unsubscribe
    pub fn subscribe(&self, filter: &str, sub: Subscription<S>) -> bool {
        let (group, path) = split_shared(filter);
        loop {
            let node = self.node_for_insert(path);
            let mut inner = write_lock(&node.inner);
            if !inner.removed {
                let existed = inner.insert(group, sub);
                // Counted under the node's lock, so the matching decrement cannot come first.
                if !existed {
                    self.len.fetch_add(1, Ordering::Relaxed);
                }
                return existed;
            }
        }
    }

    /// Removes `subscriber`'s subscription to `filter` (plain or `$share/`), pruning nodes left
    /// empty. Returns true if it existed.
    pub fn unsubscribe(&self, filter: &str, subscriber: &S) -> bool {
        let (group, path) = split_shared(filter);
        let mut nodes = vec![Arc::clone(&self.root)];
        for level in path.split('/') {
            let child = read_lock(&nodes[nodes.len() - 1].inner)
                .children
                .get(level)
                .cloned();
            match child {
                Some(child) => nodes.push(child),
                None => return false,
            }
        }
        let now_empty = {
            let mut inner = write_lock(&nodes[nodes.len() - 1].inner);
            // A node pruned since we found it is empty, so `remove` finds nothing there.
            if !inner.remove(group, subscriber) {
                return false;
            }
            self.len.fetch_sub(1, Ordering::Relaxed);
            inner.is_empty()
        };
        if now_empty {
            prune(path, &nodes);
        }
        true
    }

    /// Appends to `out` one [`Delivery`] per receiver of a message published to `topic` by
    /// `publisher` (compared with subscribers for No Local; `None` for messages the broker
    /// originates, such as `$SYS` or a gone client's will). Non-shared subscriptions of one
    /// subscriber merge into one delivery; each matching share group adds one delivery for one
    /// member, preferring members for which `online` is true. `online` runs under a node's read
    /// lock: it must be cheap and must not call back into this tree.
    pub fn match_topic<P>(
        &self,
        topic: &str,
        publisher: Option<&P>,
        online: impl Fn(&S) -> bool,
        out: &mut Vec<Delivery<S>>,
    ) where
        S: PartialEq<P>,
    {
        let mut collector = Collector::new(out, publisher, online);
        // Only allocates when a `+` branch exists beside the exact path.
        let mut pending: Vec<Pending<'_, S>> = Vec::new();
        // MQTT-4.7.2-1: wildcards at the first level do not match `$` topics.
        let wildcards_at_root = !topic.starts_with('$');
        let mut next = self.root.visit(
            topic.split('/'),
            wildcards_at_root,
            &mut collector,
            &mut pending,
        );
        while let Some((node, levels)) = next.take().or_else(|| pending.pop()) {
            next = node.visit(levels, true, &mut collector, &mut pending);
        }
    }

    /// Number of subscriptions, shared-group members included. A relaxed counter for `$SYS` and
    /// metrics: exact when the table is quiet, approximate while it changes.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when [`len`](SubscriptionTree::len) is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finds the node for `path`, creating missing ones. It may be pruned by the time the caller
    /// locks it; the caller checks `removed` and calls again.
    fn node_for_insert(&self, path: &str) -> Arc<Node<S>> {
        'retry: loop {
            let mut node = Arc::clone(&self.root);
            for level in path.split('/') {
                let found = {
                    let inner = read_lock(&node.inner);
                    if inner.removed {
                        continue 'retry;
                    }
                    inner.children.get(level).cloned()
                };
                node = match found {
                    Some(child) => child,
                    None => {
                        let mut inner = write_lock(&node.inner);
                        if inner.removed {
                            continue 'retry;
                        }
                        let child = inner.children.entry(Box::from(level));
                        Arc::clone(child.or_insert_with(|| Arc::new(Node::new())))
                    }
                };
            }
            return node;
        }
    }
}

impl<S: Clone + Eq + Hash> Default for SubscriptionTree<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> fmt::Debug for SubscriptionTree<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionTree")
            .field("len", &self.len.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Splits `$share/group/f` into `(Some(group), f)`; anything else is `(None, filter)`.
fn split_shared(filter: &str) -> (Option<&str>, &str) {
    match parse_shared(filter) {
        Ok(Some(shared)) => (Some(shared.group), shared.filter),
        _ => (None, filter),
    }
}

/// Unlinks the empty nodes at the end of `nodes` (the root, then one node per level of `path`),
/// bottom-up, stopping at the first node that is no longer empty or was already pruned.
fn prune<S>(path: &str, nodes: &[Arc<Node<S>>]) {
    for (pair, level) in nodes.windows(2).rev().zip(path.rsplit('/')) {
        let [parent, child] = pair else { return };
        let mut parent_inner = write_lock(&parent.inner);
        let mut child_inner = write_lock(&child.inner);
        if child_inner.removed || !child_inner.is_empty() {
            return;
        }
        // Not removed, so still linked here (the invariant); remove it from its parent.
        parent_inner.children.remove(level);
        child_inner.removed = true;
    }
}

impl<S> Node<S> {
    fn new() -> Self {
        Node {
            inner: RwLock::new(NodeInner {
                children: HashMap::new(),
                plain: HashMap::new(),
                shared: Vec::new(),
                removed: false,
            }),
        }
    }
}

impl<S: Clone + Eq + Hash> Node<S> {
    /// Matches the next topic level at this node: hands its matching subscriptions to
    /// `collector`, queues a `+` child on `pending`, and returns the exact-match child to visit
    /// next. `wildcards` is false only at the root for a `$` topic.
    fn visit<'t, P, F: Fn(&S) -> bool>(
        &self,
        mut levels: Split<'t, char>,
        wildcards: bool,
        collector: &mut Collector<'_, S, P, F>,
        pending: &mut Vec<Pending<'t, S>>,
    ) -> Option<Pending<'t, S>>
    where
        S: PartialEq<P>,
    {
        let inner = read_lock(&self.inner);
        let child = |key: &str| {
            let wanted = wildcards || (key != "+" && key != "#");
            wanted.then(|| inner.children.get(key).cloned()).flatten()
        };
        let (hash, plus, exact) = match levels.next() {
            // The topic ends here: this node's filters match, and so does `here/#`.
            None => {
                inner.collect(collector);
                (child("#"), None, None)
            }
            Some(level) => (child("#"), child("+"), child(level)),
        };
        drop(inner);
        if let Some(hash) = hash {
            read_lock(&hash.inner).collect(collector);
        }
        if let Some(plus) = plus {
            pending.push((plus, levels.clone()));
        }
        exact.map(|node| (node, levels))
    }
}

impl<S> NodeInner<S> {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.plain.is_empty() && self.shared.is_empty()
    }
}

impl<S: Clone + Eq + Hash> NodeInner<S> {
    /// Inserts or replaces; returns true if it replaced.
    fn insert(&mut self, group: Option<&str>, sub: Subscription<S>) -> bool {
        let Some(group) = group else {
            let grant = Grant {
                options: sub.options,
                identifier: sub.identifier,
            };
            return self.plain.insert(sub.subscriber, grant).is_some();
        };
        let Some(share) = self.shared.iter_mut().find(|g| *g.name == *group) else {
            self.shared.push(ShareGroup {
                name: Box::from(group),
                members: vec![sub],
                cursor: AtomicUsize::new(0),
            });
            return false;
        };
        match share
            .members
            .iter_mut()
            .find(|m| m.subscriber == sub.subscriber)
        {
            Some(member) => {
                *member = sub;
                true
            }
            None => {
                share.members.push(sub);
                false
            }
        }
    }

    /// Removes; returns true if it was there. Drops a share group left without members.
    fn remove(&mut self, group: Option<&str>, subscriber: &S) -> bool {
        let Some(group) = group else {
            return self.plain.remove(subscriber).is_some();
        };
        let Some(at) = self.shared.iter().position(|g| *g.name == *group) else {
            return false;
        };
        let members = &mut self.shared[at].members;
        let Some(member) = members.iter().position(|m| m.subscriber == *subscriber) else {
            return false;
        };
        members.remove(member);
        if members.is_empty() {
            self.shared.swap_remove(at);
        }
        true
    }

    fn collect<P, F: Fn(&S) -> bool>(&self, collector: &mut Collector<'_, S, P, F>)
    where
        S: PartialEq<P>,
    {
        for (subscriber, grant) in &self.plain {
            collector.plain(subscriber, &grant.options, grant.identifier);
        }
        for group in &self.shared {
            collector.shared(&group.members, &group.cursor);
        }
    }
}

impl<S> Drop for Node<S> {
    /// Drops descendants iteratively: the default recursive drop of a very deep trie would
    /// overflow the stack.
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        let mut stack: Vec<_> = inner.children.drain().map(|(_, child)| child).collect();
        while let Some(node) = stack.pop() {
            // A node still shared (by a running match) is dropped by its last holder instead.
            if let Some(mut node) = Arc::into_inner(node) {
                let inner = node.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
                stack.extend(inner.children.drain().map(|(_, child)| child));
            }
        }
    }
}

#[cfg(test)]
mod tests;
