//! The running bridges, and how a reload changes them without a restart: a bridge whose config
//! is the same keeps running untouched; a new one starts; a removed one disconnects and its
//! cache goes; a changed one hands its cache, in order, to its replacement and disconnects.
//!
//! A hand-over loses nothing: the old bridge's cache moves under both cache locks, and from
//! then on whatever the router still gives the old bridge (its subscriptions go after the new
//! one's are in place) goes to the new one. Messages cached before keep the remote topic the
//! old forwards gave them; what was in flight on the old link is sent again (QoS 1 may see a
//! duplicate).

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::mpsc;

use super::{Bridge, TemplateError};
use crate::broker::{Broker, Subscriber};
use crate::config::BridgeConfig;
use crate::router::Subscription;

/// The bridges of a running broker; see the module documentation.
#[derive(Default)]
pub struct BridgeSet {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    running: Vec<Arc<Bridge>>,
    broker: Weak<Broker>,
    /// Held by every uplink task: shutdown waits for them like for connections. None once
    /// the broker is shutting down (no bridge starts then).
    alive: Option<mpsc::Sender<()>>,
}

impl std::fmt::Debug for BridgeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.running().iter().map(|b| b.name.clone()).collect();
        f.debug_struct("BridgeSet")
            .field("running", &names)
            .finish()
    }
}

impl BridgeSet {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bridges running now.
    pub(crate) fn running(&self) -> Vec<Arc<Bridge>> {
        self.inner().running.clone()
    }

    /// Takes the bridges of the config at start, before the state database hands them what
    /// they cached.
    pub(crate) fn install(&self, bridges: Vec<Arc<Bridge>>) {
        self.inner().running = bridges;
    }

    /// Starts every installed bridge.
    pub(crate) fn start(&self, broker: &Arc<Broker>, alive: &mpsc::Sender<()>) {
        let mut inner = self.inner();
        inner.broker = Arc::downgrade(broker);
        inner.alive = Some(alive.clone());
        for bridge in &inner.running {
            launch(broker, bridge, alive);
        }
    }

    /// The broker is shutting down: no bridge starts any more, and shutdown no longer waits
    /// for this set, only for the uplink tasks still running.
    pub(crate) fn close(&self) {
        self.inner().alive = None;
    }

    /// Applies the `[[bridges]]` of a reloaded (validated) config. Returns what changed, for
    /// the log: "added a, changed b, removed c", or "" when nothing did.
    pub fn reload(&self, configs: &[BridgeConfig]) -> Result<String, TemplateError> {
        let mut inner = self.inner();
        let (Some(broker), Some(alive)) = (inner.broker.upgrade(), inner.alive.clone()) else {
            return Ok(String::new());
        };
        let store = broker.store.clone();
        let mut next = Vec::with_capacity(configs.len());
        let mut fresh = Vec::new();
        for config in configs {
            let old = inner.running.iter().find(|b| *b.name == *config.name);
            match old {
                Some(old) if old.config == *config => next.push(old.clone()),
                _ => {
                    let new = Arc::new(Bridge::new(config.clone(), store.clone())?);
                    fresh.push((old.cloned(), new.clone()));
                    next.push(new);
                }
            }
        }
        let mut changes = Vec::new();
        for (old, new) in fresh {
            match old {
                Some(old) => {
                    old.hand_over(&new);
                    launch(&broker, &new, &alive);
                    retire(&broker, &old);
                    changes.push(format!("changed {}", new.name));
                }
                None => {
                    launch(&broker, &new, &alive);
                    changes.push(format!("added {}", new.name));
                }
            }
        }
        for old in &inner.running {
            if !next.iter().any(|b| b.name == old.name) {
                retire(&broker, old);
                old.forget_cache();
                changes.push(format!("removed {}", old.name));
            }
        }
        inner.running = next;
        Ok(changes.join(", "))
    }
}

/// Puts a bridge's forwards in the subscription tree and starts its uplink task.
fn launch(broker: &Arc<Broker>, bridge: &Arc<Bridge>, alive: &mpsc::Sender<()>) {
    for (filter, options, id) in bridge.local_subscriptions() {
        let subscription = Subscription {
            subscriber: Subscriber::Bridge(bridge.clone()),
            options,
            identifier: Some(id),
        };
        broker.subscriptions.subscribe(&filter, subscription);
    }
    let (bridge, broker, alive) = (bridge.clone(), broker.clone(), alive.clone());
    tokio::spawn(async move {
        super::run(bridge, broker).await;
        drop(alive);
    });
}

/// Takes a bridge's forwards out of the tree and tells its uplink to disconnect.
fn retire(broker: &Broker, bridge: &Arc<Bridge>) {
    let me = Subscriber::Bridge(bridge.clone());
    for (filter, _, _) in bridge.local_subscriptions() {
        broker.subscriptions.unsubscribe(&filter, &me);
    }
    bridge.retire();
}
