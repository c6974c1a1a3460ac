//! Prometheus metrics of ingest (ARCHITECTURE §9). One registry per application instance, so
//! tests can run several in one process.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Names exported (with `_total` added to counters by the encoder).
pub const REQUESTS: &str = "scim_ingest_requests";
pub const PUBLISH_SECONDS: &str = "scim_ingest_publish_seconds";
pub const IN_FLIGHT: &str = "scim_ingest_in_flight";
pub const BROKER_READY: &str = "scim_ingest_broker_ready";

pub struct Metrics {
    registry: Registry,
    pub requests: Family<OutcomeLabel, Counter>,
    pub publish_seconds: Histogram,
    pub in_flight: Gauge,
    pub broker_ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            REQUESTS,
            "Webhook requests by outcome (queued, malformed_queued, a rejection code, broker_unavailable)",
            requests.clone(),
        );
        let publish_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            PUBLISH_SECONDS,
            "Time from publish to the broker's confirm",
            publish_seconds.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            IN_FLIGHT,
            "Webhook requests being handled",
            in_flight.clone(),
        );
        let broker_ready = Gauge::default();
        registry.register(
            BROKER_READY,
            "1 while the broker connection and confirm channels are up",
            broker_ready.clone(),
        );
        Self {
            registry,
            requests,
            publish_seconds,
            in_flight,
            broker_ready,
        }
    }

    pub fn count(&self, outcome: &'static str) {
        self.requests.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
