//! The relay: publishes unpublished outbox rows to `{prefix}.changes`, in `seq` order, and only
//! then marks them published. Exactly one relay leads per deployment (per database): the one
//! holding a session-level advisory lock on its own connection. When the leader dies its
//! connection closes, the lock is released, and another replica takes over within a second.
//!
//! It wakes on `NOTIFY scim_changes` (sent by every transaction that wrote changes, delivered
//! at commit) and polls as a fallback. Publishing is at-least-once: a crash between the
//! broker's confirm and the `published_at` update publishes the same rows again, with the same
//! `id` and `seq`, so consumers skip what they have already applied.

use super::outbox::NOTIFY_CHANNEL;
use super::prune::{self, Retention};
use crate::db::schema::changes as c;
use crate::metrics::Metrics;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::{FutureExt, StreamExt};
use lapin::options::ConfirmSelectOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use shared::Topology;
use shared::amqp::{BrokerLink, Outgoing, PublishError, confirm_within, start_all};
use shared::changes::{Change, ChangeKind, ChangePayload, header};
use std::sync::Arc;
use std::time::{Duration, Instant};
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

/// How often the leader samples the lag and depth gauges (not on every wake: each wake is a
/// commit somewhere).
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The session lock of the leading relay ("scim-rly").
pub const LEADER_LOCK: i64 = 0x7363_696d_2d72_6c79;

#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub database_url: String,
    /// Session bounds of the relay's connection.
    pub timeouts: crate::db::Timeouts,
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
        crate::db::connect(&settings.database_url, &settings.timeouts),
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
    // A mark lost in a crash only re-publishes its rows (same ids, consumers skip them), so the
    // relay's own commits need not wait for the WAL flush; the changes they mark were flushed
    // by the transactions that wrote them.
    diesel::sql_query("SET synchronous_commit = off")
        .execute(&mut conn)
        .await?;
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
    loop {
        while link.is_ready() {
            let ch = match &channel {
                Some(ch) if ch.status().connected() => ch.clone(),
                _ => {
                    let ch = link.open_channel().await.map_err(PublishError::from)?;
                    ch.confirm_select(ConfirmSelectOptions::default()).await?;
                    channel = Some(ch.clone());
                    ch
                }
            };
            let (published, full) =
                bounded(publish_round(&mut conn, &ch, &exchange, settings)).await?;
            metrics
                .changes_published
                .inc_by(u64::try_from(published).unwrap_or(0));
            if !full {
                break;
            }
        }
        if stopping || last_sample.is_none_or(|t| t.elapsed() >= SAMPLE_EVERY) {
            bounded(sample(&mut conn, metrics)).await?;
            last_sample = Some(Instant::now());
        }
        if stopping {
            // The last round ran after the consumers finished: nothing they committed waits.
            return Ok(false);
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
            };
            // Several commits may have notified meanwhile: one round takes them all.
            while let Some(Some(_)) = notifications.next().now_or_never() {}
            woke
        };
        stopping = woke.is_none();
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

/// Publishes the oldest unpublished rows (one window, in `seq` order on one channel) and marks
/// the confirmed prefix published. Returns how many were published and whether the window was
/// full (more may be waiting).
async fn publish_round(
    conn: &mut AsyncPgConnection,
    channel: &Channel,
    exchange: &str,
    settings: &RelaySettings,
) -> Result<(usize, bool), RelayError> {
    let started = Instant::now();
    let rows: Vec<Row> = c::table
        .filter(c::published_at.is_null())
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
    if rows.is_empty() {
        return Ok((0, false));
    }
    let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= settings.batch;
    let selected = started.elapsed();
    let mut bodies = Vec::with_capacity(rows.len());
    for row in &rows {
        let change = body(row)?;
        let bytes = serde_json::to_vec(&change).map_err(|e| RelayError::Corrupt {
            seq: change.seq,
            reason: e.to_string(),
        })?;
        bodies.push((change, bytes));
    }
    let outgoing = bodies.iter().map(|(change, bytes)| Outgoing {
        exchange,
        routing_key: change.kind.as_str(),
        body: bytes,
        properties: properties(change),
    });
    let mut pending = Vec::with_capacity(rows.len());
    for ((change, _), confirm) in bodies.iter().zip(start_all(channel, outgoing).await) {
        pending.push((change.seq, confirm?));
    }
    let sent = started.elapsed();
    // Confirms in order: only the prefix that the broker took is marked published.
    let mut confirmed = Vec::with_capacity(pending.len());
    let mut failure = None;
    for (seq, confirm) in pending {
        match confirm_within(settings.confirm_timeout, async { Ok(confirm) }).await {
            Ok(()) => confirmed.push(seq),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let settled = started.elapsed();
    if !confirmed.is_empty() {
        diesel::update(c::table.filter(c::seq.eq_any(&confirmed)))
            .set(c::published_at.eq(diesel::dsl::now))
            .execute(conn)
            .await?;
    }
    tracing::debug!(
        rows = rows.len(),
        select_ms = selected.as_secs_f64() * 1e3,
        publish_ms = (sent - selected).as_secs_f64() * 1e3,
        confirm_ms = (settled - sent).as_secs_f64() * 1e3,
        mark_ms = (started.elapsed() - settled).as_secs_f64() * 1e3,
        "relay round"
    );
    match failure {
        Some(e) => Err(e.into()),
        None => Ok((confirmed.len(), full)),
    }
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
