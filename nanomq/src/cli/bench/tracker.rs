//! Per (subscriber, publisher) sequence tracking: which messages of one publisher's stream are
//! missing, and whether an arrival is in order, past a gap, late into a gap, or a repeat.
//!
//! Memory is bounded: missing messages are kept as ranges, at most [`MAX_GAPS`] of them per
//! pair. When more gaps open, the oldest range is forgotten; its messages stay counted as lost,
//! and one of them that still arrives is then taken for a duplicate.

use std::collections::BTreeMap;

/// Gap ranges remembered per publisher stream.
pub(super) const MAX_GAPS: usize = 256;

/// How one arrival relates to what came before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arrival {
    /// The next message expected (or the first one seen, which starts the stream).
    InOrder,
    /// Ahead of the next expected: this many messages before it are now missing.
    Gap(u64),
    /// A missing message arrived after all: reordered, no longer lost.
    Late,
    /// Already received.
    Duplicate,
}

/// The state of one publisher's stream as one subscriber sees it.
#[derive(Debug, Default)]
pub(super) struct SeqTracker {
    /// The sequence number expected next; `None` before the first arrival.
    next: Option<u64>,
    /// Missing ranges, start -> end (exclusive).
    missing: BTreeMap<u64, u64>,
}

impl SeqTracker {
    /// Records the arrival of message `seq`. The first arrival sets where the stream starts, so a
    /// subscriber that joins a running publisher does not count what came before as lost.
    pub(super) fn on_seq(&mut self, seq: u64) -> Arrival {
        let Some(next) = self.next else {
            self.next = Some(seq + 1);
            return Arrival::InOrder;
        };
        if seq == next {
            self.next = Some(seq + 1);
            return Arrival::InOrder;
        }
        if seq > next {
            self.missing.insert(next, seq);
            if self.missing.len() > MAX_GAPS {
                self.missing.pop_first();
            }
            self.next = Some(seq + 1);
            return Arrival::Gap(seq - next);
        }
        let Some((&start, &end)) = self.missing.range(..=seq).next_back() else {
            return Arrival::Duplicate;
        };
        if seq >= end {
            return Arrival::Duplicate;
        }
        self.missing.remove(&start);
        if start < seq {
            self.missing.insert(start, seq);
        }
        if seq + 1 < end {
            self.missing.insert(seq + 1, end);
        }
        Arrival::Late
    }

    /// Messages currently missing that this tracker still remembers.
    #[cfg(test)]
    fn missing(&self) -> u64 {
        self.missing.iter().map(|(start, end)| end - start).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_from_wherever_the_stream_is_joined() {
        let mut t = SeqTracker::default();
        for seq in 40..50 {
            assert_eq!(t.on_seq(seq), Arrival::InOrder);
        }
        assert_eq!(t.missing(), 0);
    }

    #[test]
    fn gap_then_late_arrivals_fill_it() {
        let mut t = SeqTracker::default();
        t.on_seq(0);
        assert_eq!(t.on_seq(5), Arrival::Gap(4));
        assert_eq!(t.missing(), 4);
        assert_eq!(t.on_seq(6), Arrival::InOrder);
        assert_eq!(t.on_seq(3), Arrival::Late);
        assert_eq!(t.on_seq(1), Arrival::Late);
        assert_eq!(t.on_seq(4), Arrival::Late);
        assert_eq!(t.missing(), 1);
        assert_eq!(t.on_seq(2), Arrival::Late);
        assert_eq!(t.missing(), 0);
        assert_eq!(t.on_seq(7), Arrival::InOrder);
    }

    #[test]
    fn repeats_are_duplicates() {
        let mut t = SeqTracker::default();
        t.on_seq(0);
        t.on_seq(1);
        assert_eq!(t.on_seq(1), Arrival::Duplicate);
        assert_eq!(t.on_seq(0), Arrival::Duplicate);
        t.on_seq(4);
        assert_eq!(t.on_seq(2), Arrival::Late);
        assert_eq!(t.on_seq(2), Arrival::Duplicate);
        assert_eq!(t.on_seq(4), Arrival::Duplicate);
        assert_eq!(t.missing(), 1);
    }

    #[test]
    fn memory_is_bounded_and_forgets_the_oldest_gaps() {
        let mut t = SeqTracker::default();
        t.on_seq(0);
        // Every other message lost: one range per loss.
        for i in 1..=(MAX_GAPS as u64 + 10) {
            assert_eq!(t.on_seq(2 * i), Arrival::Gap(1));
        }
        assert_eq!(t.missing.len(), MAX_GAPS);
        // Message 1 was forgotten: counted as lost, and taken for a repeat if it shows up.
        assert_eq!(t.on_seq(1), Arrival::Duplicate);
        let last_missing = 2 * (MAX_GAPS as u64 + 10) - 1;
        assert_eq!(t.on_seq(last_missing), Arrival::Late);
    }
}
