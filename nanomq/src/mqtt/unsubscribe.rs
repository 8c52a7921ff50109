//! UNSUBSCRIBE (spec 3.10): fixed-header flags 0b0010, at least one filter.

use super::Properties;

/// A request to remove subscriptions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Unsubscribe {
    /// Non-zero packet id echoed by UNSUBACK.
    pub packet_id: u16,
    /// v5 properties (user properties).
    pub properties: Properties,
    /// Topic filters to remove; never empty.
    pub filters: Vec<String>,
}
