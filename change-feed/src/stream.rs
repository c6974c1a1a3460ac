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
    /// A message that is not a change of a known kind: the reader stops rather than skip it
    /// (a skipped change is a gap the application cannot see).
    #[error("change seq {seq} (stream offset {offset}) does not parse: {reason}", seq = seq.map_or_else(|| "unknown".to_owned(), |s| s.to_string()))]
    Corrupt {
        seq: Option<i64>,
        offset: u64,
        reason: String,
    },
}

/// Kinds this reader does not know, counted; each is logged the first time it is seen.
#[derive(Debug, Default)]
pub struct UnknownKinds(std::collections::BTreeMap<String, u64>);

impl UnknownKinds {
    /// Counts one change of `kind`; true the first time.
    pub fn note(&mut self, kind: &str) -> bool {
        let n = self.0.entry(kind.to_owned()).or_default();
        *n += 1;
        *n == 1
    }

    /// How many changes of `kind` were seen.
    pub fn count(&self, kind: &str) -> u64 {
        self.0.get(kind).copied().unwrap_or_default()
    }
}

/// A delivery's body as a change. A kind this version does not know comes back as
/// [`shared::changes::ChangeKind::Other`], noted in `unknown` (and logged the first time); a
/// body that is no change at all is [`FeedError::Corrupt`].
pub fn decode<E: std::error::Error + 'static>(
    body: &[u8],
    offset: u64,
    unknown: &mut UnknownKinds,
) -> Result<Change, FeedError<E>> {
    #[derive(serde::Deserialize)]
    struct Head {
        seq: Option<i64>,
        kind: Option<String>,
    }
    match serde_json::from_slice::<Change>(body) {
        Ok(change) => {
            if change.kind == shared::changes::ChangeKind::Other {
                let kind = serde_json::from_slice::<Head>(body)
                    .ok()
                    .and_then(|h| h.kind)
                    .unwrap_or_default();
                if unknown.note(&kind) {
                    tracing::warn!(
                        kind = %shared::redact::for_log(&kind),
                        seq = change.seq,
                        "change kind unknown to this reader: handed on as `other` (further ones are counted, not logged)"
                    );
                }
            }
            Ok(change)
        }
        Err(error) => Err(FeedError::Corrupt {
            seq: serde_json::from_slice::<Head>(body)
                .ok()
                .and_then(|h| h.seq),
            offset,
            reason: error.to_string(),
        }),
    }
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
            Err(e @ (FeedError::App(_) | FeedError::Corrupt { .. })) => return Err(e),
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
    let mut unknown = UnknownKinds::default();
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
        let change = decode(&delivery.data, offset, &mut unknown)?;
        if !already_applied(last_seq, &change) {
            let at = Position {
                seq: change.seq,
                offset,
            };
            app.apply(&change, at).await.map_err(FeedError::App)?;
            last_seq = Some(change.seq);
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

    #[test]
    fn unknown_kinds_pass_as_other_and_a_broken_change_stops_the_reader() {
        let mut unknown = UnknownKinds::default();
        let newer = br#"{"id":"chg_3","seq":3,"kind":"user.suspended","organization_id":"o",
            "cause_event_id":"e","occurred_at":"2026-01-01T00:00:00Z",
            "committed_at":"2026-01-01T00:00:00Z"}"#;
        for _ in 0..3 {
            let change = decode::<std::io::Error>(newer, 7, &mut unknown).unwrap();
            assert_eq!((change.kind, change.seq), (ChangeKind::Other, 3));
        }
        assert_eq!(unknown.count("user.suspended"), 3);
        assert!(!unknown.note("user.suspended"), "logged once");
        let broken = br#"{"id":"chg_4","seq":4,"kind":"user.updated","organization_id":"o"}"#;
        match decode::<std::io::Error>(broken, 8, &mut unknown) {
            Err(
                e @ FeedError::Corrupt {
                    seq: Some(4),
                    offset: 8,
                    ..
                },
            ) => {
                assert!(
                    e.to_string().starts_with("change seq 4 (stream offset 8)"),
                    "{e}"
                );
            }
            other => panic!("{other:?}"),
        }
        match decode::<std::io::Error>(b"not json", 9, &mut unknown) {
            Err(FeedError::Corrupt { seq: None, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
