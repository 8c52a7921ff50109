//! Who the subscription tree delivers to: a client's session, or a bridge that forwards what it
//! receives to an upstream broker. Both are compared by identity, so No Local keeps a session's
//! own messages from it and a bridge's downlinked messages from going back up.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

#[cfg(feature = "bridge")]
use crate::bridge::Bridge;

use super::registry::{SessionHandle, SessionRef};

/// A receiver in the subscription tree.
#[derive(Clone)]
pub(crate) enum Subscriber {
    /// A client's session, online or not.
    Session(Arc<SessionHandle>),
    /// A bridge's forwards.
    #[cfg(feature = "bridge")]
    Bridge(Arc<Bridge>),
}

impl Subscriber {
    /// The tree entry of `session`.
    pub(crate) fn session(session: &SessionRef) -> Self {
        Subscriber::Session(session.0.clone())
    }

    /// Whether a share group should prefer this member: an attached session, or a bridge
    /// (whose cache takes messages whether its upstream is there or not).
    pub(crate) fn is_online(&self) -> bool {
        match self {
            Subscriber::Session(s) => s.is_online(),
            #[cfg(feature = "bridge")]
            Subscriber::Bridge(_) => true,
        }
    }

    fn address(&self) -> *const () {
        match self {
            Subscriber::Session(s) => Arc::as_ptr(s).cast(),
            #[cfg(feature = "bridge")]
            Subscriber::Bridge(b) => Arc::as_ptr(b).cast(),
        }
    }
}

impl PartialEq for Subscriber {
    fn eq(&self, other: &Self) -> bool {
        self.address() == other.address()
    }
}

impl Eq for Subscriber {}

impl Hash for Subscriber {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(self.address(), state);
    }
}

/// A connection compares its session with the tree's entries without building a [`Subscriber`]
/// for every message it publishes.
impl PartialEq<SessionRef> for Subscriber {
    fn eq(&self, other: &SessionRef) -> bool {
        self.address() == Arc::as_ptr(&other.0).cast()
    }
}
