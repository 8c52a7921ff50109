//! `bench run`'s window: no subscriber is ever more than so many messages behind.
//!
//! Every subscriber has a lane: the messages sent to it, and those it received or knows are lost.
//! A publisher claims room in the lane of every subscriber its messages are for before it sends,
//! so the slowest of them governs it. Counting over all subscribers instead would let one of a
//! hundred fall far behind while the others keep up, until it overflows its queue in the broker
//! and the benchmark blames the broker for the generator's loss. Fan-in publishers share their
//! subscriber's lane; pairs each have their own.
//!
//! Subscribers return room as messages arrive, or as a gap in a publisher's sequence shows that
//! they never will, and wake the publishers that wait. A message lost at the tail of a stream
//! reveals no gap, so a publisher that finds no room and sees nothing arrive at its subscribers
//! for [`STALL`] writes off what is outstanding there rather than wait forever. A written-off
//! message that arrives after all returns its room twice, so after a stall a subscriber may fall
//! behind by up to the window plus what was written off.
//!
//! No locks: a subscriber settles with one add per read; a claim reads every lane it needs and
//! then reserves in each with a compare-and-swap. When another publisher took the room between
//! the two, the claim hands back what it reserved and tries again.

use std::sync::atomic::Ordering::Relaxed;

use portable_atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a blocked publisher waits without anything settling at its subscribers before it
/// writes off what is outstanding there.
pub(super) const STALL: Duration = Duration::from_millis(500);

/// Shared by every publisher and subscriber of a `bench run`.
#[derive(Debug)]
pub(super) struct Flow {
    /// Messages a subscriber may be behind.
    limit: u64,
    /// One per subscriber, by its index.
    lanes: Box<[Lane]>,
    /// Woken whenever room may have been freed.
    pub(super) freed: Notify,
    /// Times publishers wrote off outstanding messages.
    stalls: AtomicU64,
}

/// One subscriber's account. `settled` may pass `sent` (see the module comment).
#[derive(Debug, Default)]
struct Lane {
    /// Messages claimed for this subscriber.
    sent: AtomicU64,
    /// Messages it received, knows are lost, or that were written off.
    settled: AtomicU64,
}

impl Lane {
    /// Messages this subscriber is behind.
    fn behind(&self) -> u64 {
        self.sent
            .load(Relaxed)
            .saturating_sub(self.settled.load(Relaxed))
    }

    /// Reserves `n` messages if the subscriber stays at most `limit` behind.
    fn reserve(&self, n: u64, limit: u64) -> bool {
        self.sent
            .fetch_update(Relaxed, Relaxed, |sent| {
                let behind = sent.saturating_sub(self.settled.load(Relaxed));
                (behind + n <= limit).then_some(sent + n)
            })
            .is_ok()
    }
}

impl Flow {
    /// A window of `limit` messages for each of `subscribers` subscribers.
    pub(super) fn new(limit: u64, subscribers: usize) -> Flow {
        Flow {
            limit,
            lanes: (0..subscribers).map(|_| Lane::default()).collect(),
            freed: Notify::new(),
            stalls: AtomicU64::new(0),
        }
    }

    /// Claims room for up to `want` messages to each of `subscribers` (indices); returns how
    /// many the caller may send now, 0 when any of them is a window behind. A message for no
    /// subscriber needs no room.
    pub(super) fn claim(&self, subscribers: &[u32], want: u64) -> u64 {
        loop {
            let n = self.lanes(subscribers).fold(want, |n, lane| {
                n.min(self.limit.saturating_sub(lane.behind()))
            });
            if n == 0 {
                return 0;
            }
            let Some(taken) = self
                .lanes(subscribers)
                .position(|lane| !lane.reserve(n, self.limit))
            else {
                return n;
            };
            for lane in self.lanes(&subscribers[..taken]) {
                lane.sent.fetch_sub(n, Relaxed);
            }
            // Someone may have found the room handed back taken.
            self.freed.notify_waiters();
        }
    }

    /// Returns room for `n` messages that reached subscriber `subscriber` or never will, and
    /// wakes waiting publishers.
    pub(super) fn settle(&self, subscriber: u32, n: u64) {
        if n > 0 {
            self.lanes[subscriber as usize]
                .settled
                .fetch_add(n, Relaxed);
            self.freed.notify_waiters();
        }
    }

    /// Messages settled so far at `subscribers`; a blocked publisher watches it for a stall.
    pub(super) fn settled(&self, subscribers: &[u32]) -> u64 {
        self.lanes(subscribers)
            .map(|lane| lane.settled.load(Relaxed))
            .sum()
    }

    /// Writes off everything outstanding at `subscribers` (see the module comment).
    pub(super) fn write_off(&self, subscribers: &[u32]) {
        let mut freed = false;
        for lane in self.lanes(subscribers) {
            let sent = lane.sent.load(Relaxed);
            freed |= lane.settled.fetch_max(sent, Relaxed) < sent;
        }
        if freed {
            self.stalls.fetch_add(1, Relaxed);
            self.freed.notify_waiters();
        }
    }

    /// Times outstanding messages were written off; non-zero means messages went missing at
    /// the tail of a stream (or the broker stalled for [`STALL`]).
    pub(super) fn stalls(&self) -> u64 {
        self.stalls.load(Relaxed)
    }

    fn lanes<'a>(&'a self, subscribers: &'a [u32]) -> impl Iterator<Item = &'a Lane> + 'a {
        subscribers.iter().map(|&s| &self.lanes[s as usize])
    }
}

/// A blocked publisher's clock for [`STALL`]. Every settle wakes every waiting publisher, so
/// the clock restarts only when the publisher's own subscribers settle something: deliveries
/// elsewhere must not put off its write-off.
#[derive(Debug, Default)]
pub(super) struct StallClock {
    /// What had settled at the publisher's subscribers when it last saw that change, and when.
    last_change: Option<(u64, Instant)>,
}

impl StallClock {
    /// When to write off what is outstanding at `subscribers`, unless something settles there
    /// first.
    pub(super) fn deadline(&mut self, flow: &Flow, subscribers: &[u32]) -> Instant {
        let settled = flow.settled(subscribers);
        match self.last_change {
            Some((seen, since)) if seen == settled => since + STALL,
            _ => {
                let now = Instant::now();
                self.last_change = Some((settled, now));
                now + STALL
            }
        }
    }

    /// At the deadline: writes off, unless something settled since it was set.
    pub(super) fn expire(&self, flow: &Flow, subscribers: &[u32]) {
        if self
            .last_change
            .is_some_and(|(seen, _)| seen == flow.settled(subscribers))
        {
            flow.write_off(subscribers);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn claims_stop_at_the_limit_and_resume_when_settled() {
        let flow = Flow::new(10, 1);
        assert_eq!(flow.claim(&[0], 4), 4);
        assert_eq!(flow.claim(&[0], 100), 6);
        assert_eq!(flow.claim(&[0], 1), 0);
        flow.settle(0, 3);
        assert_eq!(flow.claim(&[0], 100), 3);
        assert_eq!(flow.claim(&[], 5), 5, "no subscriber, no room needed");
    }

    #[test]
    fn fan_in_publishers_share_their_subscribers_window() {
        let flow = Flow::new(10, 1);
        assert_eq!(flow.claim(&[0], 6), 6);
        assert_eq!(
            flow.claim(&[0], 6),
            4,
            "a second publisher gets what is left"
        );
        flow.settle(0, 5);
        assert_eq!(flow.claim(&[0], 100), 5);
    }

    #[test]
    fn the_slowest_subscriber_governs() {
        let flow = Flow::new(10, 100);
        let all: Vec<u32> = (0..100).collect();
        assert_eq!(flow.claim(&all, 100), 10);
        for s in 1..100 {
            flow.settle(s, 10);
        }
        assert_eq!(flow.claim(&all, 100), 0, "subscriber 0 is a window behind");
        flow.settle(0, 3);
        assert_eq!(flow.claim(&all, 100), 3);
        assert_eq!(flow.claim(&all, 100), 0);
    }

    #[test]
    fn pairs_have_windows_of_their_own() {
        let flow = Flow::new(10, 2);
        assert_eq!(flow.claim(&[0], 100), 10);
        assert_eq!(flow.claim(&[0], 1), 0);
        assert_eq!(
            flow.claim(&[1], 100),
            10,
            "pair 0 being full does not hold up pair 1"
        );
        flow.settle(1, 4);
        assert_eq!(
            flow.claim(&[0], 100),
            0,
            "nor does pair 1's progress free pair 0"
        );
        assert_eq!(flow.claim(&[1], 100), 4);
    }

    /// Cannot fail for a sound claim; catches one that reserves without checking in about half
    /// the runs on two cores.
    #[test]
    fn racing_claims_never_overfill_a_lane() {
        let flow = Arc::new(Flow::new(10, 3));
        let start = Arc::new(std::sync::Barrier::new(4));
        let claimers: Vec<_> = [vec![0, 1], vec![1, 2], vec![2, 0]]
            .into_iter()
            .map(|subscribers| {
                let (flow, start) = (flow.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..500_000 {
                        flow.claim(&subscribers, 3);
                        assert!(flow.lanes.iter().all(|l| l.behind() <= 10));
                    }
                })
            })
            .collect();
        start.wait();
        while !claimers.iter().all(|c| c.is_finished()) {
            flow.write_off(&[0, 1, 2]);
        }
        for claimer in claimers {
            claimer.join().unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_publisher_writes_off_only_its_own_subscribers() {
        let flow = Arc::new(Flow::new(2, 2));
        assert_eq!(flow.claim(&[0], 2), 2);
        assert_eq!(flow.claim(&[1], 2), 2);
        let waiter = tokio::spawn({
            let flow = flow.clone();
            async move {
                let mut stall = StallClock::default();
                loop {
                    // Registered before the claim, so a settle in between is not missed.
                    let freed = flow.freed.notified();
                    let n = flow.claim(&[0], 2);
                    if n > 0 {
                        return n;
                    }
                    tokio::select! {
                        () = freed => {}
                        () = tokio::time::sleep_until(stall.deadline(&flow, &[0])) => {
                            stall.expire(&flow, &[0]);
                        }
                    }
                }
            }
        });
        // Subscriber 1's deliveries wake the waiter but do not put off its write-off.
        for _ in 0..10 {
            tokio::time::sleep(STALL / 4).await;
            flow.settle(1, 1);
            assert_eq!(flow.claim(&[1], 1), 1);
        }
        assert!(waiter.is_finished(), "written off within 2.5 STALLs");
        assert_eq!(waiter.await.unwrap(), 2);
        assert_eq!(flow.stalls(), 1);
        assert_eq!(
            flow.settled(&[0]),
            2,
            "subscriber 0's two messages written off"
        );
        assert_eq!(flow.settled(&[1]), 10, "subscriber 1 keeps its own account");
    }

    #[test]
    fn write_off_frees_what_is_outstanding_once() {
        let flow = Flow::new(2, 2);
        assert_eq!(flow.claim(&[0, 1], 2), 2);
        flow.settle(1, 2);
        flow.write_off(&[0, 1]);
        assert_eq!((flow.stalls(), flow.settled(&[0, 1])), (1, 4));
        flow.write_off(&[0, 1]);
        assert_eq!(flow.stalls(), 1, "nothing outstanding, nothing written off");
        assert_eq!(flow.claim(&[0, 1], 5), 2);
    }
}
