//! The bounded queue of messages waiting to be sent to one session, online or offline.

use std::collections::VecDeque;

use super::Outgoing;
use crate::mqtt::QoS;

/// What to do when a session's queue is full and the new message is QoS 1 or 2 and no QoS 0
/// message is left to sacrifice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Keep what is queued, drop the newcomer.
    DropNew,
    /// Drop the oldest queued message to make room.
    DropOldest,
}

/// FIFO of messages not yet in flight. Never grows past its limit: when full, a QoS 0 message goes
/// first (the newcomer if it is QoS 0, else the oldest queued QoS 0), then the [`FullPolicy`].
#[derive(Debug, Default)]
pub struct OutboundQueue {
    items: VecDeque<Outgoing>,
    qos0: usize,
}

impl OutboundQueue {
    /// Appends `item`, returning the message dropped to respect `limit`, if any.
    pub fn push(&mut self, item: Outgoing, limit: usize, policy: FullPolicy) -> Option<Outgoing> {
        if self.items.len() < limit {
            self.push_back(item);
            return None;
        }
        if item.qos == QoS::AtMostOnce {
            return Some(item);
        }
        let victim = if self.qos0 > 0 {
            let at = self.items.iter().position(|m| m.qos == QoS::AtMostOnce);
            at.and_then(|i| self.items.remove(i))
        } else if policy == FullPolicy::DropOldest {
            self.items.pop_front()
        } else {
            return Some(item);
        };
        if let Some(v) = &victim {
            if v.qos == QoS::AtMostOnce {
                self.qos0 -= 1;
            }
        }
        self.push_back(item);
        victim
    }

    fn push_back(&mut self, item: Outgoing) {
        if item.qos == QoS::AtMostOnce {
            self.qos0 += 1;
        }
        self.items.push_back(item);
    }

    /// The oldest message, left in place.
    pub fn front(&self) -> Option<&Outgoing> {
        self.items.front()
    }

    /// Removes and returns the oldest message.
    pub fn pop(&mut self) -> Option<Outgoing> {
        let item = self.items.pop_front()?;
        if item.qos == QoS::AtMostOnce {
            self.qos0 -= 1;
        }
        Some(item)
    }

    /// Drops every QoS 0 message: they are not kept for an offline session.
    pub fn drop_qos0(&mut self) -> usize {
        let dropped = self.qos0;
        if dropped > 0 {
            self.items.retain(|m| m.qos != QoS::AtMostOnce);
            self.qos0 = 0;
        }
        dropped
    }

    /// Number of queued messages.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::outgoing;

    fn qos_of(q: &OutboundQueue) -> Vec<(u8, QoS)> {
        q.items
            .iter()
            .map(|m| (m.message.payload[0], m.qos))
            .collect()
    }

    #[test]
    fn qos0_is_dropped_first_then_policy() {
        let mut q = OutboundQueue::default();
        assert!(q
            .push(outgoing(1, QoS::AtLeastOnce), 2, FullPolicy::DropNew)
            .is_none());
        assert!(q
            .push(outgoing(2, QoS::AtMostOnce), 2, FullPolicy::DropNew)
            .is_none());
        // Full: a QoS 0 newcomer is dropped itself.
        let d = q
            .push(outgoing(3, QoS::AtMostOnce), 2, FullPolicy::DropNew)
            .unwrap();
        assert_eq!(d.message.payload[0], 3);
        // Full: a QoS 1 newcomer evicts the queued QoS 0.
        let d = q
            .push(outgoing(4, QoS::AtLeastOnce), 2, FullPolicy::DropNew)
            .unwrap();
        assert_eq!(d.message.payload[0], 2);
        assert_eq!(
            qos_of(&q),
            vec![(1, QoS::AtLeastOnce), (4, QoS::AtLeastOnce)]
        );
        // drop-new keeps the queue.
        let d = q
            .push(outgoing(5, QoS::AtLeastOnce), 2, FullPolicy::DropNew)
            .unwrap();
        assert_eq!(d.message.payload[0], 5);
        // drop-oldest evicts the head.
        let d = q
            .push(outgoing(6, QoS::ExactlyOnce), 2, FullPolicy::DropOldest)
            .unwrap();
        assert_eq!(d.message.payload[0], 1);
        assert_eq!(
            qos_of(&q),
            vec![(4, QoS::AtLeastOnce), (6, QoS::ExactlyOnce)]
        );
    }

    #[test]
    fn drop_qos0_keeps_order_of_the_rest() {
        let mut q = OutboundQueue::default();
        for (i, qos) in [
            QoS::AtMostOnce,
            QoS::AtLeastOnce,
            QoS::AtMostOnce,
            QoS::ExactlyOnce,
        ]
        .into_iter()
        .enumerate()
        {
            q.push(outgoing(i as u8, qos), 10, FullPolicy::DropNew);
        }
        assert_eq!(q.drop_qos0(), 2);
        assert_eq!(
            qos_of(&q),
            vec![(1, QoS::AtLeastOnce), (3, QoS::ExactlyOnce)]
        );
        assert_eq!(q.pop().unwrap().message.payload[0], 1);
        assert_eq!(q.len(), 1);
    }
}
