//! The relay: publishes unpublished outbox rows to `{prefix}.changes`, in `seq` order, and only
//! then marks them published. Exactly one relay leads per deployment (per database): the one
//! holding a session-level advisory lock on its own connection. When the leader dies its
//! connection closes, the lock is released, and another replica takes over within a second.
//!
//! It wakes on `NOTIFY scim_changes` (sent by every transaction that wrote changes, delivered
//! at commit) and polls as a fallback. Publishing is pipelined: new rows are published while
//! the confirms of earlier ones are awaited, in order, by a confirmer task; a row is marked
//! published once its own confirm (and every earlier one) came back. Publishing is at-least-once: a crash between the
//! broker's confirm and the `published_at` update publishes the same rows again, with the same
//! `id` and `seq`, so consumers skip what they have already applied.

use super::outbox::NOTIFY_CHANNEL;
use super::prune::{self, Retention};
use crate::db::schema::changes as c;
use crate::metrics::Metrics;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::{FutureExt, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, PublisherConfirm};
use shared::Topology;
use shared::amqp::{BrokerLink, PublishError, settled};
use shared::changes::{Change, ChangeKind, ChangePayload, header};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a stopping relay may take for its last round.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Connecting to the database, bounded (a cut network must not hold the relay).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A relay round that takes longer than this (a database or broker that stopped answering)
/// ends the term; the next term starts on a fresh connection.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);

async fn bounded<T>(round: impl Future<Output = Result<T, RelayError>>) -> Result<T, RelayError> {
    tokio::time::timeout(ROUND_TIMEOUT, round)
        .await
        .map_err(|_| RelayError::RoundTimeout(ROUND_TIMEOUT))?
}

/// How often the leader samples the lag and depth gauges.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The session lock of the leading relay ("scim-rly").
pub const LEADER_LOCK: i64 = 0x7363_696d_2d72_6c79;

#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub database_url: String,
    /// Rows published per round (one confirm window).
    pub batch: i64,
    /// Fallback poll, and how often a follower tries to become the leader.
    pub poll: Duration,
    pub confirm_timeout: Duration,
    pub retention: Retention,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("database connection: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("no database connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("a relay round took longer than {0:?}")]
    RoundTimeout(Duration),
    #[error("the confirm task ended")]
    ConfirmerGone,
    #[error("publishing: {0}")]
    Publish(#[from] PublishError),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("outbox row {seq} is not a change: {reason}")]
    Corrupt { seq: i64, reason: String },
}

/// Runs until `stop`: tries to lead; while leading, relays and prunes. Cancel `stop` after the
/// consumers have finished: the leader then publishes what they committed and returns.
pub async fn run(
    settings: RelaySettings,
    link: BrokerLink,
    topology: Topology,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        // Once stopped, a term gets `STOP_GRACE` for its last round; a term stuck on an
        // unreachable database is dropped (which closes its connection and frees the lock).
        let term = lead(&settings, &link, &topology, &metrics, &stop);
        let outcome = tokio::select! {
            outcome = term => outcome,
            () = async {
                stop.cancelled().await;
                tokio::time::sleep(STOP_GRACE).await;
            } => Ok(false),
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => tracing::warn!(%error, "change relay stopped; retrying"),
        }
        metrics.relay_leader.set(0);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(settings.poll.max(Duration::from_millis(200))) => {}
        }
    }
    metrics.relay_leader.set(0);
}

/// One term: connect, try the leader lock, relay while it is held. `Ok(true)` to try again,
/// `Ok(false)` when stopped.
async fn lead(
    settings: &RelaySettings,
    link: &BrokerLink,
    topology: &Topology,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<bool, RelayError> {
    let mut conn = tokio::time::timeout(
        CONNECT_TIMEOUT,
        AsyncPgConnection::establish(&settings.database_url),
    )
    .await
    .map_err(|_| RelayError::ConnectTimeout(CONNECT_TIMEOUT))??;
    #[derive(QueryableByName)]
    struct Leader {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        leader: bool,
    }
    let leader: Leader = diesel::sql_query(format!(
        "SELECT pg_try_advisory_lock({LEADER_LOCK}) AS leader"
    ))
    .get_result(&mut conn)
    .await?;
    if !leader.leader {
        return Ok(true);
    }
    diesel::sql_query(format!("LISTEN {NOTIFY_CHANNEL}"))
        .execute(&mut conn)
        .await?;
    metrics.relay_leader.set(1);
    tracing::info!("leading the change relay");
    let exchange = topology.changes_exchange();
    let mut channel: Option<Channel> = None;
    let mut last_prune: Option<Instant> = None;
    let mut last_sample: Option<Instant> = None;
    let mut stopping = false;
    // Publishing is pipelined: new rows go out while earlier confirms are awaited, in order,
    // by the confirmer task; the marker task marks confirmed rows published on a connection of
    // its own, taking everything confirmed since its last update in one statement.
    let mark_conn = tokio::time::timeout(
        CONNECT_TIMEOUT,
        AsyncPgConnection::establish(&settings.database_url),
    )
    .await
    .map_err(|_| RelayError::ConnectTimeout(CONNECT_TIMEOUT))??;
    let mut cursor = 0_i64;
    let (to_confirm, confirms) = mpsc::unbounded_channel();
    let (confirmed_tx, confirmed) = mpsc::unbounded_channel();
    let confirmer = tokio::spawn(confirm_in_order(
        confirms,
        confirmed_tx,
        settings.confirm_timeout,
    ));
    let _confirmer = AbortOnDrop(confirmer.abort_handle());
    let mut marker = tokio::spawn(mark_confirmed(
        mark_conn,
        confirmed,
        metrics.changes_published.clone(),
    ));
    let _marker = AbortOnDrop(marker.abort_handle());
    let mut to_confirm = Some(to_confirm);
    loop {
        while let (true, Some(sender)) = (link.is_ready(), &to_confirm) {
            let ch = match &channel {
                Some(ch) if ch.status().connected() => ch.clone(),
                _ => {
                    let ch = link.open_channel().await.map_err(PublishError::from)?;
                    ch.confirm_select(ConfirmSelectOptions::default()).await?;
                    channel = Some(ch.clone());
                    ch
                }
            };
            let (sent, full) = bounded(publish_new(
                &mut conn,
                &ch,
                &exchange,
                settings,
                &mut cursor,
                sender,
            ))
            .await?;
            if sent == 0 || !full {
                break;
            }
        }
        if stopping {
            // Everything published is confirmed and marked (the confirmer ends with its queue,
            // the marker with the confirmer); then the term ends.
            drop(to_confirm.take());
            (&mut marker)
                .await
                .map_err(|_| RelayError::ConfirmerGone)??;
            bounded(sample(&mut conn, metrics)).await?;
            return Ok(false);
        }
        if last_sample.is_none_or(|t| t.elapsed() >= SAMPLE_EVERY) {
            bounded(sample(&mut conn, metrics)).await?;
            last_sample = Some(Instant::now());
        }
        if last_prune.is_none_or(|t| t.elapsed() >= prune::EVERY) {
            bounded(async { Ok(prune::run(&mut conn, &settings.retention).await?) }).await?;
            last_prune = Some(Instant::now());
        }
        let woke = {
            let mut notifications = std::pin::pin!(conn.notifications_stream());
            let woke = tokio::select! {
                _ = stop.cancelled() => None,
                _ = tokio::time::sleep(settings.poll) => Some(()),
                _ = notifications.next() => Some(()),
                ended = &mut marker => {
                    // The marker only ends early on a failure (a nack, a timeout, the database).
                    ended.map_err(|_| RelayError::ConfirmerGone)??;
                    return Err(RelayError::ConfirmerGone);
                }
            };
            // Several commits may have notified meanwhile: one round takes them all.
            while let Some(Some(_)) = notifications.next().now_or_never() {}
            woke
        };
        stopping = woke.is_none();
    }
}

/// Marks confirmed rows published, each time everything confirmed since the last update.
async fn mark_confirmed(
    mut conn: AsyncPgConnection,
    mut confirmed: mpsc::UnboundedReceiver<Result<i64, RelayError>>,
    published: prometheus_client::metrics::counter::Counter,
) -> Result<(), RelayError> {
    while let Some(first) = confirmed.recv().await {
        let mut seqs = vec![first?];
        while let Ok(next) = confirmed.try_recv() {
            seqs.push(next?);
        }
        bounded(mark(&mut conn, &seqs)).await?;
        published.inc_by(u64::try_from(seqs.len()).unwrap_or(0));
    }
    Ok(())
}

/// Aborts the confirmer when a term ends, however it ends.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Awaits confirms in publish order; sends each confirmed `seq` on, or the first failure (and
/// stops: nothing after a failed message may be marked).
async fn confirm_in_order(
    mut confirms: mpsc::UnboundedReceiver<(i64, PublisherConfirm)>,
    confirmed: mpsc::UnboundedSender<Result<i64, RelayError>>,
    timeout: Duration,
) {
    while let Some((seq, confirm)) = confirms.recv().await {
        let result = match tokio::time::timeout(timeout, settled(confirm)).await {
            Ok(Ok(())) => Ok(seq),
            Ok(Err(e)) => Err(RelayError::Publish(e)),
            Err(_) => Err(RelayError::Publish(PublishError::ConfirmTimeout(timeout))),
        };
        let failed = result.is_err();
        if confirmed.send(result).is_err() || failed {
            return;
        }
    }
}

type Row = (
    i64,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    serde_json::Value,
);

/// The message body of an outbox row.
pub fn body(row: &Row) -> Result<Change, RelayError> {
    let (seq, id, kind, org, cause, occurred_at, committed_at, payload) = row;
    let corrupt = |reason: String| RelayError::Corrupt { seq: *seq, reason };
    Ok(Change {
        id: id.clone(),
        seq: *seq,
        kind: ChangeKind::parse(kind).ok_or_else(|| corrupt(format!("unknown kind {kind:?}")))?,
        organization_id: org.clone(),
        cause_event_id: cause.clone(),
        occurred_at: *occurred_at,
        committed_at: *committed_at,
        payload: serde_json::from_value::<ChangePayload>(payload.clone())
            .map_err(|e| corrupt(e.to_string()))?,
    })
}

fn properties(change: &Change) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(header::SEQ.into(), AMQPValue::LongLongInt(change.seq));
    headers.insert(
        header::CHANGE_KIND.into(),
        AMQPValue::LongString(LongString::from(change.kind.as_str().as_bytes().to_vec())),
    );
    headers.insert(
        header::ORGANIZATION_ID.into(),
        AMQPValue::LongString(LongString::from(change.organization_id.as_bytes().to_vec())),
    );
    BasicProperties::default()
        .with_message_id(change.id.as_str().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_timestamp(u64::try_from(change.committed_at.timestamp()).unwrap_or(0))
        .with_headers(headers)
}

/// Publishes, in `seq` order on one channel, the unpublished rows after `cursor` (one window)
/// and hands their pending confirms to the confirmer. Returns how many were sent and whether the
/// window was full (more may be waiting).
async fn publish_new(
    conn: &mut AsyncPgConnection,
    channel: &Channel,
    exchange: &str,
    settings: &RelaySettings,
    cursor: &mut i64,
    to_confirm: &mpsc::UnboundedSender<(i64, PublisherConfirm)>,
) -> Result<(usize, bool), RelayError> {
    let rows: Vec<Row> = c::table
        .filter(c::published_at.is_null().and(c::seq.gt(*cursor)))
        .order(c::seq)
        .limit(settings.batch)
        .select((
            c::seq,
            c::id,
            c::kind,
            c::organization_id,
            c::cause_event_id,
            c::occurred_at,
            c::committed_at,
            c::payload,
        ))
        .load(conn)
        .await?;
    let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= settings.batch;
    for row in &rows {
        let change = body(row)?;
        let bytes = serde_json::to_vec(&change).map_err(|e| RelayError::Corrupt {
            seq: change.seq,
            reason: e.to_string(),
        })?;
        let confirm = channel
            .basic_publish(
                exchange.into(),
                change.kind.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &bytes,
                properties(&change),
            )
            .await?;
        *cursor = change.seq;
        if to_confirm.send((change.seq, confirm)).is_err() {
            return Err(RelayError::ConfirmerGone);
        }
    }
    Ok((rows.len(), full))
}

/// Marks confirmed rows published.
async fn mark(conn: &mut AsyncPgConnection, seqs: &[i64]) -> Result<(), RelayError> {
    if seqs.is_empty() {
        return Ok(());
    }
    diesel::update(c::table.filter(c::seq.eq_any(seqs)))
        .set(c::published_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
    Ok(())
}

/// The lag and depth gauges, as the leader sees them.
async fn sample(conn: &mut AsyncPgConnection, metrics: &Metrics) -> Result<(), RelayError> {
    #[derive(QueryableByName)]
    struct Depth {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        depth: i64,
        #[diesel(sql_type = diesel::sql_types::Double)]
        lag: f64,
    }
    let d: Depth = diesel::sql_query(
        "SELECT count(*) AS depth, COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(committed_at))::float8, 0) AS lag \
         FROM changes WHERE published_at IS NULL",
    )
    .get_result(conn)
    .await?;
    metrics.outbox_depth.set(d.depth);
    metrics.relay_lag_seconds.set(d.lag.max(0.0));
    Ok(())
}
