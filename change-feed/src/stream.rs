//! Reading the stream: subscribe after the stored offset, skip what was applied, hand the rest
//! to the application in order, reconnect with backoff when the broker goes away.

use crate::decode::{FeedError, UnknownKinds, decode};
use crate::silence::{Silence, newest_seq, silence};
use crate::stats::FeedStats;
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
    /// With no delivery for this long, look at the stream's newest change: if it is past the
    /// last one applied, and still is at the next look a period later with nothing arrived in
    /// between, the subscription has gone silent (a reader left on a stream member that
    /// stopped receiving, or waiting at an offset a restarted member reused) and is replaced
    /// by a fresh one, from a little before the last applied change's commit time.
    pub check_silence_after: Duration,
    /// What happened so far (shared: clone the config, read the same counters).
    pub stats: FeedStats,
    /// Where to begin when the application has no stored position (default: the oldest
    /// change the stream keeps).
    pub start: Start,
}

/// Where a reader without a stored position begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// The oldest change the stream keeps: a new application catches up on everything
    /// retained.
    #[default]
    First,
    /// Only changes published from the first subscription on.
    Next,
    /// Changes published since this time (the stream's chunk that holds it, so a few earlier
    /// ones may come first).
    Since(chrono::DateTime<chrono::Utc>),
}

impl FeedConfig {
    /// The feed of the deployment whose `AMQP_PREFIX` is `prefix`.
    pub fn new(amqp_url: impl Into<String>, prefix: &str, connection_name: &str) -> Self {
        Self {
            amqp_url: amqp_url.into(),
            stream: format!("{prefix}.changes.log"),
            prefetch: 200,
            connection_name: connection_name.to_owned(),
            check_silence_after: Duration::from_secs(3),
            stats: FeedStats::default(),
            start: Start::First,
        }
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
        .with_max_delay(MAX_RECONNECT_DELAY)
        .with_jitter()
        .without_max_times();
    let mut delays = builder.build();
    // After a silent subscription: where to resume instead of the stored offset.
    let mut resume_at: Option<ResumeAt> = None;
    // The commit time of the newest change read in this process (for resuming by time).
    let mut last_committed: Option<i64> = None;
    // When this reader began (where `Start::Next` resumes after a silence before any change).
    let began = chrono::Utc::now().timestamp();
    loop {
        let mut subscribed = false;
        let followed = follow(
            config,
            app,
            stop,
            resume_at.take(),
            &mut last_committed,
            began,
            &mut subscribed,
        )
        .await;
        // A subscription that was made ends the outage before it: the next one starts again
        // from the shortest delay (kept growing, the delay reached its cap after a few broker
        // restarts and the reader came back up to twice that long after the broker did).
        if subscribed {
            delays = builder.build();
        }
        match followed {
            Ok(Followed::Stopped) => return Ok(()),
            Ok(Followed::Silent {
                last_seq,
                newest_seq,
                since,
            }) => {
                config.stats.count_silent();
                tracing::warn!(
                    last_seq,
                    newest_seq,
                    resubscriptions = config.stats.silent_resubscriptions(),
                    "change feed: subscription silent while the feed moved on; subscribing again"
                );
                resume_at = Some(since);
            }
            Err(e @ (FeedError::App(_) | FeedError::Corrupt { .. })) => return Err(e),
            Err(FeedError::Broker(error)) => {
                config.stats.count_broker_failure();
                let delay = delays.next().unwrap_or(MAX_RECONNECT_DELAY);
                tracing::warn!(error = %shared::Chain(&error), ?delay, "change feed: broker failed; resuming");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// The longest wait before connecting again (jitter adds up to as much again).
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy)]
enum ResumeAt {
    /// The stored position's offset + 1 (the usual case).
    Offset,
    /// A stream timestamp (seconds): a little before the last applied change was committed.
    Time(i64),
    /// The start of what the stream keeps: after a silence before any change was read in this
    /// process (the stored offset itself may point past a member's end).
    First,
}

/// Where a subscription found silent starts again: a little before the last change read in
/// this process; before any, from the start of what the stream keeps when the application has
/// a position (its offset may point past a member's end; what it applied is skipped by `seq`),
/// else from where the reader began.
fn resume_after_silence(
    last_committed: Option<i64>,
    position: Option<Position>,
    start: Start,
    began: i64,
) -> ResumeAt {
    match (last_committed, position, start) {
        (Some(t), _, _) => ResumeAt::Time(t - RESUME_MARGIN_SECONDS),
        (None, Some(_), _) | (None, None, Start::First) => ResumeAt::First,
        (None, None, Start::Since(t)) => ResumeAt::Time(t.timestamp()),
        (None, None, Start::Next) => ResumeAt::Time(began),
    }
}

/// How far before the last applied change a resubscription after silence starts: changes
/// already applied are skipped by `seq`, so reading a little more is free of effects.
const RESUME_MARGIN_SECONDS: i64 = 60;

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
pub(crate) const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Connects and subscribes to the stream just after `position` (or from `at`).
async fn subscribe(
    config: &FeedConfig,
    position: Option<Position>,
    at: ResumeAt,
) -> Result<(lapin::Connection, lapin::Channel, lapin::Consumer), lapin::Error> {
    let connection = shared::amqp::connect(&config.amqp_url, &config.connection_name).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(config.prefetch.max(1), BasicQosOptions::default())
        .await?;
    let mut args = FieldTable::default();
    let start = match (at, position) {
        (ResumeAt::Time(secs), _) => AMQPValue::Timestamp(u64::try_from(secs).unwrap_or(0)),
        (ResumeAt::Offset, Some(p)) => {
            AMQPValue::LongLongInt(i64::try_from(p.offset.saturating_add(1)).unwrap_or(i64::MAX))
        }
        (ResumeAt::Offset, None) => match config.start {
            Start::First => AMQPValue::LongString(LongString::from(b"first".to_vec())),
            Start::Next => AMQPValue::LongString(LongString::from(b"next".to_vec())),
            Start::Since(t) => AMQPValue::Timestamp(u64::try_from(t.timestamp()).unwrap_or(0)),
        },
        (ResumeAt::First, _) => AMQPValue::LongString(LongString::from(b"first".to_vec())),
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
    /// Nothing arrived for `check_silence_after` although the stream holds newer changes.
    Silent {
        last_seq: i64,
        newest_seq: i64,
        since: ResumeAt,
    },
}

async fn follow<A: Application>(
    config: &FeedConfig,
    app: &mut A,
    stop: &CancellationToken,
    resume_at: Option<ResumeAt>,
    last_committed: &mut Option<i64>,
    began: i64,
    made_subscription: &mut bool,
) -> Result<Followed, FeedError<A::Error>> {
    let position = app.position().await.map_err(FeedError::App)?;
    // Subscribing is bounded: a broker still starting (or a stream whose leader is moving) has
    // been seen to leave the consume request unanswered, which would hold the feed for good.
    let at = resume_at.unwrap_or(ResumeAt::Offset);
    let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe(config, position, at)).await;
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
    config.stats.count_subscription();
    *made_subscription = true;
    let mut last_seq = position.map(|p| p.seq);
    // The stream's newest `seq` as the last check saw it past `last_seq`, nothing having
    // arrived since ([`silence`]).
    let mut suspect: Option<i64> = None;
    let mut unknown = UnknownKinds::default();
    tracing::info!(stream = %config.stream, ?position, ?at, "following the change feed");
    let ended = loop {
        let delivery = tokio::select! {
            _ = stop.cancelled() => break Followed::Stopped,
            _ = tokio::time::sleep(config.check_silence_after) => {
                config.stats.count_check();
                let newest = newest_seq(&connection, config).await?;
                match silence(suspect, newest, last_seq) {
                    Silence::No => {
                        suspect = None;
                        continue;
                    }
                    Silence::Suspected(newest_seq) => {
                        config.stats.count_suspected();
                        suspect = Some(newest_seq);
                        continue;
                    }
                    Silence::Yes(newest_seq) => {
                        let since = resume_after_silence(*last_committed, position, config.start, began);
                        break Followed::Silent {
                            last_seq: last_seq.unwrap_or(0),
                            newest_seq,
                            since,
                        };
                    }
                }
            }
            next = consumer.next() => match next {
                Some(d) => {
                    suspect = None;
                    d?
                }
                None => return Err(FeedError::Broker(lapin::Error::from(
                    lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed),
                ))),
            },
        };
        let offset = stream_offset(delivery.properties.headers().as_ref()).unwrap_or_default();
        let change = decode(&delivery.data, offset, &mut unknown)?;
        *last_committed = Some(change.committed_at.timestamp());
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
    fn a_silent_reader_resumes_where_it_read_or_where_it_began() {
        let at = |r: ResumeAt| format!("{r:?}");
        let pos = Some(Position { seq: 5, offset: 9 });
        let since = chrono::DateTime::<chrono::Utc>::from_timestamp(1_000, 0).unwrap_or_default();
        assert_eq!(
            at(resume_after_silence(Some(500), None, Start::Next, 9)),
            "Time(440)"
        );
        assert_eq!(at(resume_after_silence(None, pos, Start::Next, 9)), "First");
        assert_eq!(
            at(resume_after_silence(None, None, Start::First, 9)),
            "First"
        );
        assert_eq!(
            at(resume_after_silence(None, None, Start::Next, 9)),
            "Time(9)"
        );
        assert_eq!(
            at(resume_after_silence(None, None, Start::Since(since), 9)),
            "Time(1000)"
        );
    }
}
