//! Prometheus metrics of the worker (`docs/operate.md`, metrics); one registry per instance.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use shared::EventType;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The event type, or `unknown` for types this build does not know (bounded cardinality).
    pub r#type: &'static str,
    /// applied, duplicate, stale, ignored, held, retried, dead_lettered
    pub outcome: &'static str,
}

pub const EVENTS: &str = "scim_worker_events";
pub const APPLY_SECONDS: &str = "scim_worker_apply_seconds";
pub const LAG_SECONDS: &str = "scim_worker_event_lag_seconds";
pub const IN_FLIGHT: &str = "scim_worker_in_flight";
pub const READY: &str = "scim_worker_ready";
pub const SYNC_USERS: &str = "scim_sync_users";
pub const DLQ_DEPTH: &str = "scim_worker_dlq_depth";
pub const QUEUE_DEPTH: &str = "scim_worker_queue_depth";
pub const SYNC_RUNS: &str = "scim_sync_runs";
pub const RETRIES: &str = "scim_worker_retries";
pub const CHANGES_WRITTEN: &str = "scim_changes_written";
pub const CHANGES_PUBLISHED: &str = "scim_changes_published";
pub const RELAY_LAG: &str = "scim_changes_relay_lag_seconds";
pub const OUTBOX_DEPTH: &str = "scim_changes_outbox_depth";
pub const RELAY_LEADER: &str = "scim_changes_relay_leader";
pub const BRAKE_ENGAGED: &str = "scim_deprovision_brake_engaged";
pub const BRAKE_HELD: &str = "scim_deprovision_brake_held_events";
pub const WEBHOOK_DELIVERED: &str = "scim_changes_webhook_delivered";
pub const WEBHOOK_FAILED: &str = "scim_changes_webhook_failed_attempts";
pub const WEBHOOK_LAG: &str = "scim_changes_webhook_lag_seconds";
pub const WEBHOOK_PAUSED: &str = "scim_changes_webhook_paused";
pub const WEBHOOK_LEADER: &str = "scim_changes_webhook_leader";

/// Labels of push delivery's metrics: the endpoint's configured name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Labels of the brake's gauges: only organizations the brake holds (or held) appear.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrgLabels {
    pub organization_id: String,
}

/// Labels of the retries counter: why an event went to a retry tier.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// lock_timeout, deadlock, statement_timeout, database_unavailable, database
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// ok, failed, skipped
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub events: Family<EventLabels, Counter>,
    pub apply_seconds: Histogram,
    pub lag_seconds: Histogram,
    pub in_flight: Gauge,
    pub ready: Gauge,
    pub sync_users: Counter,
    pub dlq_depth: Gauge,
    pub queue_depth: Gauge,
    pub sync_runs: Family<SyncLabels, Counter>,
    /// Events sent to a retry tier, by cause.
    pub retries: Family<RetryLabels, Counter>,
    pub changes_written: Counter,
    pub changes_published: Counter,
    /// Age of the oldest unpublished change (0 when none), as the leading relay sees it.
    pub relay_lag_seconds:
        prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    pub outbox_depth: Gauge,
    pub relay_leader: Gauge,
    pub brake_engaged: Family<OrgLabels, Gauge>,
    pub brake_held: Family<OrgLabels, Gauge>,
    /// Changes delivered (answered 2xx), per endpoint.
    pub push_delivered: Family<EndpointLabels, Counter>,
    /// Attempts that failed (non-2xx, timeout, connection), per endpoint.
    pub push_failed: Family<EndpointLabels, Counter>,
    /// Age of the oldest change not yet delivered, per endpoint (delivery leader only).
    pub push_lag_seconds: Family<EndpointLabels, FloatGauge>,
    /// 1 while the endpoint is paused (delivery leader only).
    pub push_paused: Family<EndpointLabels, Gauge>,
    pub push_leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The label for an event type string.
pub fn type_label(event_type: &str) -> &'static str {
    EventType::from_wire(event_type).map_or("unknown", EventType::as_str)
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            EVENTS,
            "Events handled, by type and outcome",
            events.clone(),
        );
        let apply_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            APPLY_SECONDS,
            "Time to apply one event (transaction included)",
            apply_seconds.clone(),
        );
        let lag_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 20));
        registry.register(
            LAG_SECONDS,
            "now − occurred_at when an event is applied",
            lag_seconds.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(IN_FLIGHT, "Deliveries being handled", in_flight.clone());
        let ready = Gauge::default();
        registry.register(
            READY,
            "1 while broker, consumer and database are up",
            ready.clone(),
        );
        let sync_users = Counter::default();
        registry.register(
            SYNC_USERS,
            "Users listed by directory syncs",
            sync_users.clone(),
        );
        let retries = Family::<RetryLabels, Counter>::default();
        registry.register(
            RETRIES,
            "Events sent to a retry tier, by cause (lock_timeout, deadlock, statement_timeout, database_unavailable, database)",
            retries.clone(),
        );
        for cause in [
            "lock_timeout",
            "deadlock",
            "statement_timeout",
            "database_unavailable",
            "database",
        ] {
            let _ = retries.get_or_create(&RetryLabels { cause });
        }
        let sync_runs = Family::<SyncLabels, Counter>::default();
        registry.register(
            SYNC_RUNS,
            "Directory syncs by outcome (ok, failed, skipped)",
            sync_runs.clone(),
        );
        // Exported at 0 from the start: `increase()` over a sync that never failed is 0.
        for outcome in ["ok", "failed", "skipped"] {
            let _ = sync_runs.get_or_create(&SyncLabels { outcome });
        }
        let dlq_depth = Gauge::default();
        registry.register(
            DLQ_DEPTH,
            "Messages in the dead-letter queue (sampled every 15 s)",
            dlq_depth.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            QUEUE_DEPTH,
            "Ready messages in the apply queue (sampled every 15 s)",
            queue_depth.clone(),
        );
        let changes_written = Counter::default();
        registry.register(
            CHANGES_WRITTEN,
            "Net changes committed to the change feed's outbox",
            changes_written.clone(),
        );
        let changes_published = Counter::default();
        registry.register(
            CHANGES_PUBLISHED,
            "Changes the relay published (confirmed) to the changes exchange",
            changes_published.clone(),
        );
        let relay_lag_seconds =
            prometheus_client::metrics::gauge::Gauge::<f64, std::sync::atomic::AtomicU64>::default(
            );
        registry.register(
            RELAY_LAG,
            "Age of the oldest unpublished change, seconds (leading relay only; 0 when none)",
            relay_lag_seconds.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            OUTBOX_DEPTH,
            "Unpublished changes in the outbox (leading relay only)",
            outbox_depth.clone(),
        );
        let relay_leader = Gauge::default();
        registry.register(
            RELAY_LEADER,
            "1 while this worker is the deployment's change relay",
            relay_leader.clone(),
        );
        let brake_engaged = Family::<OrgLabels, Gauge>::default();
        registry.register(
            BRAKE_ENGAGED,
            "1 while the deprovisioning brake holds deactivations of the organization (sampled every 5 s)",
            brake_engaged.clone(),
        );
        let brake_held = Family::<OrgLabels, Gauge>::default();
        registry.register(
            BRAKE_HELD,
            "Deactivating events the deprovisioning brake holds, per organization (sampled every 5 s)",
            brake_held.clone(),
        );
        let push_delivered = Family::<EndpointLabels, Counter>::default();
        registry.register(
            WEBHOOK_DELIVERED,
            "Changes delivered to the endpoint (answered 2xx)",
            push_delivered.clone(),
        );
        let push_failed = Family::<EndpointLabels, Counter>::default();
        registry.register(
            WEBHOOK_FAILED,
            "Delivery attempts that failed (non-2xx, timeout, connection), retried",
            push_failed.clone(),
        );
        let push_lag_seconds = Family::<EndpointLabels, FloatGauge>::default();
        registry.register(
            WEBHOOK_LAG,
            "Age of the oldest change not yet delivered to the endpoint, seconds (delivery leader only; 0 when none)",
            push_lag_seconds.clone(),
        );
        let push_paused = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            WEBHOOK_PAUSED,
            "1 while the endpoint is paused (delivery leader only)",
            push_paused.clone(),
        );
        let push_leader = Gauge::default();
        registry.register(
            WEBHOOK_LEADER,
            "1 while this worker delivers the change feed to the configured endpoints",
            push_leader.clone(),
        );
        Self {
            registry,
            push_delivered,
            push_failed,
            push_lag_seconds,
            push_paused,
            push_leader,
            brake_engaged,
            brake_held,
            changes_written,
            changes_published,
            relay_lag_seconds,
            outbox_depth,
            relay_leader,
            dlq_depth,
            queue_depth,
            sync_users,
            sync_runs,
            retries,
            events,
            apply_seconds,
            lag_seconds,
            in_flight,
            ready,
        }
    }

    pub fn count(&self, event_type: &str, outcome: &'static str) {
        self.events
            .get_or_create(&EventLabels {
                r#type: type_label(event_type),
                outcome,
            })
            .inc();
    }

    pub fn count_retry(&self, cause: &'static str) {
        self.retries.get_or_create(&RetryLabels { cause }).inc();
    }

    pub fn count_sync(&self, outcome: &'static str) {
        self.sync_runs.get_or_create(&SyncLabels { outcome }).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
