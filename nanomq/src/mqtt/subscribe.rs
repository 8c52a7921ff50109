//! SUBSCRIBE (spec 3.8): fixed-header flags 0b0010, at least one filter.

use super::{Properties, QoS};

/// A request to add one or more subscriptions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subscribe {
    /// Non-zero packet id echoed by SUBACK.
    pub packet_id: u16,
    /// v5 properties: at most one Subscription Identifier, user properties.
    pub properties: Properties,
    /// Topic filters with their options, in request order; never empty.
    pub filters: Vec<(String, SubscriptionOptions)>,
}

/// Per-filter subscription options byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS the subscriber accepts.
    pub qos: QoS,
    /// v5: do not deliver the subscriber's own publications.
    pub no_local: bool,
    /// v5: keep the RETAIN flag of forwarded messages.
    pub retain_as_published: bool,
    /// v5: when to send retained messages at subscribe time.
    pub retain_handling: RetainHandling,
}

/// v5 Retain Handling option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at subscribe time.
    #[default]
    OnSubscribe = 0,
    /// 1: send them only if the subscription did not already exist.
    OnNewSubscribe = 1,
    /// 2: never send them at subscribe time.
    Never = 2,
}
