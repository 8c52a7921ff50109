//! The client registry: one [`SessionHandle`] per client id, takeover of a session by a new
//! connection, and the timers that end sessions and publish delayed wills.
//!
//! A handle's `link` names the attached connection. It is only installed or removed with the
//! registry lock held, and a session is only ended (removed) when no link is installed, so a
//! reconnect and an expiry can never both win.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use super::Broker;
use crate::mqtt::ReasonCode;
use crate::session::{Session, SessionLimits};

/// Shared handle of one session: what the subscription tree points at and what publishers
/// enqueue into. The mutex guards plain data and is never held across `.await`.
pub(crate) struct SessionHandle {
    pub(crate) client_id: Arc<str>,
    state: Mutex<Session>,
    /// Wakes the attached connection task when messages were queued.
    pub(crate) wake: Notify,
    /// Read by shared-subscription selection without taking the state lock.
    online: AtomicBool,
    /// Bumped on every attach and detach: a timer armed at detach fires only if it matches.
    epoch: AtomicU64,
    link: Mutex<Option<Link>>,
}

/// Control of the connection attached to a session, held by the registry side.
pub(crate) struct Link {
    serial: u64,
    kick: oneshot::Sender<ReasonCode>,
    detached: oneshot::Receiver<()>,
}

/// What the connection task keeps: told when to leave, and says when it has left.
pub(crate) struct LinkEnd {
    /// Tells this connection's link apart from a successor's.
    pub(crate) serial: u64,
    pub(crate) kicked: oneshot::Receiver<ReasonCode>,
    pub(crate) detached: oneshot::Sender<()>,
}

fn link_pair() -> (Link, LinkEnd) {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let (kick, kicked) = oneshot::channel();
    let (detached_tx, detached_rx) = oneshot::channel();
    (
        Link {
            serial,
            kick,
            detached: detached_rx,
        },
        LinkEnd {
            serial,
            kicked,
            detached: detached_tx,
        },
    )
}

impl SessionHandle {
    fn new(client_id: Arc<str>, limits: SessionLimits) -> Self {
        SessionHandle {
            client_id,
            state: Mutex::new(Session::new(limits)),
            wake: Notify::new(),
            online: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            link: Mutex::new(None),
        }
    }

    /// Locks the session state. Poisoning is ignored: the state stays consistent between the
    /// short critical sections, and one panicking task must not take every publisher down.
    pub(crate) fn state(&self) -> MutexGuard<'_, Session> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while a connection is attached.
    pub(crate) fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    /// Marks the session attached or detached, returning the new epoch.
    pub(crate) fn set_online(&self, online: bool) -> u64 {
        self.online.store(online, Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// True if nothing attached or detached since `epoch`.
    pub(crate) fn epoch_is(&self, epoch: u64) -> bool {
        self.epoch.load(Ordering::Acquire) == epoch
    }

    fn link(&self) -> MutexGuard<'_, Option<Link>> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A subscriber in the topic tree: a session, compared by identity.
#[derive(Clone)]
pub(crate) struct SessionRef(pub(crate) Arc<SessionHandle>);

impl PartialEq for SessionRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SessionRef {}

impl Hash for SessionRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state);
    }
}

/// Every live session by client id. Touched on connect, disconnect and expiry, never on the
/// publish path.
#[derive(Default)]
pub(crate) struct SessionRegistry {
    sessions: Mutex<HashMap<Arc<str>, Arc<SessionHandle>>>,
}

/// Result of [`SessionRegistry::claim`].
pub(crate) enum Claim {
    /// The session is ours; `existed` says whether it was there before.
    Claimed {
        handle: Arc<SessionHandle>,
        end: LinkEnd,
        existed: bool,
    },
    /// Another connection holds it: kick it, wait for `Link::detached`, then claim again.
    Busy(Link),
}

impl SessionRegistry {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<SessionHandle>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of sessions, connected or not.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Takes the session of `client_id` for a new connection, creating it if needed, or hands
    /// back the link of the connection that holds it.
    pub(crate) fn claim(&self, client_id: &str, limits: SessionLimits) -> Claim {
        let mut map = self.lock();
        let (handle, existed) = match map.get(client_id) {
            Some(h) => (h.clone(), true),
            None => {
                let id: Arc<str> = Arc::from(client_id);
                let h = Arc::new(SessionHandle::new(id.clone(), limits));
                map.insert(id, h.clone());
                (h, false)
            }
        };
        let mut link = handle.link();
        if let Some(old) = link.take() {
            return Claim::Busy(old);
        }
        let (ours, end) = link_pair();
        *link = Some(ours);
        drop(link);
        Claim::Claimed {
            handle,
            end,
            existed,
        }
    }

    /// The connection with link `serial` is gone: removes its link unless a successor's is
    /// already installed. Called with the session already detached.
    pub(crate) fn release(&self, handle: &SessionHandle, serial: u64) {
        let _map = self.lock();
        let mut link = handle.link();
        if link.as_ref().is_some_and(|l| l.serial == serial) {
            link.take();
        }
    }

    /// Ends the session if it is still the registered one, detached, and unchanged since
    /// `epoch` (None: unconditionally, for clean start and expiry 0). Returns true if it ended.
    pub(crate) fn end(&self, handle: &Arc<SessionHandle>, epoch: Option<u64>) -> bool {
        let mut map = self.lock();
        let registered = map
            .get(&handle.client_id)
            .is_some_and(|h| Arc::ptr_eq(h, handle));
        if !registered || epoch.is_some_and(|e| !handle.epoch_is(e)) {
            return false;
        }
        if epoch.is_some() && handle.link().is_some() {
            return false;
        }
        map.remove(&handle.client_id);
        true
    }
}

impl Link {
    /// Tells the attached connection to leave with `reason` and waits until it has detached
    /// (bounded: a wedged task does not block the new connection forever).
    pub(crate) async fn take_over(self, reason: ReasonCode) {
        let _ = self.kick.send(reason);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.detached).await;
    }
}

/// Ends a session: its subscriptions leave the tree and a will still pending is published.
pub(crate) fn finish_session(broker: &Broker, handle: &Arc<SessionHandle>) {
    let (filters, will) = {
        let mut s = handle.state();
        let filters: Vec<String> = s.subscriptions.drain().map(|(f, _)| f).collect();
        (filters, s.pending_will.take())
    };
    let me = SessionRef(handle.clone());
    for f in filters {
        broker.subscriptions.unsubscribe(&f, &me);
    }
    if let Some(will) = will {
        super::publish::publish_will(broker, will);
    }
}

/// Arms the timers of a session that was just detached at `epoch`: the delayed will and the
/// session expiry. Both do nothing if the client came back in the meantime.
pub(crate) fn arm_timers(
    broker: &Arc<Broker>,
    handle: &Arc<SessionHandle>,
    epoch: u64,
    will_delay: Option<u32>,
    expiry: u32,
) {
    if let Some(delay) = will_delay.filter(|d| *d < expiry) {
        let (broker, handle) = (broker.clone(), handle.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(delay.into())).await;
            if handle.epoch_is(epoch) {
                let will = handle.state().pending_will.take();
                if let Some(will) = will {
                    super::publish::publish_will(&broker, will);
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
