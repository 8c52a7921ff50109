//! The bridges' caches in the state database: every QoS 1/2 message a bridge accepted, until
//! its upstream acknowledged it, so a restart or a crash loses none of them.
//!
//! Rows are appended in the order the bridge took the messages (under its cache lock), so the
//! row id is the send order. A bridge keeps only a window of its cache in memory: the rest is
//! read back in row order as the window empties, through the writer thread, which holds the
//! database exclusively. A message acknowledged before its row was
//! committed never reaches the disk: the writer drops an append and its removal met in one
//! commit, which keeps a bridge whose upstream keeps up from writing at all.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::oneshot;

use super::schema::unix_ms;
use super::{CachedForward, Change, Store, Ticket};
use crate::mqtt::QoS;
use crate::session::Message;

impl Store {
    /// Stores a message `bridge` accepted, as it goes up (`topic`, `qos`, `retain`). Returns its
    /// row, to remove it by, and the ticket an acknowledgement that promises it waits for.
    pub fn bridge_append(
        &self,
        bridge: &Arc<str>,
        topic: &Arc<str>,
        qos: QoS,
        retain: bool,
        message: &Arc<Message>,
    ) -> (u64, Ticket) {
        let row = self.shared.next_bridge_row.fetch_add(1, Ordering::Relaxed);
        let ticket = self.append([Change::BridgeAppend {
            bridge: bridge.clone(),
            row,
            topic: topic.clone(),
            qos,
            retain,
            message: message.clone(),
            accepted_ms: unix_ms(SystemTime::now()),
        }]);
        (row, ticket)
    }

    /// Reads back up to `limit` rows of `bridge` after row `after`, in row order. The writer
    /// thread answers (it holds the database) once everything appended before is committed.
    pub fn bridge_read(
        &self,
        bridge: &Arc<str>,
        after: u64,
        limit: usize,
    ) -> oneshot::Receiver<Vec<CachedForward>> {
        let (reply, answer) = oneshot::channel();
        self.append([Change::BridgeRead {
            bridge: bridge.clone(),
            after,
            limit,
            reply,
        }]);
        answer
    }

    /// Deletes every row of a bridge that is no longer configured.
    pub fn bridge_forget(&self, bridge: &str) {
        self.append([Change::BridgeForget {
            bridge: Arc::from(bridge),
        }]);
    }

    /// Removes cached rows: acknowledged by the upstream, or dropped.
    pub fn bridge_remove(&self, rows: impl IntoIterator<Item = u64>) {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_some() {
            self.append(rows.map(|row| Change::BridgeRemove { row }));
        }
    }
}
