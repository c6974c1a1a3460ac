//! Pure: what an operator needs to know about a dead-lettered message, read from its
//! properties, and the filters that select messages.

use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::types::AMQPValue;
use serde::Serialize;
use shared::amqp::{header_str, header_u32};
use shared::contract::header;

/// One message of the dead-letter queue.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DeadMessage {
    pub event_id: String,
    pub event_type: String,
    pub organization_id: Option<String>,
    pub reason: String,
    pub error: Option<String>,
    pub retry_count: u32,
    pub replay_count: u32,
    pub first_dead_at: Option<DateTime<Utc>>,
    pub webhook_id: Option<String>,
    pub source: Option<String>,
    pub routing_key: String,
}

/// The reason RabbitMQ itself recorded (`x-death[0].reason`, e.g. `delivery_limit`).
fn broker_reason(props: &BasicProperties) -> Option<String> {
    let deaths = props.headers().as_ref()?.inner().get("x-death")?;
    let AMQPValue::FieldArray(arr) = deaths else {
        return None;
    };
    let AMQPValue::FieldTable(first) = arr.as_slice().first()? else {
        return None;
    };
    match first.inner().get("reason")? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok().map(str::to_owned),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

impl DeadMessage {
    pub fn from_delivery(props: &BasicProperties, routing_key: &str) -> Self {
        let first_dead_at = header_str(props, header::FIRST_DEAD_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .or_else(|| {
                props
                    .timestamp()
                    .and_then(|t| i64::try_from(t).ok())
                    .and_then(|t| DateTime::from_timestamp(t, 0))
            });
        Self {
            event_id: props
                .message_id()
                .as_ref()
                .map(|m| m.as_str().to_owned())
                .unwrap_or_default(),
            event_type: header_str(props, header::EVENT_TYPE)
                .unwrap_or(routing_key)
                .to_owned(),
            organization_id: header_str(props, header::ORGANIZATION_ID).map(str::to_owned),
            reason: header_str(props, header::DEAD_REASON)
                .map(str::to_owned)
                .or_else(|| broker_reason(props))
                .unwrap_or_else(|| "unknown".to_owned()),
            error: header_str(props, header::DEAD_ERROR).map(str::to_owned),
            retry_count: header_u32(props, header::RETRY_COUNT),
            replay_count: header_u32(props, header::REPLAY_COUNT),
            first_dead_at,
            webhook_id: header_str(props, header::WEBHOOK_ID).map(str::to_owned),
            source: header_str(props, header::SOURCE).map(str::to_owned),
            routing_key: routing_key.to_owned(),
        }
    }
}

/// Which messages a command acts on. Empty filters match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub event_type: Option<String>,
    pub organization_id: Option<String>,
    pub reason: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub ids: Vec<String>,
}

impl Filter {
    pub fn matches(&self, m: &DeadMessage) -> bool {
        self.event_type.as_ref().is_none_or(|t| *t == m.event_type)
            && self
                .organization_id
                .as_ref()
                .is_none_or(|o| m.organization_id.as_ref() == Some(o))
            && self.reason.as_ref().is_none_or(|r| *r == m.reason)
            && self
                .since
                .is_none_or(|s| m.first_dead_at.is_some_and(|at| at >= s))
            && (self.ids.is_empty() || self.ids.contains(&m.event_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::amqp::{mark_dead, properties};
    use shared::{DeadReason, MessageMeta, Source};

    fn dead(event_type: &str, org: &str, reason: DeadReason, replays: u32) -> DeadMessage {
        let meta = MessageMeta {
            retry_count: 2,
            replay_count: replays,
            ..MessageMeta::event("evt_1", event_type, Some(org.into()), Source::Webhook)
                .with_webhook_id("msg_1")
        };
        let props = mark_dead(properties(&meta), reason, "boom");
        DeadMessage::from_delivery(&props, event_type)
    }

    #[test]
    fn reads_the_contract_headers() {
        let m = dead(
            "organization.directory.user_created",
            "org_1",
            DeadReason::Invalid,
            1,
        );
        assert_eq!(m.event_id, "evt_1");
        assert_eq!(m.reason, "invalid");
        assert_eq!(m.error.as_deref(), Some("boom"));
        assert_eq!((m.retry_count, m.replay_count), (2, 1));
        assert!(m.first_dead_at.is_some());
    }

    #[test]
    fn filters() {
        let m = dead(
            "organization.directory.user_created",
            "org_1",
            DeadReason::Invalid,
            0,
        );
        assert!(Filter::default().matches(&m));
        assert!(
            Filter {
                event_type: Some(m.event_type.clone()),
                ..Filter::default()
            }
            .matches(&m)
        );
        assert!(
            !Filter {
                organization_id: Some("org_2".into()),
                ..Filter::default()
            }
            .matches(&m)
        );
        assert!(
            !Filter {
                reason: Some("malformed".into()),
                ..Filter::default()
            }
            .matches(&m)
        );
        assert!(
            Filter {
                ids: vec!["evt_1".into()],
                ..Filter::default()
            }
            .matches(&m)
        );
        assert!(
            !Filter {
                ids: vec!["evt_2".into()],
                ..Filter::default()
            }
            .matches(&m)
        );
        let future = Utc::now() + chrono::Duration::hours(1);
        assert!(
            !Filter {
                since: Some(future),
                ..Filter::default()
            }
            .matches(&m)
        );
    }
}
