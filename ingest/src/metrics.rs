//! Prometheus metrics of ingest (`docs/operate.md`, metrics). One registry per application instance, so
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

/// How a webhook request ended: the `outcome` label of `scim_ingest_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Published to the events exchange and confirmed (202).
    Queued,
    /// Signed but not an envelope: published to the dead-letter exchange and confirmed (202).
    Malformed,
    /// Body over `INGEST_MAX_BODY_BYTES` (413).
    PayloadTooLarge,
    /// The body could not be read (400).
    BadBody,
    /// The body did not arrive within `INGEST_BODY_TIMEOUT` (408).
    BodyTimeout,
    /// Verification failed (400), with the verifier's code.
    Rejected(&'static str),
    /// The broker did not confirm in time (503).
    BrokerUnavailable,
}

impl Outcome {
    /// Every label value, for the metric's help text and the dashboards.
    pub const LABELS: [&'static str; 11] = [
        "queued",
        "malformed",
        "payload_too_large",
        "bad_body",
        "body_timeout",
        "invalid_header",
        "missing_header",
        "invalid_timestamp",
        "timestamp_too_old",
        "timestamp_too_new",
        "invalid_signature",
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Queued => "queued",
            Outcome::Malformed => "malformed",
            Outcome::PayloadTooLarge => "payload_too_large",
            Outcome::BadBody => "bad_body",
            Outcome::BodyTimeout => "body_timeout",
            Outcome::Rejected(code) => code,
            Outcome::BrokerUnavailable => "broker_unavailable",
        }
    }
}

impl From<&shared::VerifyError> for Outcome {
    fn from(e: &shared::VerifyError) -> Self {
        Outcome::Rejected(e.code())
    }
}

/// Names exported (with `_total` added to counters by the encoder).
pub const REQUESTS: &str = "scim_ingest_requests";
pub const PUBLISH_SECONDS: &str = "scim_ingest_publish_seconds";
pub const IN_FLIGHT: &str = "scim_ingest_in_flight";
pub const BROKER_READY: &str = "scim_ingest_broker_ready";
pub const URGENT: &str = "scim_ingest_urgent";
pub const BULK: &str = "scim_ingest_bulk";

pub struct Metrics {
    registry: Registry,
    pub requests: Family<OutcomeLabel, Counter>,
    pub publish_seconds: Histogram,
    pub in_flight: Gauge,
    pub broker_ready: Gauge,
    /// Deprovisionings queued on the urgent path (also counted as `queued`).
    pub urgent: Counter,
    /// Events past their organization's fair share, queued on the bulk queue (also `queued`).
    pub bulk: Counter,
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
        let help = format!(
            "Webhook requests by outcome ({}, broker_unavailable)",
            Outcome::LABELS.join(", ")
        );
        registry.register(REQUESTS, help, requests.clone());
        // Every outcome is exported from the start (at 0), so a rate over one that has not
        // happened yet is 0, not an empty series.
        for outcome in Outcome::LABELS.into_iter().chain(["broker_unavailable"]) {
            let _ = requests.get_or_create(&OutcomeLabel { outcome });
        }
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
        let urgent = Counter::default();
        registry.register(
            URGENT,
            "Deprovisionings queued on the urgent path (also counted as queued)",
            urgent.clone(),
        );
        let bulk = Counter::default();
        registry.register(
            BULK,
            "Events past their organization's fair share, queued on the bulk queue (also counted as queued)",
            bulk.clone(),
        );
        Self {
            registry,
            requests,
            publish_seconds,
            in_flight,
            broker_ready,
            urgent,
            bulk,
        }
    }

    pub fn count(&self, outcome: Outcome) {
        self.requests
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_names_every_label_the_code_counts() {
        let metrics = Metrics::new();
        let verify = [
            shared::VerifyError::MissingHeader("webhook-id"),
            shared::VerifyError::InvalidTimestamp,
            shared::VerifyError::TimestampTooOld,
            shared::VerifyError::TimestampTooNew,
            shared::VerifyError::InvalidSignature,
            shared::VerifyError::InvalidHeader("webhook-id"),
        ];
        let mut outcomes = vec![
            Outcome::Queued,
            Outcome::Malformed,
            Outcome::PayloadTooLarge,
            Outcome::BadBody,
            Outcome::BodyTimeout,
            Outcome::BrokerUnavailable,
        ];
        outcomes.extend(verify.iter().map(Outcome::from));
        for o in &outcomes {
            metrics.count(*o);
        }
        let text = metrics.render();
        let help = text
            .lines()
            .find(|l| l.starts_with("# HELP scim_ingest_requests"))
            .unwrap_or_default()
            .to_owned();
        for o in outcomes {
            assert!(
                help.contains(o.label()),
                "{} missing from {help}",
                o.label()
            );
            assert!(
                text.contains(&format!("outcome=\"{}\"}} 1", o.label())),
                "{text}"
            );
        }
    }
}
