//! The RabbitMQ message contract (`docs/architecture.md`, "Message contract") as plain data: names derived from the prefix,
//! header names, and the metadata every message carries. ingest, worker and tests share it.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// Header names carried on every message.
pub mod header {
    pub const WEBHOOK_ID: &str = "webhook-id";
    pub const EVENT_TYPE: &str = "event-type";
    pub const ORGANIZATION_ID: &str = "organization-id";
    pub const OCCURRED_AT: &str = "occurred-at";
    pub const SOURCE: &str = "source";
    /// How many retry tiers the message went through.
    pub const RETRY_COUNT: &str = "x-retry-count";
    /// How many times an operator replayed it from the dead-letter queue.
    pub const REPLAY_COUNT: &str = "x-replay-count";
    /// Why it was dead-lettered (see [`super::DeadReason`]).
    pub const DEAD_REASON: &str = "x-dead-reason";
    /// The error text that dead-lettered it.
    pub const DEAD_ERROR: &str = "x-dead-error";
    /// When it was first dead-lettered (RFC 3339).
    pub const FIRST_DEAD_AT: &str = "x-first-dead-at";
    /// Which retry tier queue a message is headed for (headers-exchange binding key).
    pub const RETRY_TIER: &str = "x-retry-tier";
}

/// HTTP routes both binaries serve for probes and scraping.
pub mod routes {
    /// Liveness: the process is alive (and, for the worker, its consume loop is not wedged).
    pub const HEALTHZ: &str = "/healthz";
    /// Readiness: dependencies are up.
    pub const READYZ: &str = "/readyz";
    /// Prometheus text exposition.
    pub const METRICS: &str = "/metrics";
}

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Webhook,
    Sync,
    Replay,
}

impl Source {
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::Sync => "sync",
            Source::Replay => "replay",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "webhook" => Some(Source::Webhook),
            "sync" => Some(Source::Sync),
            "replay" => Some(Source::Replay),
            _ => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a message sits in the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadReason {
    /// Signed, but not a valid envelope (ingest) or not parseable (worker).
    Malformed,
    /// Parsed, but cannot be applied (missing ids, constraint the data violates).
    Invalid,
    /// Transient failures outlasted every retry tier.
    RetriesExhausted,
}

impl DeadReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeadReason::Malformed => "malformed",
            DeadReason::Invalid => "invalid",
            DeadReason::RetriesExhausted => "retries_exhausted",
        }
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One retry tier: a queue whose messages wait `delay` and then dead-letter back to the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryTier {
    /// Part of the tier's queue name, e.g. `5s` in `scim.events.retry.5s`.
    pub name: Cow<'static, str>,
    pub delay: Duration,
}

impl RetryTier {
    pub fn new(name: impl Into<String>, delay: Duration) -> Self {
        Self {
            name: Cow::Owned(name.into()),
            delay,
        }
    }
}

/// The default tiers: 5 s, 30 s, 5 min, 30 min. After the last, a message is dead-lettered.
pub const RETRY_TIERS: [RetryTier; 4] = [
    RetryTier {
        name: Cow::Borrowed("5s"),
        delay: Duration::from_secs(5),
    },
    RetryTier {
        name: Cow::Borrowed("30s"),
        delay: Duration::from_secs(30),
    },
    RetryTier {
        name: Cow::Borrowed("5m"),
        delay: Duration::from_secs(300),
    },
    RetryTier {
        name: Cow::Borrowed("30m"),
        delay: Duration::from_secs(1800),
    },
];

/// Redeliveries of one message (e.g. worker crashes) before the broker dead-letters it.
pub const DELIVERY_LIMIT: i64 = 20;

/// The dead-letter queue's delivery limit: high enough never to be reached by operators reading
/// it (each `dlq list` returns what it held, which counts as a delivery), and explicit, so that
/// RabbitMQ 4's default quorum-queue limit (20) does not apply. A message over a delivery limit
/// is dead-lettered, and a dead letter that cycles back into the same queue without a rejection
/// is dropped: the self-dead-lettering below alone would not save it.
pub const DEAD_DELIVERY_LIMIT: i64 = 1_000_000_000;

pub const DEFAULT_PREFIX: &str = "scim";

mod topology;
pub use topology::{DEFAULT_QUORUM_GROUP_SIZE, Topology};

/// The metadata of one message (properties + headers), independent of the AMQP library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// `message_id` property: the event id (`evt_…`), or the webhook id for a malformed body.
    pub message_id: String,
    pub webhook_id: Option<String>,
    /// Also the routing key.
    pub event_type: String,
    pub organization_id: Option<String>,
    /// RFC 3339 as received.
    pub occurred_at: Option<String>,
    pub source: Source,
    pub retry_count: u32,
    pub replay_count: u32,
}

impl MessageMeta {
    /// A new message for an event: message id = event id, not retried or replayed yet.
    pub fn event(
        event_id: impl Into<String>,
        event_type: impl Into<String>,
        organization_id: Option<String>,
        source: Source,
    ) -> Self {
        Self {
            message_id: event_id.into(),
            webhook_id: None,
            event_type: event_type.into(),
            organization_id,
            occurred_at: None,
            source,
            retry_count: 0,
            replay_count: 0,
        }
    }

    /// The message for a parsed envelope (its id, type, organization and time).
    pub fn of_envelope<D>(envelope: &crate::EnvelopeOf<D>, source: Source) -> Self {
        Self {
            occurred_at: Some(
                envelope
                    .occurred_at
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ),
            ..Self::event(
                envelope.id.as_str(),
                envelope.event_type.as_str(),
                envelope
                    .organization_id
                    .as_ref()
                    .map(|o| o.as_str().to_owned()),
                source,
            )
        }
    }

    /// A signed webhook body that is not an envelope: it travels under its webhook id, with
    /// `malformed` as its type (and routing key), to the dead-letter exchange.
    pub fn malformed(webhook_id: impl Into<String>) -> Self {
        let webhook_id = webhook_id.into();
        Self::event(
            webhook_id.clone(),
            DeadReason::Malformed.as_str(),
            None,
            Source::Webhook,
        )
        .with_webhook_id(webhook_id)
    }

    /// The `webhook-id` Scalekit sent it with.
    pub fn with_webhook_id(mut self, webhook_id: impl Into<String>) -> Self {
        self.webhook_id = Some(webhook_id.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let t = Topology::new("t1");
        assert_eq!(t.exchange(), "t1.events");
        assert_eq!(t.apply_queue(), "t1.events.apply");
        assert_eq!(t.dead_exchange(), "t1.events.dlx");
        assert_eq!(t.dead_queue(), "t1.events.dead");
        assert_eq!(t.retry_exchange(), "t1.events.retry");
        assert_eq!(t.retry_queue(&RETRY_TIERS[0]), "t1.events.retry.5s");
        assert_eq!(Topology::default().apply_queue(), "scim.events.apply");
        assert_eq!(t.changes_exchange(), "t1.changes");
        assert_eq!(t.changes_stream(), "t1.changes.log");
    }

    #[test]
    fn tiers_then_dead_letter() {
        let t = Topology::default();
        assert_eq!(t.next_tier(0).map(|t| t.name.as_ref()), Some("5s"));
        assert_eq!(t.next_tier(3).map(|t| t.name.as_ref()), Some("30m"));
        assert_eq!(t.next_tier(4), None);
    }

    #[test]
    fn constructors_fill_the_contract_fields() {
        let body = br#"{"spec_version":"1","id":"evt_1","type":"organization.directory.user_created","occurred_at":"2025-01-01T00:00:00.5Z","environment_id":"env_1","organization_id":"org_1","object":"DirectoryUser","data":{}}"#;
        let env: crate::EnvelopeHead =
            serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}"));
        let meta = MessageMeta::of_envelope(&env, Source::Webhook).with_webhook_id("msg_1");
        assert_eq!(meta.message_id, "evt_1");
        assert_eq!(meta.event_type, "organization.directory.user_created");
        assert_eq!(meta.organization_id.as_deref(), Some("org_1"));
        assert_eq!(
            meta.occurred_at.as_deref(),
            Some("2025-01-01T00:00:00.500Z")
        );
        assert_eq!(meta.webhook_id.as_deref(), Some("msg_1"));
        assert_eq!((meta.retry_count, meta.replay_count), (0, 0));
        let bad = MessageMeta::malformed("msg_2");
        assert_eq!(
            (
                bad.message_id.as_str(),
                bad.event_type.as_str(),
                bad.webhook_id.as_deref()
            ),
            ("msg_2", "malformed", Some("msg_2"))
        );
    }

    #[test]
    fn sources_parse() {
        for s in [Source::Webhook, Source::Sync, Source::Replay] {
            assert_eq!(Source::parse(s.as_str()), Some(s));
        }
        assert_eq!(Source::parse("other"), None);
    }
}
