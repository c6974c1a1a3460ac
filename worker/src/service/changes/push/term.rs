//! One term of the delivery leader: hold the lock, then scan, refill, start batches and
//! settle their answers, on the lock's own connection (so a leader that lost the lock cannot
//! write), until stopped or the connection fails.

use super::live::{self, Live};
use super::plan::Limits;
use super::send::{Attempt, Target};
use super::senders::{Channels, Done};
use super::{LEADER_LOCK, PushError, PushSettings, store};
use crate::service::apply::outbox::NOTIFY_CHANNEL;
use crate::service::metrics::{EndpointLabels, Metrics};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A step of the loop (its queries) longer than this ends the term.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the endpoints' rows (paused, replayed) are read again.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// How a term ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    Follower,
    Stopped,
}

async fn connect(settings: &PushSettings) -> Result<AsyncPgConnection, PushError> {
    Ok(
        crate::service::changes::leader::connect(&settings.database_url, &settings.timeouts)
            .await?,
    )
}

pub(super) async fn bounded<T>(
    step: impl Future<Output = Result<T, PushError>>,
) -> Result<T, PushError> {
    tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .map_err(|_| PushError::RoundTimeout(STEP_TIMEOUT))?
}

/// Retires every endpoint row (none is configured).
pub async fn retire_all(settings: &PushSettings) -> Result<(), PushError> {
    let mut conn = connect(settings).await?;
    bounded(async { Ok(store::register(&mut conn, &[]).await?) }).await
}

pub async fn lead(
    settings: &PushSettings,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
    follower: &mut Option<AsyncPgConnection>,
) -> Result<Term, PushError> {
    let mut conn = match follower.take() {
        Some(conn) => conn,
        None => connect(settings).await?,
    };
    let leads = crate::service::changes::leader::try_lock(&mut conn, LEADER_LOCK).await?;
    if !leads {
        *follower = Some(conn);
        return Ok(Term::Follower);
    }
    bounded(async {
        store::register(&mut conn, &settings.endpoints).await?;
        diesel::sql_query(format!("LISTEN {NOTIFY_CHANNEL}"))
            .execute(&mut conn)
            .await?;
        Ok(())
    })
    .await?;
    metrics.push_leader.set(1);
    tracing::info!(
        endpoints = settings.endpoints.len(),
        "leading change delivery"
    );
    let limits = Limits {
        batch: settings.batch.max(1),
        per_org: (settings.batch * 10).max(1000),
        total: (settings.batch * settings.concurrency * 8).clamp(1000, 50_000),
    };
    let mut lives = Vec::with_capacity(settings.endpoints.len());
    for e in &settings.endpoints {
        let labels = EndpointLabels {
            endpoint: e.name.clone(),
        };
        // Exported at 0 from the start: `rate()` and `increase()` over a quiet endpoint are 0.
        let _ = metrics.push_delivered.get_or_create(&labels);
        let _ = metrics.push_failed.get_or_create(&labels);
        lives.push(Live {
            target: Arc::new(Target::new(e.clone(), settings.timeout)?),
            labels: EndpointLabels {
                endpoint: e.name.clone(),
            },
            generation: -1,
            paused: false,
            epoch: 0,
            plan: None,
            cancel: stop.child_token(),
            stored_floor: 0,
            failing: HashMap::new(),
            last_failure_write: None,
            unwritten: HashMap::new(),
            senders: Default::default(),
        });
    }
    let (failures_tx, mut failures) = mpsc::unbounded_channel::<Attempt>();
    let (done_tx, mut answers) = mpsc::unbounded_channel::<Done>();
    let channels = Channels {
        failures: failures_tx,
        done: done_tx,
    };
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut last_refresh: Option<Instant> = None;
    let result = loop {
        if last_refresh.is_none_or(|t| t.elapsed() >= REFRESH_EVERY) {
            bounded(live::refresh(&mut conn, &mut lives, limits, metrics)).await?;
            last_refresh = Some(Instant::now());
        }
        for (index, live) in lives.iter_mut().enumerate() {
            bounded(live::step(
                &mut conn, settings, index, live, metrics, &channels, &mut tasks,
            ))
            .await?;
        }
        enum Woke {
            Stop,
            Done(Done),
            Failed(Attempt),
            Other,
        }
        let woke = {
            let mut notifications = std::pin::pin!(conn.notifications_stream());
            let woke = tokio::select! {
                () = stop.cancelled() => Woke::Stop,
                Some(done) = answers.recv() => Woke::Done(done),
                Some(attempt) = failures.recv() => Woke::Failed(attempt),
                _ = notifications.next() => Woke::Other,
                () = tokio::time::sleep(settings.poll) => Woke::Other,
            };
            // Several commits may have notified meanwhile: one round takes them all.
            while let Some(Some(_)) = notifications.next().now_or_never() {}
            woke
        };
        // Senders that ended (their organization had nothing more); one that failed ends the
        // term (its organization's answers would never come).
        let mut failed = None;
        while let Some(ended) = tasks.try_join_next() {
            if let Err(e) = ended {
                failed = Some(e.to_string());
            }
        }
        if let Some(e) = failed {
            break Err(PushError::Task(e));
        }
        match woke {
            Woke::Stop => break Ok(Term::Stopped),
            Woke::Done(done) => {
                live::settle(&mut lives, done, metrics);
                // Settle every answer already in, before the next round of starts.
                while let Ok(done) = answers.try_recv() {
                    live::settle(&mut lives, done, metrics);
                }
            }
            Woke::Failed(attempt) => {
                bounded(live::record_failure(
                    &mut conn, &mut lives, attempt, metrics,
                ))
                .await?;
            }
            Woke::Other => {}
        }
    };
    for live in &lives {
        live.cancel.cancel();
    }
    tasks.abort_all();
    // A follower exports no lag (the next leader does).
    metrics.push_lag_seconds.clear();
    result
}
