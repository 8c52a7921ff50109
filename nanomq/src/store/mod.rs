//! The state database: persistent sessions (subscriptions, queued and in-flight QoS 1/2
//! messages, inbound QoS 2 packet ids) and retained messages, in SQLite. Nothing else speaks SQL
//! for broker state.
//!
//! # Writes
//!
//! The broker never waits for SQLite on its own threads. Changes are appended to one pending
//! list under a short mutex; one writer thread takes the whole list, applies it in one
//! transaction and commits (group commit). Every change gets a sequence number (a [`Ticket`]);
//! the writer publishes the last one committed, so a connection that must not acknowledge a
//! message before it is on disk (`sync = "always"`) holds its PUBACK until its ticket is
//! durable, and is woken then. With `batch` and `off` the writer commits once per window and
//! nothing waits, unless more than [`MAX_BACKLOG`] changes are pending.
//!
//! # Order
//!
//! Changes are applied in the order they were appended. A session's changes are appended with
//! its state locked, so the database follows each session exactly; commits are prefixes of that
//! order, so a message's row is never durable before the subscription that routed it.
//!
//! # Bounds
//!
//! Stored messages and bytes are counted per session and in total when a message is admitted,
//! and given back when the writer deletes the rows. A message over a bound is not queued for the
//! session (the caller counts and logs the drop), so what was acknowledged is always stored.

mod bridge;
mod load;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use portable_atomic::AtomicU64;

use crate::config::{PersistenceConfig, SyncMode};
use crate::mqtt::QoS;
use crate::session::{Message, Outgoing, SavedSession, StoreEvent, SubscriptionEntry};

/// The database file inside the state directory.
pub const DATABASE_FILE: &str = "nanomq.db";

/// Changes waiting for the writer beyond which acknowledgements wait for the commit even with
/// `sync = "batch"` or `"off"`: publishers faster than the disk (a slow SD card, a burst into
/// a bridge's cache) are then slowed to its pace instead of growing the queue in memory
/// without bound. A few megabytes of queued changes; a commit takes well under a second.
pub const MAX_BACKLOG: u64 = 10_000;

/// Why the state database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory cannot be created or used.
    #[error("state directory {}: {error}", path.display())]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The operating system's reason.
        error: std::io::Error,
    },
    /// The file is damaged or not a database; `--recover-store` moves it aside.
    #[error(
        "state database {} is corrupt or unreadable ({reason}); nothing was changed. Start with \
         --recover-store to move it aside (as {}.corrupt-<time>) and start with empty state",
        path.display(), path.display()
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite or the reader found.
        reason: String,
    },
    /// Another process holds the database.
    #[error("state database {} is in use by another process (another nanomq?)", path.display())]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// Written by a newer nanomq whose layout this one does not know.
    #[error(
        "state database {} has schema version {found}; this nanomq knows {known} and older",
        path.display()
    )]
    Newer {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// Any other SQLite failure (a full disk, an I/O error).
    #[error("state database {}: {error}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's reason.
        error: rusqlite::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the state database writer: {0}")]
    Thread(std::io::Error),
}

/// How [`Store::open`] behaves beyond the config.
pub struct OpenOptions {
    /// Move a corrupt database aside and start empty, instead of refusing to start.
    pub recover: bool,
    /// Called by the writer thread whenever it makes progress, and at least every
    /// `beat_every` when idle: the watchdog's evidence that the store is alive.
    pub beat: Box<dyn Fn() + Send>,
    /// See `beat`.
    pub beat_every: Duration,
    /// Test hook: the writer stops working (without exiting) after this long.
    pub stall_after: Option<Duration>,
}

/// An open database and what it held, for [`crate::broker::serve`].
pub struct Opened {
    /// The database, its writer thread running.
    pub store: Store,
    /// What it held at start.
    pub restored: Restored,
}

/// What the database held at start, to put back into the broker.
#[derive(Debug, Default)]
pub struct Restored {
    /// Retained messages, expired ones left out.
    pub retained: Vec<Arc<Message>>,
    /// Persistent sessions by client id, detached, their expiry already reduced by the time
    /// they spent detached before the restart.
    pub sessions: Vec<(String, SavedSession)>,
    /// Sessions found expired and deleted.
    pub expired_sessions: usize,
    /// What each bridge held for its upstream: name, messages, and topic plus payload bytes;
    /// the messages stay in the database until the bridge reads them ([`Store::bridge_read`]).
    pub bridge_cache: Vec<(String, u64, u64)>,
}

/// A message a bridge holds for its upstream, read back from the database.
#[derive(Debug)]
pub struct CachedForward {
    /// Its row, to remove it by once the upstream acknowledges it.
    pub row: u64,
    /// The message as it goes up: remote topic, forwarded QoS and RETAIN.
    pub message: Message,
    /// When the bridge first accepted it (for `max_age_secs`).
    pub accepted_at: tokio::time::Instant,
}

/// See [`Store::unit`].
pub struct Unit<'a>(#[allow(dead_code)] RwLockReadGuard<'a, ()>);

/// A change's place in the write order: durable once the writer has committed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// Handle of the state database, shared by every connection task.
pub struct Store {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
}

/// What the broker's threads and the writer thread share.
struct Shared {
    pending: Mutex<Pending>,
    /// Held shared while a group of changes that must commit together is appended (a QoS 2
    /// message and its inbound packet id), exclusively by the writer while it takes the
    /// pending changes: no commit splits such a group.
    units: RwLock<()>,
    /// Wakes the writer: changes appended, or closing.
    work: Condvar,
    /// The last ticket committed.
    durable: AtomicU64,
    /// The last ticket appended (`Pending::last`), readable without the pending lock.
    appended: AtomicU64,
    /// Connections waiting for a ticket to become durable.
    waiters: Mutex<Vec<Waker>>,
    /// The next message row id.
    next_message: AtomicU64,
    /// The next bridge cache row id.
    next_bridge_row: AtomicU64,
    config: PersistenceConfig,
}

/// Changes not yet taken by the writer, and the stored totals the bounds are checked against.
#[derive(Default)]
struct Pending {
    changes: Vec<Change>,
    /// Ticket of the last change appended.
    last: u64,
    closing: bool,
    usage: HashMap<Arc<str>, Usage>,
    total: Usage,
}

/// Messages and payload bytes stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Usage {
    messages: u64,
    bytes: u64,
}

/// One change for the writer.
enum Change {
    Retain {
        topic: Arc<str>,
        message: Option<Arc<Message>>,
    },
    PutSession {
        client: Arc<str>,
        expiry: u32,
        owner: Option<Box<str>>,
    },
    Detached {
        client: Arc<str>,
        expiry: u32,
        at_ms: i64,
    },
    EndSession {
        client: Arc<str>,
    },
    Subscribe {
        client: Arc<str>,
        filter: Box<str>,
        entry: SubscriptionEntry,
    },
    Unsubscribe {
        client: Arc<str>,
        filter: Box<str>,
    },
    Enqueue {
        client: Arc<str>,
        message: Arc<Message>,
        id: u64,
        qos: QoS,
        retain: bool,
        subscription_identifiers: Vec<u32>,
        bytes: u64,
    },
    Event {
        client: Arc<str>,
        event: StoreEvent,
    },
    BridgeAppend {
        bridge: Arc<str>,
        row: u64,
        topic: Arc<str>,
        qos: QoS,
        retain: bool,
        message: Arc<Message>,
        accepted_ms: i64,
    },
    BridgeRemove {
        row: u64,
    },
    BridgeForget {
        bridge: Arc<str>,
    },
    /// Answered by the writer after the commit that holds everything appended before it.
    BridgeRead {
        bridge: Arc<str>,
        after: u64,
        limit: usize,
        reply: tokio::sync::oneshot::Sender<Vec<CachedForward>>,
    },
}

impl Store {
    /// Opens (or creates) the database in `config.dir`, checks it, reads back what it holds
    /// and starts the writer thread. A damaged file is an error unless `options.recover` is
    /// set: the broker never silently starts empty.
    pub fn open(
        config: &PersistenceConfig,
        dir: &Path,
        options: OpenOptions,
    ) -> Result<Opened, StoreError> {
        let path = dir.join(DATABASE_FILE);
        let (conn, restored, usage) = load::open(dir, &path, config.sync, options.recover)?;
        let next_message = load::next_message_id(&conn, &path)?;
        let next_bridge_row = load::next_bridge_row(&conn, &path)?;
        let total = usage.values().fold(Usage::default(), |t, u| Usage {
            messages: t.messages + u.messages,
            bytes: t.bytes + u.bytes,
        });
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                usage,
                total,
                ..Pending::default()
            }),
            work: Condvar::new(),
            units: RwLock::new(()),
            durable: AtomicU64::new(0),
            appended: AtomicU64::new(0),
            waiters: Mutex::new(Vec::new()),
            next_message: AtomicU64::new(next_message),
            next_bridge_row: AtomicU64::new(next_bridge_row),
            config: config.clone(),
        });
        let thread = {
            let shared = shared.clone();
            let path = path.clone();
            std::thread::Builder::new()
                .name("nanomq-store".into())
                .spawn(move || writer::run(shared, conn, path, options))
                .map_err(StoreError::Thread)?
        };
        let store = Store {
            shared,
            writer: Mutex::new(Some(thread)),
            path,
        };
        Ok(Opened { store, restored })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when acknowledgements of stored messages wait for the commit: always with
    /// `sync = "always"`, and with `batch` or `off` while more than [`MAX_BACKLOG`] changes wait
    /// for the writer.
    pub fn acks_wait(&self) -> bool {
        self.shared.config.sync == SyncMode::Always || self.backlog() > MAX_BACKLOG
    }

    /// Changes appended and not yet committed.
    fn backlog(&self) -> u64 {
        let appended = self.shared.appended.load(Ordering::Relaxed);
        appended.saturating_sub(self.shared.durable.load(Ordering::Acquire))
    }

    /// Appends changes under the pending lock; returns the last one's ticket.
    fn append(&self, changes: impl IntoIterator<Item = Change>) -> Ticket {
        let mut p = self.shared.pending();
        for c in changes {
            p.changes.push(c);
            p.last += 1;
        }
        self.hand_to_writer(p)
    }

    /// Ends an append: records the last ticket for the backlog check, releases the pending
    /// lock, wakes the writer, and returns the ticket.
    fn hand_to_writer(&self, p: MutexGuard<'_, Pending>) -> Ticket {
        self.shared.appended.store(p.last, Ordering::Relaxed);
        let ticket = Ticket(p.last);
        drop(p);
        self.shared.work.notify_one();
        ticket
    }

    /// Keeps the changes appended while the guard lives in one commit. Take it before any
    /// session lock, and hold it briefly: the writer waits for it.
    pub fn unit(&self) -> Unit<'_> {
        Unit(self.shared.units.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Stores (or, with None, clears) the retained message of `topic`.
    pub fn retain(&self, topic: &Arc<str>, message: Option<&Arc<Message>>) -> Ticket {
        self.append([Change::Retain {
            topic: topic.clone(),
            message: message.cloned(),
        }])
    }

    /// Records a persistent session (new, or resumed by a connection), online from now on.
    pub fn put_session(&self, client: &Arc<str>, expiry: u32, owner: Option<&str>) -> Ticket {
        self.append([Change::PutSession {
            client: client.clone(),
            expiry,
            owner: owner.map(Box::from),
        }])
    }

    /// Records that a persistent session lost its connection now, with the expiry it has left.
    pub fn detached(&self, client: &Arc<str>, expiry: u32) -> Ticket {
        self.append([Change::Detached {
            client: client.clone(),
            expiry,
            at_ms: schema::unix_ms(std::time::SystemTime::now()),
        }])
    }

    /// Deletes a session and everything stored for it.
    pub fn end_session(&self, client: &Arc<str>) -> Ticket {
        self.append([Change::EndSession {
            client: client.clone(),
        }])
    }

    /// Records a subscription of a persistent session.
    pub fn subscribe(&self, client: &Arc<str>, filter: &str, entry: SubscriptionEntry) -> Ticket {
        self.append([Change::Subscribe {
            client: client.clone(),
            filter: filter.into(),
            entry,
        }])
    }

    /// Forgets a subscription of a persistent session.
    pub fn unsubscribe(&self, client: &Arc<str>, filter: &str) -> Ticket {
        self.append([Change::Unsubscribe {
            client: client.clone(),
            filter: filter.into(),
        }])
    }

    /// Stores a QoS 1/2 message queued for a persistent session, if the bounds allow it.
    /// Returns None, storing nothing, when the session's or the total bound is reached: the
    /// caller must then not queue it (what is queued for a persistent session is stored).
    pub fn enqueue(&self, client: &Arc<str>, item: &Outgoing) -> Option<Ticket> {
        let message = &item.message;
        let bytes = (message.topic.len() + message.payload.len()) as u64;
        let id = message
            .store_id
            .get_or_assign(|| self.shared.next_message.fetch_add(1, Ordering::Relaxed));
        let c = &self.shared.config;
        let mut p = self.shared.pending();
        let session = p.usage.get(client).copied().unwrap_or_default();
        if p.total.messages >= c.max_messages
            || p.total.bytes + bytes > c.max_bytes
            || session.bytes + bytes > c.max_session_bytes
        {
            return None;
        }
        p.total.messages += 1;
        p.total.bytes += bytes;
        let u = p.usage.entry(client.clone()).or_default();
        u.messages += 1;
        u.bytes += bytes;
        p.changes.push(Change::Enqueue {
            client: client.clone(),
            message: message.clone(),
            id,
            qos: item.qos,
            retain: item.retain,
            subscription_identifiers: item.subscription_identifiers.clone(),
            bytes,
        });
        p.last += 1;
        Some(self.hand_to_writer(p))
    }

    /// Hands over what a session journaled (see [`StoreEvent`]). Returns the last ticket, or
    /// None when there was nothing.
    pub fn journal(&self, client: &Arc<str>, events: Vec<StoreEvent>) -> Option<Ticket> {
        if events.is_empty() {
            return None;
        }
        Some(self.append(events.into_iter().map(|event| Change::Event {
            client: client.clone(),
            event,
        })))
    }

    /// True once `ticket` is committed; otherwise `cx` is woken when the next commit lands.
    pub fn poll_durable(&self, ticket: Ticket, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_durable(ticket) {
            return Poll::Ready(());
        }
        lock(&self.shared.waiters).push(cx.waker().clone());
        // A commit between the check and the registration has already woken the others.
        if self.is_durable(ticket) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn is_durable(&self, ticket: Ticket) -> bool {
        self.shared.durable.load(Ordering::Acquire) >= ticket.0
    }

    /// Stored messages and payload bytes in total, for metrics and tests.
    pub fn usage(&self) -> (u64, u64) {
        let p = self.shared.pending();
        (p.total.messages, p.total.bytes)
    }

    /// Commits everything appended so far and stops the writer thread. Called once the last
    /// connection is gone; later changes are not written.
    pub fn close(&self) {
        self.shared.pending().closing = true;
        self.shared.work.notify_one();
        let thread = lock(&self.writer).take();
        if let Some(t) = thread {
            if t.join().is_err() {
                tracing::error!("the state database writer panicked");
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        lock(&self.pending)
    }

    /// The writer committed everything up to `ticket`: wake whoever waits.
    fn committed(&self, ticket: u64) {
        self.durable.store(ticket, Ordering::Release);
        let waiters = std::mem::take(&mut *lock(&self.waiters));
        for w in waiters {
            w.wake();
        }
    }

    /// The writer deleted stored messages of `client`.
    fn released(&self, client: &Arc<str>, freed: Usage) {
        if freed == Usage::default() {
            return;
        }
        let mut p = self.pending();
        p.total.messages = p.total.messages.saturating_sub(freed.messages);
        p.total.bytes = p.total.bytes.saturating_sub(freed.bytes);
        if let Some(u) = p.usage.get_mut(client) {
            u.messages = u.messages.saturating_sub(freed.messages);
            u.bytes = u.bytes.saturating_sub(freed.bytes);
            if *u == Usage::default() {
                p.usage.remove(client);
            }
        }
    }
}

/// Locks a mutex, ignoring poisoning: the guarded data stays consistent between the short
/// critical sections.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
