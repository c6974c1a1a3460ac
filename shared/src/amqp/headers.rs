//! [`MessageMeta`] ⇄ AMQP properties and headers.

use crate::contract::{DeadReason, MessageMeta, Source, header};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

fn put_str(table: &mut FieldTable, key: &str, value: &str) {
    table.insert(
        ShortString::from(key),
        AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
    );
}

/// Properties and headers as the contract says: persistent, JSON, message id = event id.
pub fn properties(meta: &MessageMeta) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(id) = &meta.webhook_id {
        put_str(&mut headers, header::WEBHOOK_ID, id);
    }
    put_str(&mut headers, header::EVENT_TYPE, &meta.event_type);
    if let Some(org) = &meta.organization_id {
        put_str(&mut headers, header::ORGANIZATION_ID, org);
    }
    if let Some(at) = &meta.occurred_at {
        put_str(&mut headers, header::OCCURRED_AT, at);
    }
    put_str(&mut headers, header::SOURCE, meta.source.as_str());
    if meta.retry_count > 0 {
        headers.insert(
            header::RETRY_COUNT.into(),
            AMQPValue::LongLongInt(meta.retry_count.into()),
        );
    }
    if meta.replay_count > 0 {
        headers.insert(
            header::REPLAY_COUNT.into(),
            AMQPValue::LongLongInt(meta.replay_count.into()),
        );
    }
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default();
    BasicProperties::default()
        .with_message_id(meta.message_id.as_str().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_timestamp(now)
        .with_headers(headers)
}

/// A text header (long or short string).
pub fn header_str<'a>(props: &'a BasicProperties, name: &str) -> Option<&'a str> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// A counter header, whatever integer type a client used; absent or invalid reads as 0.
pub fn header_u32(props: &BasicProperties, name: &str) -> u32 {
    let Some(value) = props.headers().as_ref().and_then(|h| h.inner().get(name)) else {
        return 0;
    };
    let n: i64 = match value {
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => *v,
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes())
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    };
    u32::try_from(n).unwrap_or(0)
}

/// Reads the contract metadata back from a delivery's properties.
pub fn meta_from_properties(props: &BasicProperties, routing_key: &str) -> MessageMeta {
    let message_id = props
        .message_id()
        .as_ref()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    MessageMeta {
        message_id,
        webhook_id: header_str(props, header::WEBHOOK_ID).map(str::to_owned),
        event_type: header_str(props, header::EVENT_TYPE)
            .unwrap_or(routing_key)
            .to_owned(),
        organization_id: header_str(props, header::ORGANIZATION_ID).map(str::to_owned),
        occurred_at: header_str(props, header::OCCURRED_AT).map(str::to_owned),
        source: header_str(props, header::SOURCE)
            .and_then(Source::parse)
            .unwrap_or(Source::Webhook),
        retry_count: header_u32(props, header::RETRY_COUNT),
        replay_count: header_u32(props, header::REPLAY_COUNT),
    }
}

/// Adds the dead-letter headers: reason, error text (truncated to 1 KiB) and, unless already
/// set by an earlier dead-lettering, the time it was first dead-lettered.
pub fn mark_dead(props: BasicProperties, reason: DeadReason, error: &str) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    put_str(&mut headers, header::DEAD_REASON, reason.as_str());
    let error = crate::redact::escape_controls(error);
    let mut end = error.len().min(1024);
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    put_str(&mut headers, header::DEAD_ERROR, &error[..end]);
    if !headers.contains_key(header::FIRST_DEAD_AT) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        put_str(&mut headers, header::FIRST_DEAD_AT, &now);
    }
    props.with_headers(headers)
}
