//! Confirmed publishes of a delivery to a retry tier or to the dead-letter exchange. The
//! original is acked only after the broker confirmed the copy.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, LongString};
use shared::amqp::{BrokerLink, PublishError, mark_dead, publish_confirmed};
use shared::contract::header;
use shared::{DeadReason, RetryTier, Topology};
use std::time::Duration;

const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends a copy to `tier`'s queue with `x-retry-count` = `retry_count`.
pub async fn to_retry(
    link: &BrokerLink,
    topology: &Topology,
    tier: &RetryTier,
    retry_count: u32,
    routing_key: &str,
    body: &[u8],
    props: &BasicProperties,
) -> Result<(), PublishError> {
    let mut headers = props.headers().clone().unwrap_or_default();
    headers.insert(
        header::RETRY_COUNT.into(),
        AMQPValue::LongLongInt(retry_count.into()),
    );
    headers.insert(
        header::RETRY_TIER.into(),
        AMQPValue::LongString(LongString::from(tier.name.as_bytes().to_vec())),
    );
    let props = props.clone().with_headers(headers);
    let channel = link.channel()?;
    publish_confirmed(
        &channel,
        &topology.retry_exchange(),
        routing_key,
        body,
        props,
        CONFIRM_TIMEOUT,
    )
    .await
}

/// Sends a copy to the dead-letter queue with its reason and error text.
pub async fn to_dead(
    link: &BrokerLink,
    topology: &Topology,
    reason: DeadReason,
    error: &str,
    routing_key: &str,
    body: &[u8],
    props: &BasicProperties,
) -> Result<(), PublishError> {
    let props = mark_dead(props.clone(), reason, error);
    let channel = link.channel()?;
    publish_confirmed(
        &channel,
        &topology.dead_exchange(),
        routing_key,
        body,
        props,
        CONFIRM_TIMEOUT,
    )
    .await
}
