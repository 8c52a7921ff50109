//! The client registry: one [`SessionHandle`] per client id, takeover of a session by a new
//! connection, and the timers that end sessions and publish delayed wills.
//!
//! A handle's `link` names the attached connection. It is only installed or removed with the
//! registry lock held, and a session is only ended (removed) when no link is installed, so a
//! reconnect and an expiry can never both win.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU32, Ordering};

use portable_atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use tokio::sync::Notify;

use super::Broker;
use crate::mqtt::ReasonCode;
use crate::session::{Session, SessionLimits};

/// Shared handle of one session: what the subscription tree points at and what publishers
/// enqueue into. The mutexes guard plain data and are never held across `.await`.
pub(crate) struct SessionHandle {
    pub(crate) client_id: Arc<str>,
    state: Mutex<Session>,
    /// The attached connection: its serial, a pending kick and its waker.
    control: Mutex<Control>,
    /// Uptime second by which the attached client must have sent a packet; 0 when keepalive
    /// is off or nothing is attached. Written on every read, checked by the keepalive sweeper.
    keepalive_deadline: AtomicU32,
    /// Bumped on every attach and detach: a timer armed at detach fires only if it matches.
    /// Odd while a connection is attached, so shared-subscription selection reads "online"
    /// without the state lock (and every session is a word smaller than with a flag beside it).
    epoch: AtomicU32,
}

/// How the registry and publishers reach the connection attached to a session. Kept inline in
/// the handle (no channels) because every idle connection pays for it.
#[derive(Default)]
struct Control {
    /// Serial of the attached connection, if any.
    link: Option<LinkSerial>,
    /// Set to make the attached connection leave with this reason.
    kick: Option<ReasonCode>,
    /// Wakes the attached connection's task: new messages queued, or a kick.
    waker: Option<Waker>,
}

/// What a connection polls on each turn: whether it must leave.
pub(crate) enum Signal {
    /// Carry on.
    Stay,
    /// Leave with this reason (takeover or shutdown).
    Leave(ReasonCode),
}

/// Tells a connection's link apart from a successor's. Never zero, so an absent link costs
/// no extra bytes in every session.
pub(crate) type LinkSerial = NonZeroU64;

fn next_serial() -> LinkSerial {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    LinkSerial::MIN.saturating_add(SERIAL.fetch_add(1, Ordering::Relaxed))
}

impl SessionHandle {
    fn new(client_id: Arc<str>, session: Session) -> Self {
        SessionHandle {
            client_id,
            state: Mutex::new(session),
            control: Mutex::new(Control::default()),
            keepalive_deadline: AtomicU32::new(0),
            epoch: AtomicU32::new(0),
        }
    }

    /// Locks the session state. Poisoning is ignored: the state stays consistent between the
    /// short critical sections, and one panicking task must not take every publisher down.
    pub(crate) fn state(&self) -> MutexGuard<'_, Session> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the attached connection (messages were queued). Wakes coalesce: the connection
    /// registers again each time it waits.
    pub(crate) fn wake(&self) {
        let waker = self.control().waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Called by connection `serial` each time it polls: registers its waker, then reports
    /// a kick. Registering first means a message queued after the connection looked at the
    /// queue always wakes it.
    pub(crate) fn poll_signal(&self, serial: LinkSerial, waker: &Waker) -> Signal {
        let mut c = self.control();
        if c.link != Some(serial) {
            return Signal::Leave(ReasonCode::SESSION_TAKEN_OVER);
        }
        if let Some(reason) = c.kick {
            return Signal::Leave(reason);
        }
        match &mut c.waker {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
        Signal::Stay
    }

    /// Tells connection `serial`, if still attached, to leave with `reason`.
    fn kick(&self, serial: LinkSerial, reason: ReasonCode) {
        let waker = {
            let mut c = self.control();
            if c.link != Some(serial) {
                return;
            }
            c.kick.get_or_insert(reason);
            c.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Sets the keepalive deadline (see the field); 0 turns the check off.
    pub(crate) fn set_keepalive_deadline(&self, uptime_secs: u32) {
        self.keepalive_deadline
            .store(uptime_secs, Ordering::Relaxed);
    }

    /// True while a connection is attached.
    pub(crate) fn is_online(&self) -> bool {
        self.epoch.load(Ordering::Relaxed) & 1 == 1
    }

    /// Marks the session attached or detached, returning the new epoch. The epoch always
    /// moves, by 1 or 2 so that its parity says `online`. It wraps after 2^31 reconnects, far
    /// beyond any timer's life.
    pub(crate) fn set_online(&self, online: bool) -> u32 {
        let step = |e: u32| {
            let was_online = e & 1 == 1;
            Some(e.wrapping_add(if was_online == online { 2 } else { 1 }))
        };
        match self
            .epoch
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, step)
        {
            Ok(prev) | Err(prev) => step(prev).unwrap_or(prev),
        }
    }

    /// True if nothing attached or detached since `epoch`.
    pub(crate) fn epoch_is(&self, epoch: u32) -> bool {
        self.epoch.load(Ordering::Acquire) == epoch
    }
}

/// A connection's session; the tree knows it as a [`super::subscriber::Subscriber`].
#[derive(Clone)]
pub(crate) struct SessionRef(pub(crate) Arc<SessionHandle>);

/// Every live session by client id. Touched on connect, disconnect and expiry, never on the
/// publish path. Split into shards by client id, so that a connect waits only for its own shard
/// and a full pass (the keepalive sweep, shutdown) never holds one lock over every session.
pub(crate) struct SessionRegistry {
    shards: [Mutex<HashSet<ByClientId>>; SHARDS],
    /// Picks a client id's shard.
    shard_hasher: RandomState,
    /// Told whenever a connection releases its session, so successors waiting to take one over
    /// look again. Takeovers are rare: one for all sessions keeps every session smaller.
    released: Notify,
}

/// A session keyed by its own client id, so the registry stores one pointer per session.
struct ByClientId(Arc<SessionHandle>);

impl Borrow<str> for ByClientId {
    fn borrow(&self) -> &str {
        &self.0.client_id
    }
}

impl PartialEq for ByClientId {
    fn eq(&self, other: &Self) -> bool {
        self.0.client_id == other.0.client_id
    }
}

impl Eq for ByClientId {}

impl Hash for ByClientId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must hash exactly as `str` does, for lookups by `&str`.
        self.0.client_id.hash(state);
    }
}

/// Result of [`SessionRegistry::claim`].
pub(crate) enum Claim {
    /// The session is ours under link `serial`; `existed` says whether it was there before.
    Claimed {
        handle: Arc<SessionHandle>,
        serial: LinkSerial,
        existed: bool,
    },
    /// Another connection holds it: kick it, wait for it to leave, then claim again.
    Busy(Takeover),
}

/// The connection holding a session that a new connection wants.
pub(crate) struct Takeover {
    handle: Arc<SessionHandle>,
    serial: LinkSerial,
}

/// Shards of the registry; a power of two.
const SHARDS: usize = 64;

impl Default for SessionRegistry {
    fn default() -> Self {
        SessionRegistry {
            shards: std::array::from_fn(|_| Mutex::default()),
            shard_hasher: RandomState::new(),
            released: Notify::new(),
        }
    }
}

impl SessionRegistry {
    /// Locks the shard of `client_id`.
    fn lock(&self, client_id: &str) -> MutexGuard<'_, HashSet<ByClientId>> {
        let shard = self.shard_hasher.hash_one(client_id) as usize % SHARDS;
        lock_shard(&self.shards[shard])
    }

    /// Number of sessions, connected or not.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock_shard(s).len()).sum()
    }

    /// Takes the session of `client_id` for a new connection, creating it if needed, or hands
    /// back the link of the connection that holds it.
    pub(crate) fn claim(&self, client_id: &str, limits: SessionLimits) -> Claim {
        let mut map = self.lock(client_id);
        let (handle, existed) = match map.get(client_id) {
            Some(h) => (h.0.clone(), true),
            None => {
                let h = Arc::new(SessionHandle::new(
                    Arc::from(client_id),
                    Session::new(limits),
                ));
                map.insert(ByClientId(h.clone()));
                (h, false)
            }
        };
        let mut c = handle.control();
        if let Some(serial) = c.link {
            drop(c);
            return Claim::Busy(Takeover { handle, serial });
        }
        let serial = next_serial();
        *c = Control {
            link: Some(serial),
            ..Control::default()
        };
        drop(c);
        Claim::Claimed {
            handle,
            serial,
            existed,
        }
    }

    #[cfg(feature = "persistence")]
    /// Adds a session read back from the state database, detached. A session already
    /// registered under the id (none at start) is replaced.
    pub(crate) fn restore(&self, client_id: &str, session: Session) -> Arc<SessionHandle> {
        let handle = Arc::new(SessionHandle::new(Arc::from(client_id), session));
        self.lock(client_id).replace(ByClientId(handle.clone()));
        handle
    }

    /// The connection with link `serial` is gone: removes its link and tells a successor
    /// waiting to take over. Called with the session already detached.
    pub(crate) fn release(&self, handle: &SessionHandle, serial: LinkSerial) {
        {
            let _map = self.lock(&handle.client_id);
            let mut c = handle.control();
            if c.link == Some(serial) {
                *c = Control::default();
            }
        }
        self.released.notify_waiters();
    }

    /// Tells every attached connection whose keepalive deadline is before `now` (uptime
    /// seconds) to leave with `reason`. Each shard is locked only to find its late sessions.
    pub(crate) fn kick_expired(&self, now: u32, reason: ReasonCode) {
        let expired = |h: &SessionHandle| {
            let d = h.keepalive_deadline.load(Ordering::Relaxed);
            d != 0 && d <= now
        };
        let mut late: Vec<Arc<SessionHandle>> = Vec::new();
        for shard in &self.shards {
            let map = lock_shard(shard);
            late.extend(
                map.iter()
                    .filter(|ByClientId(h)| expired(h))
                    .map(|ByClientId(h)| h.clone()),
            );
        }
        for handle in late {
            let serial = handle.control().link;
            // Checked again: a packet may have arrived since.
            if let (Some(serial), true) = (serial, expired(&handle)) {
                tracing::debug!(client_id = %handle.client_id, "keepalive timeout");
                handle.kick(serial, reason);
            }
        }
    }

    /// Tells every attached connection to leave with `reason` (shutdown).
    pub(crate) fn kick_all(&self, reason: ReasonCode) {
        for shard in &self.shards {
            for ByClientId(handle) in lock_shard(shard).iter() {
                let serial = handle.control().link;
                if let Some(serial) = serial {
                    handle.kick(serial, reason);
                }
            }
        }
    }

    /// Ends the session if it is still the registered one, detached, and unchanged since
    /// `epoch` (None: unconditionally, for clean start and expiry 0). Returns true if it ended.
    pub(crate) fn end(&self, handle: &Arc<SessionHandle>, epoch: Option<u32>) -> bool {
        let mut map = self.lock(&handle.client_id);
        let registered = map
            .get(&*handle.client_id)
            .is_some_and(|h| Arc::ptr_eq(&h.0, handle));
        if !registered || epoch.is_some_and(|e| !handle.epoch_is(e)) {
            return false;
        }
        if epoch.is_some() && handle.control().link.is_some() {
            return false;
        }
        map.remove(&*handle.client_id);
        true
    }
}

/// Locks one shard. Poisoning is ignored, as for session state.
fn lock_shard(shard: &Mutex<HashSet<ByClientId>>) -> MutexGuard<'_, HashSet<ByClientId>> {
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

impl Takeover {
    /// Tells the attached connection to leave with `reason` and waits until it has released
    /// the session (bounded: a wedged task does not block the new connection forever).
    pub(crate) async fn take_over(self, registry: &SessionRegistry, reason: ReasonCode) {
        let released = async {
            loop {
                let notified = registry.released.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.handle.control().link != Some(self.serial) {
                    return;
                }
                self.handle.kick(self.serial, reason);
                notified.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), released).await;
    }
}

/// Ends a session: its subscriptions leave the tree and a will still pending is published.
pub(crate) fn finish_session(broker: &Broker, handle: &Arc<SessionHandle>) {
    let (filters, will) = {
        let mut s = handle.state();
        if let (Some(store), true) = (&broker.store, s.is_journaled()) {
            store.end_session(&handle.client_id);
            s.set_journaled(false);
        }
        let filters = std::mem::take(&mut s.subscriptions);
        (filters, s.take_pending_will())
    };
    let me = super::subscriber::Subscriber::Session(handle.clone());
    for f in filters.into_keys() {
        broker.subscriptions.unsubscribe(&f, &me);
    }
    if let Some(will) = will {
        super::publish::publish_will(broker, *will);
    }
}

/// Arms the timers of a session that was just detached at `epoch`: the delayed will and the
/// session expiry. Both do nothing if the client came back in the meantime.
pub(crate) fn arm_timers(
    broker: &Arc<Broker>,
    handle: &Arc<SessionHandle>,
    epoch: u32,
    will_delay: Option<u32>,
    expiry: u32,
) {
    if let Some(delay) = will_delay.filter(|d| *d < expiry) {
        let (broker, handle) = (broker.clone(), handle.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(delay.into())).await;
            if handle.epoch_is(epoch) {
                let will = handle.state().take_pending_will();
                if let Some(will) = will {
                    super::publish::publish_will(&broker, *will);
                }
            }
        });
    }
    if expiry != u32::MAX {
        let (broker, handle) = (broker.clone(), handle.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(expiry.into())).await;
            if broker.sessions.end(&handle, Some(epoch)) {
                tracing::debug!(client_id = %handle.client_id, "session expired");
                finish_session(&broker, &handle);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::FullPolicy;

    #[test]
    fn epoch_parity_says_online_and_every_change_moves_it() {
        let limits = SessionLimits {
            max_queued: 1,
            full_policy: FullPolicy::DropNew,
            max_inflight: 1,
            max_outgoing_alias: 0,
        };
        let h = SessionHandle::new(Arc::from("c"), Session::new(limits));
        assert!(!h.is_online());
        let e1 = h.set_online(true);
        assert!(h.is_online() && h.epoch_is(e1));
        let e2 = h.set_online(true);
        assert!(
            h.is_online() && e2 != e1,
            "a repeated attach still invalidates timers"
        );
        let e3 = h.set_online(false);
        assert!(!h.is_online() && h.epoch_is(e3) && !h.epoch_is(e2));
        let e4 = h.set_online(false);
        assert!(!h.is_online() && e4 != e3);
    }
}

#[cfg(test)]
mod memory_tests {
    /// Every session, online or not, holds one handle in an `Arc`: at 248 bytes the `Arc`'s
    /// block stays in glibc's 272-byte chunk, which the 1 KiB per connection budget counts on.
    #[test]
    fn session_handle_stays_small() {
        let size = std::mem::size_of::<super::SessionHandle>();
        assert!(size <= 248, "SessionHandle is {size} bytes");
    }
}
