//! Bridges: uplinks from this broker to cloud brokers.
//!
//! A [`Bridge`] sits in the subscription tree like a session, subscribed to its forwards'
//! filters with No Local, so what it brings down never goes back up through it. The router
//! hands it every matching message ([`Bridge::accept`]): renamed by the forward's template and
//! put in its [`cache::Cache`] in arrival order, whatever the state of the upstream. One task
//! per bridge ([`uplink::run`]) connects with the broker's own codec as a client, sends the
//! cache in order within the in-flight window, removes what the upstream acknowledged, and
//! routes what its subscriptions bring down into the local broker. When the link drops it
//! reconnects with exponential backoff and jitter; what was in flight goes first again.

mod backoff;
pub(crate) mod cache;
mod dial;
mod set;
pub mod template;
mod uplink;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use portable_atomic::AtomicU64;
use tokio::sync::{watch, Notify};

use crate::config::{BridgeConfig, ForwardConfig, SubscriptionConfig};
use crate::mqtt::{QoS, RetainHandling, SubscriptionOptions};
use crate::session::Outgoing;
use crate::store::{Store, Ticket};
use cache::{Cache, DropReason, Entry};
pub use set::BridgeSet;
pub use template::{TemplateError, TopicTemplate};
pub(crate) use uplink::run;

/// Where a bridge's link is, as `$SYS/broker/bridges/<name>/state` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    /// Dialling, or waiting for CONNACK.
    Connecting = 0,
    /// Connected: messages flow.
    Connected = 1,
    /// Waiting before the next attempt.
    BackingOff = 2,
}

impl LinkState {
    /// The word `$SYS` and logs use.
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::BackingOff => "backing-off",
        }
    }
}

/// Counters of one bridge, for `$SYS` and logs.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// PUBLISH packets sent up (resends included).
    pub messages_sent: AtomicU64,
    /// PUBLISH packets received from the upstream.
    pub messages_received: AtomicU64,
    /// Payload bytes sent up.
    pub bytes_sent: AtomicU64,
    /// Payload bytes received.
    pub bytes_received: AtomicU64,
    /// Messages that never went up: cache full, too old, too large, QoS 0 offline.
    pub dropped: AtomicU64,
    /// Messages sent again after a reconnect (possible duplicates at QoS 1).
    pub resent: AtomicU64,
}

/// A subscription at the upstream, ready for what it brings down.
#[derive(Debug)]
pub(crate) struct Downlink {
    pub(crate) filter: String,
    pub(crate) template: TopicTemplate,
    pub(crate) qos: QoS,
}

/// One bridge; see the module documentation.
pub struct Bridge {
    /// Its name from the config.
    pub name: Arc<str>,
    config: BridgeConfig,
    /// The remote topic template of each forward, in config order.
    forwards: Vec<TopicTemplate>,
    downlinks: Vec<Downlink>,
    cache: Mutex<Cache>,
    /// Wakes the uplink task: messages accepted.
    wake: Notify,
    state: AtomicU8,
    last_error: Mutex<String>,
    /// Counters.
    pub stats: BridgeStats,
    /// Where QoS 1/2 messages are kept until acknowledged; None keeps them in memory only.
    store: Option<Arc<Store>>,
    /// Set by a reload that replaced this bridge: its cache went there, and so does whatever
    /// the router still hands this one.
    successor: OnceLock<Arc<Bridge>>,
    /// True once a reload removed or replaced this bridge: its uplink disconnects.
    retired: watch::Sender<bool>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").field("name", &self.name).finish()
    }
}

impl Bridge {
    /// A bridge from its (validated) config, not yet connected, caching in `store` if given.
    pub fn new(config: BridgeConfig, store: Option<Arc<Store>>) -> Result<Self, TemplateError> {
        let forwards = config
            .forwards
            .iter()
            .map(|f| TopicTemplate::parse(&f.remote, &f.filter))
            .collect::<Result<_, _>>()?;
        let downlinks = config
            .subscriptions
            .iter()
            .map(|s: &SubscriptionConfig| {
                Ok(Downlink {
                    filter: s.filter.clone(),
                    template: TopicTemplate::parse(&s.local, &s.filter)?,
                    qos: QoS::from_u8(s.qos).unwrap_or(QoS::AtLeastOnce),
                })
            })
            .collect::<Result<_, TemplateError>>()?;
        Ok(Bridge {
            name: Arc::from(config.name.as_str()),
            cache: Mutex::new(Cache::new(config.cache.clone(), store.is_some())),
            forwards,
            downlinks,
            config,
            wake: Notify::new(),
            state: AtomicU8::new(LinkState::Connecting as u8),
            last_error: Mutex::new(String::new()),
            stats: BridgeStats::default(),
            store,
            successor: OnceLock::new(),
            retired: watch::Sender::new(false),
        })
    }

    /// The local subscriptions of its forwards: filter, options and the identifier that tells
    /// [`Bridge::accept`] which forward matched (its position plus one).
    pub(crate) fn local_subscriptions(&self) -> Vec<(String, SubscriptionOptions, u32)> {
        self.config
            .forwards
            .iter()
            .zip(1..)
            .map(|(f, id): (&ForwardConfig, u32)| {
                let options = SubscriptionOptions {
                    qos: QoS::from_u8(f.qos).unwrap_or(QoS::AtLeastOnce),
                    no_local: true,
                    retain_as_published: f.retain,
                    retain_handling: RetainHandling::Never,
                };
                (f.filter.clone(), options, id)
            })
            .collect()
    }

    /// Takes a message the router matched to a forward: renamed, into the cache, and the
    /// uplink woken. Where several forwards match, the first in config order names it.
    pub(crate) fn accept(&self, item: Outgoing) -> Option<Ticket> {
        let index = item
            .subscription_identifiers
            .iter()
            .min()
            .map_or(0, |id| *id as usize - 1);
        let template = self.forwards.get(index)?;
        let local = &item.message.topic;
        let topic = if template.is_identity() {
            local.clone()
        } else {
            Arc::from(template.apply(local))
        };
        self.take(Entry::new(topic, item.message, item.qos, item.retain))
    }

    /// Puts an entry in the cache (or the successor's, after a reload replaced this bridge).
    fn take(&self, mut entry: Entry) -> Option<Ticket> {
        let mut cache = self.cache();
        if let Some(successor) = self.successor.get() {
            drop(cache);
            return successor.take(entry);
        }
        // Appended under the cache lock: rows follow the cache's order.
        let ticket = match &self.store {
            Some(store) if entry.qos != QoS::AtMostOnce => {
                let (row, ticket) = store.bridge_append(
                    &self.name,
                    &entry.topic,
                    entry.qos,
                    entry.retain,
                    &entry.message,
                );
                entry.row = row;
                Some(ticket)
            }
            _ => None,
        };
        let row = entry.row;
        let dropped = cache.push(entry);
        drop(cache);
        // A newcomer the bounds refused promises nothing: its row goes with the drops.
        let ticket = ticket.filter(|_| !dropped.iter().any(|(e, _)| e.row == row));
        self.count_drops(dropped);
        self.wake.notify_one();
        ticket
    }

    /// An empty cache with this bridge's bounds.
    fn empty_cache(&self) -> Cache {
        Cache::new(self.config.cache.clone(), self.store.is_some())
    }

    /// Hands this bridge's cache to `new`, its replacement with a reloaded config: under both
    /// cache locks, so nothing the router gives this bridge meanwhile is lost or reordered.
    fn hand_over(&self, new: &Arc<Bridge>) {
        let mut mine = self.cache();
        let mut theirs = new.cache();
        if self.successor.set(new.clone()).is_ok() {
            theirs.adopt(std::mem::replace(&mut *mine, self.empty_cache()));
        }
    }

    /// Tells the uplink to disconnect: a reload removed or replaced this bridge.
    fn retire(&self) {
        self.retired.send_replace(true);
    }

    /// A resolved future once [`Bridge::retire`] was called.
    async fn retired(&self) {
        let mut retired = self.retired.subscribe();
        let _ = retired.wait_for(|r| *r).await;
    }

    /// Drops everything cached, from memory and from the state database: a reload removed
    /// this bridge.
    fn forget_cache(&self) {
        let (messages, _) = self.cached();
        drop(std::mem::replace(&mut *self.cache(), self.empty_cache()));
        if let Some(store) = &self.store {
            store.bridge_forget(&self.name);
        }
        if messages > 0 {
            tracing::warn!(
                bridge = %self.name,
                messages,
                "bridge {} removed by a reload: its {messages} cached messages are dropped",
                self.name
            );
        }
    }

    /// Counts what the state database held for this bridge at start (read back as needed).
    #[cfg(feature = "persistence")]
    pub(crate) fn restore(&self, messages: u64, bytes: u64) {
        self.cache().restore_spilled(messages, bytes);
    }

    /// Without a state database nothing ever waits on disk.
    #[cfg(not(feature = "persistence"))]
    async fn refill(&self) {}

    /// Reads back what waits on disk when the memory window runs low.
    #[cfg(feature = "persistence")]
    async fn refill(&self) {
        let Some((after, limit)) = self.cache().needs_refill() else {
            return;
        };
        let Some(store) = &self.store else {
            return;
        };
        let Ok(rows) = store.bridge_read(&self.name, after, limit).await else {
            // The writer could not read (it logged why): try again on the next turn.
            return;
        };
        let entries = rows
            .into_iter()
            .map(|c| {
                let (topic, qos, retain) =
                    (c.message.topic.clone(), c.message.qos, c.message.retain);
                let mut entry = Entry::new(topic, Arc::new(c.message), qos, retain);
                entry.at = c.accepted_at;
                entry.row = c.row;
                entry
            })
            .collect();
        self.cache().refilled(entries);
    }

    /// Forgets the rows of entries that are done: acknowledged upstream, or dropped.
    fn forget<'e>(&self, entries: impl IntoIterator<Item = &'e Entry>) {
        if let Some(store) = &self.store {
            store.bridge_remove(entries.into_iter().map(|e| e.row).filter(|r| *r != 0));
        }
    }

    /// Counts and logs entries that will never go up; the first of each burst is logged, then
    /// every power of two.
    fn count_drops(&self, dropped: Vec<(Entry, DropReason)>) {
        self.forget(dropped.iter().map(|(e, _)| e));
        for (entry, why) in dropped {
            let total = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if total.is_power_of_two() {
                tracing::warn!(
                    bridge = %self.name,
                    topic = %entry.topic,
                    dropped_total = total,
                    "bridge {}: message not forwarded ({why})",
                    self.name
                );
            }
        }
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the link is.
    pub fn state(&self) -> LinkState {
        match self.state.load(Ordering::Relaxed) {
            1 => LinkState::Connected,
            2 => LinkState::BackingOff,
            _ => LinkState::Connecting,
        }
    }

    fn set_state(&self, state: LinkState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Why the last attempt or connection failed ("" when none has).
    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_last_error(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Messages in the cache (waiting or in flight) and their bytes.
    pub fn cached(&self) -> (usize, u64) {
        let c = self.cache();
        (c.len(), c.bytes())
    }
}

/// Builds the bridges of a config, caching in `store` if given. Validation has checked the
/// templates, so an error here means a config that skipped
/// [`crate::config::Config::validate`].
pub fn from_config(
    configs: &[BridgeConfig],
    store: Option<&Arc<Store>>,
) -> Result<Vec<Arc<Bridge>>, TemplateError> {
    configs
        .iter()
        .map(|c| Bridge::new(c.clone(), store.cloned()).map(Arc::new))
        .collect()
}
