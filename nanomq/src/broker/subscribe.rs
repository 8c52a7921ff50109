//! SUBSCRIBE and UNSUBSCRIBE: per-filter checks (the ACL among them) and reason codes, the topic
//! tree, the session's own list of its filters, and retained messages sent per Retain Handling.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::time::Instant;

use super::connection::{Connection, Ending};
use super::publish::deliver;
use super::Subscriber;
use crate::auth::{AclQuestion, Action, Verdict};
use crate::mqtt::{
    encode, Packet, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
    Unsubscribe,
};
use crate::router::{parse_shared, validate_topic_filter, Subscription};
use crate::session::{Message, Outgoing, SubscriptionEntry};

impl Connection {
    pub(crate) fn on_subscribe(&mut self, s: Subscribe, out: &mut BytesMut) -> Result<(), Ending> {
        let cfg = &self.broker.config;
        let identifier = s.properties.subscription_identifiers.first().copied();
        if identifier.is_some() && !cfg.mqtt.subscription_identifiers {
            return Err(Ending::Violation(
                ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
            ));
        }
        let questions = self.acl_questions(&s);
        if !questions.is_empty() {
            // Handled again, from the top, once every answer is in: nothing of a SUBSCRIBE is
            // applied before all its filters are decided.
            self.park(Packet::Subscribe(s), questions);
            return Ok(());
        }
        let mut reasons = Vec::with_capacity(s.filters.len());
        for (filter, options) in &s.filters {
            let reason = self.subscribe_one(filter, *options, identifier)?;
            reasons.push(reason);
        }
        let ack = SubAck {
            packet_id: s.packet_id,
            reasons,
            ..SubAck::default()
        };
        encode(&Packet::SubAck(ack), self.version, out);
        Ok(())
    }

    /// The questions for the HTTP auth service that the well-formed filters of `s` need
    /// answered; none without an HTTP ACL or when every answer is known.
    fn acl_questions(&mut self, s: &Subscribe) -> Vec<AclQuestion> {
        if !self.broker.auth.has_acl() {
            return Vec::new();
        }
        let max_levels = self.broker.config.limits.max_topic_levels;
        let mut questions = Vec::new();
        for (filter, _) in &s.filters {
            let well_formed = match parse_shared(filter) {
                Ok(shared) => {
                    let plain = shared.as_ref().map_or(filter.as_str(), |s| s.filter);
                    validate_topic_filter(plain, max_levels).is_ok()
                }
                Err(_) => false,
            };
            if well_formed {
                if let Verdict::Ask(q) = self.acl_verdict(Action::Subscribe, filter) {
                    questions.push(q);
                }
            }
        }
        questions
    }

    /// Adds one subscription, returning its SUBACK reason code. Only a shared subscription with
    /// No Local is fatal to the connection (MQTT-3.8.3-4).
    fn subscribe_one(
        &mut self,
        filter: &str,
        mut options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> Result<ReasonCode, Ending> {
        let cfg = &self.broker.config;
        let shared = match parse_shared(filter) {
            Ok(s) => s,
            Err(_) => return Ok(ReasonCode::TOPIC_FILTER_INVALID),
        };
        let plain = shared.as_ref().map_or(filter, |s| s.filter);
        if validate_topic_filter(plain, cfg.limits.max_topic_levels).is_err() {
            return Ok(ReasonCode::TOPIC_FILTER_INVALID);
        }
        if shared.is_some() {
            if options.no_local {
                return Err(Ending::Violation(ReasonCode::PROTOCOL_ERROR));
            }
            if !cfg.mqtt.shared_subscriptions {
                return Ok(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED);
            }
        }
        if !cfg.mqtt.wildcard_subscriptions && plain.contains(['+', '#']) {
            return Ok(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED);
        }
        // 3.x SUBACKs carry 0x80 for it.
        if !self.acl_allows(Action::Subscribe, filter) {
            self.acl_denied("subscribe", filter);
            return Ok(ReasonCode::NOT_AUTHORIZED);
        }
        let cfg = &self.broker.config;
        let max_subs = cfg.limits.max_subscriptions_per_client;
        {
            let s = self.handle().state();
            if max_subs > 0
                && s.subscriptions.len() >= max_subs
                && !s.subscriptions.contains_key(filter)
            {
                return Ok(ReasonCode::QUOTA_EXCEEDED);
            }
        }
        let max_qos = crate::mqtt::QoS::from_u8(cfg.mqtt.max_qos).unwrap_or_default();
        options.qos = options.qos.min(max_qos);
        let existed = self.broker.subscriptions.subscribe(
            filter,
            Subscription {
                subscriber: Subscriber::session(&self.me),
                options,
                identifier,
            },
        );
        let entry = SubscriptionEntry {
            options,
            identifier,
        };
        {
            let mut s = self.handle().state();
            s.subscriptions.insert(filter.to_owned(), entry);
            if let (Some(store), true) = (&self.broker.store, s.is_journaled()) {
                store.subscribe(&self.handle().client_id, filter, entry);
            }
        }
        // Retained messages are not sent for shared subscriptions (MQTT 5 4.8.2).
        let send_retained = shared.is_none()
            && match options.retain_handling {
                RetainHandling::OnSubscribe => true,
                RetainHandling::OnNewSubscribe => !existed,
                RetainHandling::Never => false,
            };
        if send_retained {
            self.send_retained(filter, options, identifier);
        }
        Ok(ReasonCode(options.qos as u8))
    }

    fn send_retained(&self, filter: &str, options: SubscriptionOptions, id: Option<u32>) {
        let now = Instant::now();
        let mut found: Vec<Arc<Message>> = Vec::new();
        self.broker
            .retained
            .matching(filter, |m| m.remaining_expiry(now).is_ok(), &mut found);
        for message in found {
            let item = Outgoing {
                qos: message.qos.min(options.qos),
                retain: true,
                subscription_identifiers: id.into_iter().collect(),
                message,
                stored: false,
            };
            deliver(&self.broker, self.handle(), item);
        }
    }

    pub(crate) fn on_unsubscribe(&mut self, u: Unsubscribe, out: &mut BytesMut) {
        let reasons = u
            .filters
            .iter()
            .map(|f| {
                {
                    let mut s = self.handle().state();
                    s.subscriptions.remove(f);
                    if let (Some(store), true) = (&self.broker.store, s.is_journaled()) {
                        store.unsubscribe(&self.handle().client_id, f);
                    }
                }
                if self
                    .broker
                    .subscriptions
                    .unsubscribe(f, &Subscriber::session(&self.me))
                {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::NO_SUBSCRIPTION_EXISTED
                }
            })
            .collect();
        let ack = UnsubAck {
            packet_id: u.packet_id,
            reasons,
            ..UnsubAck::default()
        };
        encode(&Packet::UnsubAck(ack), self.version, out);
    }
}
