//! The relay's second half: settles each started round's confirms, in order, and marks the
//! confirmed prefix published, on a connection of its own. The first half selects and
//! publishes the next round meanwhile, so a change committed while a round awaits its
//! confirms goes out at once instead of after that round's confirm and mark.
//!
//! A failed confirm ends the marker with the error; the term ends with it (see
//! [`Marker::failed`]) and the next term re-publishes every row that was not marked, with the
//! same ids.

use super::round::Started;
use super::{RelayError, RelaySettings, bounded};
use crate::db::schema::changes as c;
use crate::metrics::Metrics;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::amqp::confirm_within;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Rounds started but not yet handed over: the publishing half waits beyond that.
const QUEUED_ROUNDS: usize = 4;

pub struct Marker {
    rounds: Option<mpsc::Sender<Started>>,
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
        let task = tokio::spawn(mark_all(
            conn,
            rx,
            settings.confirm_timeout,
            metrics,
            failed.clone(),
        ));
        Self {
            rounds: Some(tx),
            task,
            failed,
        }
    }

    /// Hands a started round over. When the marker has failed, its error.
    pub async fn hand(&mut self, round: Started) -> Result<(), RelayError> {
        if let Some(tx) = &self.rounds
            && tx.send(round).await.is_ok()
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

    pub fn is_failed(&self) -> bool {
        self.failed.is_cancelled()
    }

    /// Waits until every handed round is settled and marked.
    pub async fn drain(mut self) -> Result<(), RelayError> {
        self.finished().await
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
    mut rounds: mpsc::Receiver<Started>,
    confirm_timeout: std::time::Duration,
    metrics: Arc<Metrics>,
    failed: CancellationToken,
) -> Result<(), RelayError> {
    while let Some(round) = rounds.recv().await {
        let result = bounded(settle(&mut conn, round, confirm_timeout, &metrics)).await;
        if let Err(e) = result {
            failed.cancel();
            return Err(e);
        }
    }
    Ok(())
}

/// Confirms in order: only the prefix that the broker took is marked published.
async fn settle(
    conn: &mut AsyncPgConnection,
    round: Started,
    confirm_timeout: std::time::Duration,
    metrics: &Metrics,
) -> Result<(), RelayError> {
    let started = Instant::now();
    let rows = round.pending.len();
    let mut confirmed = Vec::with_capacity(rows);
    let mut failure = None;
    for (seq, confirm) in round.pending {
        match confirm_within(confirm_timeout, async { Ok(confirm) }).await {
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
        metrics
            .changes_published
            .inc_by(u64::try_from(confirmed.len()).unwrap_or(0));
    }
    tracing::debug!(
        rows,
        select_ms = round.select.as_secs_f64() * 1e3,
        publish_ms = round.publish.as_secs_f64() * 1e3,
        confirm_ms = settled.as_secs_f64() * 1e3,
        mark_ms = (started.elapsed() - settled).as_secs_f64() * 1e3,
        "relay round"
    );
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
