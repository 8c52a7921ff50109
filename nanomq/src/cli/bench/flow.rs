//! `bench run`'s window: publishers may be at most so many deliveries ahead of the subscribers.
//!
//! Counted in deliveries, not messages: a message for 100 subscribers owes 100. Publishers
//! claim room before they send; subscribers return it as messages arrive, or as a gap in a
//! publisher's sequence shows that they never will, and wake the publishers that wait. A
//! message lost at the tail of a stream reveals no gap, so a publisher that finds no room and
//! sees nothing arrive for [`STALL`] writes off everything outstanding rather than wait forever.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::Notify;

/// How long publishers wait without any delivery before they write off what is outstanding.
pub(super) const STALL: Duration = Duration::from_millis(500);

/// Shared by every publisher and subscriber of a `bench run`.
#[derive(Debug)]
pub(super) struct Flow {
    /// Deliveries allowed to be outstanding.
    limit: u64,
    /// Deliveries owed for everything claimed so far.
    owed: AtomicU64,
    /// Deliveries arrived, known lost, or written off.
    settled: AtomicU64,
    /// Woken whenever `settled` moves.
    pub(super) settled_changed: Notify,
    /// Times publishers wrote off outstanding deliveries.
    stalls: AtomicU64,
}

impl Flow {
    /// A window of `limit` outstanding deliveries.
    pub(super) fn new(limit: u64) -> Flow {
        Flow {
            limit,
            owed: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            settled_changed: Notify::new(),
            stalls: AtomicU64::new(0),
        }
    }

    /// Claims room for up to `want` messages of `fanout` deliveries each; returns how many
    /// messages the caller may send now (0 when the window is full). A message with no
    /// subscriber (`fanout` 0) needs no room.
    pub(super) fn claim(&self, want: u64, fanout: u64) -> u64 {
        if fanout == 0 {
            return want;
        }
        let mut owed = self.owed.load(Relaxed);
        loop {
            let outstanding = owed.saturating_sub(self.settled.load(Relaxed));
            let room = self.limit.saturating_sub(outstanding) / fanout;
            let n = want.min(room);
            if n == 0 {
                return 0;
            }
            match self
                .owed
                .compare_exchange_weak(owed, owed + n * fanout, Relaxed, Relaxed)
            {
                Ok(_) => return n,
                Err(now) => owed = now,
            }
        }
    }

    /// Returns room for `n` deliveries that arrived or will never arrive, and wakes waiting
    /// publishers.
    pub(super) fn settle(&self, n: u64) {
        if n > 0 {
            self.settled.fetch_add(n, Relaxed);
            self.settled_changed.notify_waiters();
        }
    }

    /// Deliveries settled so far; a waiting publisher compares it to see whether anything moved.
    pub(super) fn settled(&self) -> u64 {
        self.settled.load(Relaxed)
    }

    /// Writes off everything outstanding (see the module comment).
    pub(super) fn write_off(&self) {
        let owed = self.owed.load(Relaxed);
        if self.settled.fetch_max(owed, Relaxed) < owed {
            self.stalls.fetch_add(1, Relaxed);
            self.settled_changed.notify_waiters();
        }
    }

    /// Times outstanding deliveries were written off; non-zero means messages went missing at
    /// the tail of a stream (or the broker stalled for [`STALL`]).
    pub(super) fn stalls(&self) -> u64 {
        self.stalls.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_stop_at_the_limit_and_resume_when_settled() {
        let flow = Flow::new(10);
        assert_eq!(flow.claim(4, 1), 4);
        assert_eq!(flow.claim(100, 1), 6);
        assert_eq!(flow.claim(1, 1), 0);
        flow.settle(3);
        assert_eq!(flow.claim(100, 1), 3);
        assert_eq!(flow.claim(5, 0), 5, "no subscriber, no room needed");
    }

    #[test]
    fn fan_out_counts_deliveries() {
        let flow = Flow::new(3 * 100);
        assert_eq!(flow.claim(10, 100), 3);
        flow.settle(99);
        assert_eq!(flow.claim(10, 100), 0, "one whole message must be settled");
        flow.settle(1);
        assert_eq!(flow.claim(10, 100), 1);
    }

    #[tokio::test]
    async fn settling_wakes_waiters_and_write_off_frees_everything() {
        let flow = std::sync::Arc::new(Flow::new(2));
        assert_eq!(flow.claim(2, 1), 2);
        let waiter = tokio::spawn({
            let flow = flow.clone();
            async move {
                loop {
                    // Registered before the check, so a settle in between is not missed.
                    let settled = flow.settled_changed.notified();
                    let n = flow.claim(2, 1);
                    if n > 0 {
                        return n;
                    }
                    settled.await;
                }
            }
        });
        tokio::task::yield_now().await;
        flow.settle(1);
        assert_eq!(waiter.await.unwrap(), 1);
        assert_eq!(flow.claim(1, 1), 0);
        flow.write_off();
        assert_eq!((flow.stalls(), flow.settled()), (1, 3));
        flow.write_off();
        assert_eq!(flow.stalls(), 1, "nothing outstanding, nothing written off");
        assert_eq!(flow.claim(5, 1), 2);
    }
}
