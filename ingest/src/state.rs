//! What every request handler shares (a leaf: it depends on nothing else of ingest's but its
//! metrics, so `webhook` and `publish` both use it without depending on each other).

use crate::metrics::Metrics;
use shared::Verifier;
use shared::amqp::BrokerLink;
use std::sync::Arc;
use std::time::Duration;

/// Everything a request needs, shared by all HTTP workers.
pub struct AppState {
    pub verifier: Verifier,
    pub link: BrokerLink,
    /// `{prefix}.events`, where verified events go (named once, not per request).
    pub events_exchange: String,
    /// `{prefix}.events.urgent`, where deprovisionings go (`shared::lane`).
    pub urgent_exchange: String,
    /// `{prefix}.events.bulk`, where an organization's events past its fair share go.
    pub bulk_exchange: String,
    /// Each organization's share of the apply queue.
    pub fair: crate::fair::FairShare,
    /// `{prefix}.events.dlx`, where signed bodies that are not envelopes go.
    pub dead_exchange: String,
    pub metrics: Arc<Metrics>,
    pub confirm_timeout: Duration,
    pub retry_after_seconds: u64,
    pub max_body_bytes: usize,
    /// How long a body may take to arrive.
    pub body_timeout: Duration,
}
