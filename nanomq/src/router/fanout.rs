//! Turning the subscriptions a topic matches into deliveries (spec 3.3.4 and 4.8.2).
//!
//! The tree walk hands every matching subscription to a [`Collector`], which appends to the
//! caller's reused `Vec<Delivery>`: one merged delivery per non-shared receiver, one delivery per
//! matching share group. Nothing is allocated per delivery except the receiver handle's clone and
//! a subscription identifier list when there is one.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::tree::Subscription;
use crate::mqtt::{QoS, SubscriptionOptions};

/// Above this many distinct non-shared receivers, merging switches from a linear scan of the
/// deliveries collected so far to a hash index, so a large fan-out stays linear.
const LINEAR_MERGE_LIMIT: usize = 16;

/// One copy of a message for one receiver, with what the subscription(s) ask of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery<S> {
    /// Who receives it.
    pub subscriber: S,
    /// Maximum QoS granted; the broker delivers at the minimum of this and the PUBLISH QoS.
    pub qos: QoS,
    /// Keep the RETAIN flag as published (v5 Retain As Published); otherwise clear it.
    pub retain_as_published: bool,
    /// Subscription Identifiers to attach (v5); empty when none of the subscriptions has one.
    pub subscription_identifiers: Vec<u32>,
}

impl<S> Delivery<S> {
    fn new(subscriber: S, options: &SubscriptionOptions, identifier: Option<u32>) -> Self {
        Delivery {
            subscriber,
            qos: options.qos,
            retain_as_published: options.retain_as_published,
            subscription_identifiers: identifier.into_iter().collect(),
        }
    }
}

/// Builds the deliveries of one publish into `out[start..]`.
///
/// Non-shared deliveries are kept contiguous at `out[start..start + plain]`, ahead of shared ones,
/// so merging only looks at them and shared deliveries are never merged.
pub(super) struct Collector<'a, S, P, F> {
    out: &'a mut Vec<Delivery<S>>,
    start: usize,
    plain: usize,
    /// Receiver to position in `out`, built once `plain` passes [`LINEAR_MERGE_LIMIT`].
    index: Option<HashMap<S, usize>>,
    publisher: Option<&'a P>,
    online: F,
}

impl<'a, S, P, F> Collector<'a, S, P, F>
where
    S: Clone + Eq + Hash + PartialEq<P>,
    F: Fn(&S) -> bool,
{
    pub(super) fn new(out: &'a mut Vec<Delivery<S>>, publisher: Option<&'a P>, online: F) -> Self {
        Collector {
            start: out.len(),
            out,
            plain: 0,
            index: None,
            publisher,
            online,
        }
    }

    /// Adds a matching non-shared subscription: skipped under No Local when the receiver is the
    /// publisher, otherwise merged into the receiver's delivery (maximum QoS, any Retain As
    /// Published, every identifier).
    pub(super) fn plain(
        &mut self,
        subscriber: &S,
        options: &SubscriptionOptions,
        identifier: Option<u32>,
    ) {
        if options.no_local && self.publisher.is_some_and(|p| subscriber == p) {
            return;
        }
        if let Some(at) = self.position(subscriber) {
            let delivery = &mut self.out[at];
            delivery.qos = delivery.qos.max(options.qos);
            delivery.retain_as_published |= options.retain_as_published;
            delivery.subscription_identifiers.extend(identifier);
            return;
        }
        let at = self.start + self.plain;
        self.out
            .push(Delivery::new(subscriber.clone(), options, identifier));
        let last = self.out.len() - 1;
        // Move the first shared delivery (if any) to the end to keep non-shared ones contiguous.
        self.out.swap(at, last);
        self.plain += 1;
        match &mut self.index {
            Some(index) => {
                index.insert(subscriber.clone(), at);
            }
            None if self.plain > LINEAR_MERGE_LIMIT => {
                let plain = &self.out[self.start..self.start + self.plain];
                let index = plain.iter().enumerate();
                let index = index.map(|(i, d)| (d.subscriber.clone(), self.start + i));
                self.index = Some(index.collect());
            }
            None => {}
        }
    }

    /// Adds a matching share group: exactly one member receives, taken round-robin from the
    /// group's cursor, skipping to the next member that is online if the chosen one is not; when
    /// no member is online the round-robin choice stands (its session queues the message).
    pub(super) fn shared(&mut self, members: &[Subscription<S>], cursor: &AtomicUsize) {
        if members.is_empty() {
            return;
        }
        let first = cursor.fetch_add(1, Ordering::Relaxed) % members.len();
        let mut rotation = members[first..].iter().chain(&members[..first]);
        let online = &self.online;
        let chosen = rotation.clone().find(|m| online(&m.subscriber));
        if let Some(member) = chosen.or_else(|| rotation.next()) {
            self.out.push(Delivery::new(
                member.subscriber.clone(),
                &member.options,
                member.identifier,
            ));
        }
    }

    /// Where `subscriber`'s non-shared delivery is in `out`, if it has one yet.
    fn position(&self, subscriber: &S) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(subscriber).copied(),
            None => self.out[self.start..self.start + self.plain]
                .iter()
                .position(|d| d.subscriber == *subscriber)
                .map(|i| self.start + i),
        }
    }
}
