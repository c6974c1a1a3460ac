//! Reading the stream: subscribe after the stored offset, skip what was applied, hand the rest
//! to the application in order, reconnect with backoff when the broker goes away.

use crate::{Application, Position};
use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use shared::changes::Change;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Where the feed is.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    pub amqp_url: String,
    /// `{prefix}.changes.log`.
    pub stream: String,
    /// Deliveries in flight (streams need a prefetch).
    pub prefetch: u16,
    /// Shown in the RabbitMQ dashboard.
    pub connection_name: String,
    /// With no delivery for this long, subscribe again from the stored position (cheap; what
    /// was applied is skipped). A stream reader left on a replica that stopped following its
    /// leader after a node failure would otherwise wait forever.
    pub resubscribe_when_idle: Duration,
}

impl FeedConfig {
    /// The feed of the deployment whose `AMQP_PREFIX` is `prefix`.
    pub fn new(amqp_url: impl Into<String>, prefix: &str, connection_name: &str) -> Self {
        Self {
            amqp_url: amqp_url.into(),
            stream: format!("{prefix}.changes.log"),
            prefetch: 200,
            connection_name: connection_name.to_owned(),
            resubscribe_when_idle: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError<E: std::error::Error + 'static> {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("application: {0}")]
    App(#[source] E),
}

/// Follows the feed until `stop` is cancelled (`Ok`) or the application fails (`Err`); broker
/// failures are retried with backoff, resuming from the stored position.
pub async fn run<A: Application>(
    config: &FeedConfig,
    app: &mut A,
    stop: &CancellationToken,
) -> Result<(), FeedError<A::Error>> {
    let builder = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times();
    let mut delays = builder.build();
    loop {
        match follow(config, app, stop).await {
            Ok(Followed::Stopped) => return Ok(()),
            Ok(Followed::Idle) => {
                tracing::debug!("change feed: idle; subscribing again from the stored position");
            }
            Err(FeedError::App(e)) => return Err(FeedError::App(e)),
            Err(FeedError::Broker(error)) => {
                let delay = delays.next().unwrap_or(Duration::from_secs(10));
                tracing::warn!(%error, ?delay, "change feed: broker failed; resuming");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// The stream offset of a delivery (RabbitMQ sets `x-stream-offset` on each).
fn stream_offset(headers: Option<&FieldTable>) -> Option<u64> {
    match headers?.inner().get("x-stream-offset")? {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::Timestamp(n) => Some(*n),
        _ => None,
    }
}

/// Whether a change was applied already (at or before the stored position).
pub(crate) fn already_applied(last_seq: Option<i64>, change: &Change) -> bool {
    last_seq.is_some_and(|s| change.seq <= s)
}

/// How long connecting and subscribing may take before it is tried again.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Connects and subscribes to the stream just after `position`.
async fn subscribe(
    config: &FeedConfig,
    position: Option<Position>,
) -> Result<(lapin::Connection, lapin::Channel, lapin::Consumer), lapin::Error> {
    let connection = shared::amqp::connect(&config.amqp_url, &config.connection_name).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(config.prefetch.max(1), BasicQosOptions::default())
        .await?;
    let mut args = FieldTable::default();
    let start = match position {
        Some(p) => {
            AMQPValue::LongLongInt(i64::try_from(p.offset.saturating_add(1)).unwrap_or(i64::MAX))
        }
        None => AMQPValue::LongString(LongString::from(b"first".to_vec())),
    };
    args.insert("x-stream-offset".into(), start);
    let consumer = channel
        .basic_consume(
            config.stream.as_str().into(),
            config.connection_name.as_str().into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await?;
    Ok((connection, channel, consumer))
}

/// How [`follow`] ended without an error.
enum Followed {
    Stopped,
    /// Nothing arrived for `resubscribe_when_idle`.
    Idle,
}

async fn follow<A: Application>(
    config: &FeedConfig,
    app: &mut A,
    stop: &CancellationToken,
) -> Result<Followed, FeedError<A::Error>> {
    let position = app.position().await.map_err(FeedError::App)?;
    // Subscribing is bounded: a broker still starting (or a stream whose leader is moving) has
    // been seen to leave the consume request unanswered, which would hold the feed for good.
    let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe(config, position)).await;
    let (connection, channel, mut consumer) = match subscribed {
        Ok(result) => result?,
        Err(_) => {
            return Err(FeedError::Broker(lapin::Error::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no subscription to {} within {SUBSCRIBE_TIMEOUT:?}",
                    config.stream
                ),
            ))));
        }
    };
    let mut last_seq = position.map(|p| p.seq);
    tracing::info!(stream = %config.stream, ?position, "following the change feed");
    let ended = loop {
        let delivery = tokio::select! {
            _ = stop.cancelled() => break Followed::Stopped,
            _ = tokio::time::sleep(config.resubscribe_when_idle) => break Followed::Idle,
            next = consumer.next() => match next {
                Some(d) => d?,
                None => return Err(FeedError::Broker(lapin::Error::from(
                    lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed),
                ))),
            },
        };
        let offset = stream_offset(delivery.properties.headers().as_ref()).unwrap_or_default();
        match serde_json::from_slice::<Change>(&delivery.data) {
            Ok(change) if already_applied(last_seq, &change) => {}
            Ok(change) => {
                let at = Position {
                    seq: change.seq,
                    offset,
                };
                app.apply(&change, at).await.map_err(FeedError::App)?;
                last_seq = Some(change.seq);
            }
            Err(error) => tracing::warn!(%error, offset, "not a change: skipped"),
        }
        // Bounded: an ack on a connection that died under it must not hold the feed.
        tokio::time::timeout(
            SUBSCRIBE_TIMEOUT,
            delivery.acker.ack(BasicAckOptions::default()),
        )
        .await
        .map_err(|_| {
            lapin::Error::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no ack written within the subscribe timeout",
            ))
        })??;
    };
    // Bounded too: closing waits for the broker's answer.
    let close = async {
        let _ = channel.close(200, "stopping".into()).await;
        let _ = connection.close(200, "stopping".into()).await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::changes::{ChangeKind, ChangePayload};

    #[test]
    fn re_published_changes_are_skipped_by_seq() {
        let change = |seq| Change {
            id: format!("chg_{seq}"),
            seq,
            kind: ChangeKind::UserUpdated,
            organization_id: "org_1".into(),
            cause_event_id: "evt_1".into(),
            occurred_at: Default::default(),
            committed_at: Default::default(),
            payload: ChangePayload::default(),
        };
        assert!(!already_applied(None, &change(1)));
        assert!(already_applied(Some(5), &change(5)));
        assert!(already_applied(Some(5), &change(3)));
        assert!(!already_applied(Some(5), &change(9)));
        let mut headers = FieldTable::default();
        headers.insert("x-stream-offset".into(), AMQPValue::LongLongInt(42));
        assert_eq!(stream_offset(Some(&headers)), Some(42));
        assert_eq!(stream_offset(None), None);
    }
}
