//! The relay's second half: each started round's confirms are awaited in a task of their own
//! (consecutive rounds' together), then, in round order, the confirmed prefix is marked
//! published — at the time of its confirm — on a connection of its own. The first half selects
//! and publishes the next round meanwhile, so a change committed while a round awaits its
//! confirms goes out at once instead of after that round's confirm and mark.
//!
//! A failed confirm ends the marker with the error; the term ends with it (see
//! [`Marker::failed`]) and the next term re-publishes every row that was not marked, with the
//! same ids.

use super::round::Started;
use super::{RelayError, RelaySettings, bounded};
use crate::service::db::schema::changes as c;
use crate::service::metrics::Metrics;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared::amqp::{PublishError, confirm_within};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Rounds started but not yet handed over: the publishing half waits beyond that.
const QUEUED_ROUNDS: usize = 4;

pub struct Marker {
    rounds: Option<mpsc::Sender<JoinHandle<Confirmed>>>,
    /// Every row with `seq` at or below it is published.
    floor: Arc<AtomicI64>,
    confirm_timeout: Duration,
    task: JoinHandle<Result<(), RelayError>>,
    failed: CancellationToken,
}

impl Drop for Marker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Marker {
    /// Starts the marker on `conn` (its own connection, not the leader's).
    pub fn start(conn: AsyncPgConnection, settings: &RelaySettings, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUED_ROUNDS);
        let failed = CancellationToken::new();
        let floor = Arc::new(AtomicI64::new(0));
        let task = tokio::spawn(mark_all(conn, rx, metrics, failed.clone(), floor.clone()));
        Self {
            rounds: Some(tx),
            floor,
            confirm_timeout: settings.confirm_timeout,
            task,
            failed,
        }
    }

    /// Hands a started round over. When the marker has failed, its error.
    pub async fn hand(&mut self, round: Started) -> Result<(), RelayError> {
        let confirming = tokio::spawn(confirm_all(round, self.confirm_timeout));
        if let Some(tx) = &self.rounds
            && tx.send(confirming).await.is_ok()
        {
            return Ok(());
        }
        // The marker ends only with an error while rounds can still be handed.
        self.finished()
            .await
            .and(Err(RelayError::MarkerStopped("it ended".into())))
    }

    /// Resolves when the marker has failed.
    pub async fn failed(&self) {
        self.failed.cancelled().await;
    }

    /// Every row with `seq` at or below the result is published.
    pub fn floor(&self) -> i64 {
        AtomicI64::load(&self.floor, Ordering::Relaxed)
    }

    /// Records that every row up to `seq` is published.
    pub fn raise_floor(&self, seq: i64) {
        self.floor.fetch_max(seq, Ordering::Relaxed);
    }

    pub fn is_failed(&self) -> bool {
        self.failed.is_cancelled()
    }

    /// Waits until every handed round is settled and marked; then every row up to the
    /// returned `seq` is published.
    pub async fn drain(mut self) -> Result<i64, RelayError> {
        self.finished().await?;
        Ok(self.floor())
    }

    /// Stops taking rounds and waits for the marker to settle what it has. Called once.
    async fn finished(&mut self) -> Result<(), RelayError> {
        self.rounds = None;
        match (&mut self.task).await {
            Ok(result) => result,
            Err(join) => Err(RelayError::MarkerStopped(join.to_string())),
        }
    }
}

async fn mark_all(
    mut conn: AsyncPgConnection,
    mut rounds: mpsc::Receiver<JoinHandle<Confirmed>>,
    metrics: Arc<Metrics>,
    failed: CancellationToken,
    floor: Arc<AtomicI64>,
) -> Result<(), RelayError> {
    while let Some(round) = rounds.recv().await {
        let result = match round.await {
            Ok(confirmed) => {
                let through = confirmed.published_through();
                let marked = bounded(mark(&mut conn, confirmed, &metrics)).await;
                if let (Ok(()), Some(through)) = (&marked, through) {
                    floor.fetch_max(through, Ordering::Relaxed);
                }
                marked
            }
            Err(join) => Err(RelayError::MarkerStopped(join.to_string())),
        };
        if let Err(e) = result {
            failed.cancel();
            return Err(e);
        }
    }
    Ok(())
}

/// What the broker confirmed of one round, and when.
pub struct Confirmed {
    rows: usize,
    /// The confirmed prefix, in order.
    seqs: Vec<i64>,
    /// When the last of them was confirmed: the rows' `published_at`.
    at: DateTime<Utc>,
    failure: Option<PublishError>,
    select: Duration,
    publish: Duration,
    confirm: Duration,
}

impl Confirmed {
    /// Rounds are consecutive ranges of the unpublished rows, marked in order: a round confirmed
    /// whole, once marked, publishes every row up to its last.
    fn published_through(&self) -> Option<i64> {
        self.seqs.last().copied().filter(|_| self.failure.is_none())
    }
}

/// Awaits a round's confirms in order (each round in a task of its own, so the confirms of
/// consecutive rounds are awaited together): only the prefix the broker took counts.
async fn confirm_all(round: Started, confirm_timeout: Duration) -> Confirmed {
    let started = Instant::now();
    let rows = round.pending.len();
    let mut seqs = Vec::with_capacity(rows);
    let mut failure = None;
    for (seq, confirm) in round.pending {
        match confirm_within(confirm_timeout, async { Ok(confirm) }).await {
            Ok(()) => seqs.push(seq),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    Confirmed {
        rows,
        seqs,
        at: Utc::now(),
        failure,
        select: round.select,
        publish: round.publish,
        confirm: started.elapsed(),
    }
}

/// Marks the confirmed prefix published, at the time of its confirm.
async fn mark(
    conn: &mut AsyncPgConnection,
    round: Confirmed,
    metrics: &Metrics,
) -> Result<(), RelayError> {
    let started = Instant::now();
    if !round.seqs.is_empty() {
        // The stored floor rises with the marks, in the same transaction (see the
        // `relay_floor` migration).
        let through = round.published_through();
        let (seqs, at) = (&round.seqs, round.at);
        conn.transaction::<_, RelayError, _>(async |conn| {
            diesel::update(c::table.filter(c::seq.eq_any(seqs)))
                .set(c::published_at.eq(at))
                .execute(conn)
                .await?;
            if let Some(through) = through {
                super::floor::store(conn, through).await?;
            }
            Ok(())
        })
        .await?;
        metrics
            .changes_published
            .inc_by(u64::try_from(round.seqs.len()).unwrap_or(0));
    }
    tracing::debug!(
        rows = round.rows,
        select_ms = round.select.as_secs_f64() * 1e3,
        publish_ms = round.publish.as_secs_f64() * 1e3,
        confirm_ms = round.confirm.as_secs_f64() * 1e3,
        mark_wait_ms = (Utc::now() - round.at).num_microseconds().unwrap_or(0) as f64 / 1e3
            - started.elapsed().as_secs_f64() * 1e3,
        mark_ms = started.elapsed().as_secs_f64() * 1e3,
        "relay round"
    );
    match round.failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
