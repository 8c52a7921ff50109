//! The retained message of every topic name (spec 3.3.1.3), looked up by topic filter.
//!
//! # Locking
//!
//! One `RwLock` over the whole store. It is not on the publish path: only a PUBLISH with
//! RETAIN=1 writes (rare, and a single trie walk), and lookups happen at subscribe time under the
//! read lock, so lookups run in parallel. Expired messages found by a lookup are removed
//! afterwards under the write lock, after checking again that they are still the expired ones.
//!
//! # Layout
//!
//! A trie keyed by topic level, so a subscription to `a/b/+` visits only the children of `a/b`
//! rather than every retained topic; `#` walks its whole subtree by nature. Each stored message
//! keeps its topic name, so an expired one can be removed without rebuilding its path. Empty
//! branches are pruned when a message is cleared. Walks and drops are iterative, so very deep
//! topics cannot overflow a stack.

use std::collections::HashMap;
use std::fmt;
use std::str::Split;
use std::sync::RwLock;

use super::{read_lock, write_lock};

/// Last retained message per topic name, shared behind an `Arc` by every connection task.
///
/// `M` is the broker's shared message (an `Arc`), cloned out on lookup. Topic names and filters
/// passed in must already be valid.
pub struct RetainedStore<M> {
    inner: RwLock<Store<M>>,
}

struct Store<M> {
    root: Level<M>,
    len: usize,
}

struct Level<M> {
    children: HashMap<Box<str>, Level<M>>,
    retained: Option<Retained<M>>,
}

struct Retained<M> {
    topic: Box<str>,
    message: M,
}

impl<M: Clone> RetainedStore<M> {
    /// An empty store.
    pub fn new() -> Self {
        RetainedStore {
            inner: RwLock::new(Store {
                root: Level::new(),
                len: 0,
            }),
        }
    }

    /// Sets (`Some`) or clears (`None`) the retained message of the topic name `topic`, replacing
    /// any previous one. Clearing a topic that has none is a no-op.
    pub fn set(&self, topic: &str, message: Option<M>) {
        self.set_and(topic, message, || {});
    }

    /// [`Self::set`], running `also` under the same lock: a copy kept elsewhere (the state
    /// database) then sees the updates of one topic in the order they happened here.
    pub fn set_and(&self, topic: &str, message: Option<M>, also: impl FnOnce()) {
        let mut store = write_lock(&self.inner);
        also();
        match message {
            Some(message) => store.insert(topic, message),
            None => {
                store.take_if(topic, |_| true);
            }
        }
    }

    /// Appends to `out` every retained message whose topic matches the plain (non-shared) filter
    /// `filter`, honouring the `$` rule (MQTT-4.7.2-1). A message for which `keep` returns false
    /// (it has expired) is removed from the store instead of returned. Order is unspecified.
    pub fn matching(&self, filter: &str, keep: impl Fn(&M) -> bool, out: &mut Vec<M>) {
        let mut expired = Vec::new();
        {
            let store = read_lock(&self.inner);
            store.root.each_match(filter, |retained| {
                if keep(&retained.message) {
                    out.push(retained.message.clone());
                } else {
                    expired.push(retained.topic.clone());
                }
            });
        }
        if expired.is_empty() {
            return;
        }
        let mut store = write_lock(&self.inner);
        for topic in &expired {
            // It may have been replaced by a fresh message since the read lock was released.
            store.take_if(topic, |message| !keep(message));
        }
    }

    /// Number of retained messages, for `$SYS` and metrics.
    pub fn len(&self) -> usize {
        read_lock(&self.inner).len
    }

    /// True when no message is retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<M: Clone> Default for RetainedStore<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> fmt::Debug for RetainedStore<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedStore")
            .field("len", &read_lock(&self.inner).len)
            .finish_non_exhaustive()
    }
}

impl<M> Store<M> {
    fn insert(&mut self, topic: &str, message: M) {
        let mut level = &mut self.root;
        for key in topic.split('/') {
            level = level
                .children
                .entry(Box::from(key))
                .or_insert_with(Level::new);
        }
        let retained = Retained {
            topic: Box::from(topic),
            message,
        };
        if level.retained.replace(retained).is_none() {
            self.len += 1;
        }
    }

    /// Removes the message of `topic` if there is one and `remove` approves it, then prunes the
    /// branch that led only to it. Returns the removed message.
    fn take_if(&mut self, topic: &str, remove: impl Fn(&M) -> bool) -> Option<M> {
        // Pass 1, read-only: is there something to remove, and from which ancestor down is the
        // path used by nothing else? `cut` is the depth of the deepest strict ancestor holding a
        // message or other children (0 for the root); its child on the path gets unlinked.
        let mut level = &self.root;
        let mut cut = 0;
        let mut depth = 0;
        let mut keys = topic.split('/').peekable();
        while let Some(key) = keys.next() {
            level = level.children.get(key)?;
            depth += 1;
            let ancestor = keys.peek().is_some();
            if ancestor && (level.retained.is_some() || level.children.len() > 1) {
                cut = depth;
            }
        }
        if !level.retained.as_ref().is_some_and(|r| remove(&r.message)) {
            return None;
        }
        let prune = level.children.is_empty();
        // Pass 2: take the message.
        let mut level = &mut self.root;
        for key in topic.split('/') {
            level = level.children.get_mut(key)?;
        }
        let taken = level.retained.take()?;
        self.len -= 1;
        // Pass 3: unlink the branch that led only to it.
        if prune {
            let mut keys = topic.split('/');
            let mut level = &mut self.root;
            for key in keys.by_ref().take(cut) {
                level = level.children.get_mut(key)?;
            }
            if let Some(key) = keys.next() {
                level.children.remove(key);
            }
        }
        Some(taken.message)
    }
}

impl<M> Level<M> {
    fn new() -> Self {
        Level {
            children: HashMap::new(),
            retained: None,
        }
    }

    /// Calls `found` for every retained message under this (root) level matching `filter`.
    fn each_match<'s>(&'s self, filter: &str, mut found: impl FnMut(&'s Retained<M>)) {
        /// Levels still to match below a node; a lone `#` means "this node and everything below".
        type Walk<'s, 'f, M> = (&'s Level<M>, Split<'f, char>, bool);
        let mut stack: Vec<Walk<'s, '_, M>> = vec![(self, filter.split('/'), true)];
        while let Some((level, mut rest, at_root)) = stack.pop() {
            // MQTT-4.7.2-1: wildcards at the first level skip `$` topics.
            let children = level.children.iter();
            let wild = children.filter(|(key, _)| !(at_root && key.starts_with('$')));
            match rest.next() {
                None => found_in(level, &mut found),
                Some("#") => {
                    found_in(level, &mut found);
                    stack.extend(wild.map(|(_, child)| (child, "#".split('/'), false)));
                }
                Some("+") => stack.extend(wild.map(|(_, child)| (child, rest.clone(), false))),
                Some(key) => {
                    if let Some(child) = level.children.get(key) {
                        stack.push((child, rest, false));
                    }
                }
            }
        }
    }
}

fn found_in<'s, M>(level: &'s Level<M>, found: &mut impl FnMut(&'s Retained<M>)) {
    if let Some(retained) = &level.retained {
        found(retained);
    }
}

impl<M> Drop for Level<M> {
    /// Drops descendants iteratively: the default recursive drop of a very deep trie would
    /// overflow the stack.
    fn drop(&mut self) {
        let mut stack: Vec<_> = self.children.drain().map(|(_, child)| child).collect();
        while let Some(mut level) = stack.pop() {
            stack.extend(level.children.drain().map(|(_, child)| child));
        }
    }
}

#[cfg(test)]
mod tests;
