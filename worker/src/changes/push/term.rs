//! One term of the delivery leader: hold the lock, then scan, refill, start batches and
//! settle their answers, on the lock's own connection (so a leader that lost the lock cannot
//! write), until stopped or the connection fails.

use super::plan::{AHEAD, Batch, Limits, Pending, Plan};
use super::send::{self, Attempt, Target};
use super::{LEADER_LOCK, PushError, PushSettings, store};
use crate::changes::body::{Row, message};
use crate::changes::outbox::NOTIFY_CHANNEL;
use crate::metrics::{EndpointLabels, Metrics};
use chrono::{DateTime, Utc};
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
/// Rows read per scan query.
const SCAN_LIMIT: i64 = 1000;
/// How often the endpoints' rows (paused, replayed) are read again.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Failed attempts are written at most this often per endpoint.
const FAILURE_WRITE_EVERY: Duration = Duration::from_secs(1);

/// How a term ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    Follower,
    Stopped,
}

async fn connect(settings: &PushSettings) -> Result<AsyncPgConnection, PushError> {
    Ok(crate::changes::leader::connect(&settings.database_url, &settings.timeouts).await?)
}

async fn bounded<T>(step: impl Future<Output = Result<T, PushError>>) -> Result<T, PushError> {
    tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .map_err(|_| PushError::RoundTimeout(STEP_TIMEOUT))?
}

/// Retires every endpoint row (none is configured).
pub async fn retire_all(settings: &PushSettings) -> Result<(), PushError> {
    let mut conn = connect(settings).await?;
    bounded(async { Ok(store::register(&mut conn, &[]).await?) }).await
}

/// One endpoint as the leader follows it.
struct Live {
    target: Arc<Target>,
    labels: EndpointLabels,
    generation: i64,
    paused: bool,
    /// Raised at each rebuild: answers of batches started before are ignored.
    epoch: u64,
    plan: Option<Plan>,
    cancel: CancellationToken,
    stored_floor: i64,
    /// Organizations whose batch is failing, since when.
    failing: HashMap<String, (DateTime<Utc>, String)>,
    last_failure_write: Option<Instant>,
    /// Positions moved by 2xx answers and not yet written: written after the next batches
    /// are on their way, all in one statement.
    unwritten: HashMap<String, i64>,
    /// Each organization's sender: a task posting its batches in order, one at a time.
    senders: HashMap<String, mpsc::Sender<Batch>>,
}

/// What a delivery task returns.
struct Done {
    endpoint: usize,
    epoch: u64,
    organization_id: String,
    last: i64,
    count: usize,
    delivered: bool,
}

fn kinds(target: &Target) -> Vec<&'static str> {
    target.endpoint.kinds.iter().map(|k| k.as_str()).collect()
}

fn pending(row: &Row) -> Result<Pending, PushError> {
    let m = message(row)?;
    Ok(Pending {
        seq: row.0,
        committed_at: row.6,
        body: m.body,
    })
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
    let leads = crate::changes::leader::try_lock(&mut conn, LEADER_LOCK).await?;
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
            senders: HashMap::new(),
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
            bounded(refresh(&mut conn, &mut lives, limits, metrics)).await?;
            last_refresh = Some(Instant::now());
        }
        for (index, live) in lives.iter_mut().enumerate() {
            bounded(step(
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
                settle(&mut lives, done, metrics);
                // Settle every answer already in, before the next round of starts.
                while let Ok(done) = answers.try_recv() {
                    settle(&mut lives, done, metrics);
                }
            }
            Woke::Failed(attempt) => {
                bounded(record_failure(&mut conn, &mut lives, attempt, metrics)).await?;
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

/// Reads the endpoints' rows; an endpoint paused, resumed or replayed is rebuilt from them.
async fn refresh(
    conn: &mut AsyncPgConnection,
    lives: &mut [Live],
    limits: Limits,
    metrics: &Metrics,
) -> Result<(), PushError> {
    let controls = store::controls(conn).await?;
    for live in lives.iter_mut() {
        let Some(c) = controls
            .iter()
            .find(|c| c.name == live.target.endpoint.name)
        else {
            continue;
        };
        if c.generation == live.generation && c.paused == live.paused {
            continue;
        }
        live.cancel.cancel();
        let moved: Vec<(String, i64)> = live.unwritten.drain().collect();
        if c.generation == live.generation && !moved.is_empty() {
            // Paused with 2xx answers not yet written: they stand (a replay drops them).
            store::delivered(conn, &c.name, c.generation, &moved, true).await?;
        }
        live.cancel = CancellationToken::new();
        live.senders.clear();
        live.epoch += 1;
        live.generation = c.generation;
        live.paused = c.paused;
        live.failing.clear();
        live.stored_floor = c.scanned_through;
        live.plan = if c.paused {
            tracing::warn!(endpoint = %live.labels.endpoint, "change endpoint is paused");
            None
        } else {
            let positions = store::positions_above(conn, &c.name, c.scanned_through).await?;
            Some(Plan::new(c.scanned_through, positions, limits))
        };
        metrics
            .push_paused
            .get_or_create(&live.labels)
            .set(i64::from(c.paused));
    }
    Ok(())
}

/// One endpoint's round: pause it if it failed too long, scan, refill, start batches, store
/// the floor, sample the lag.
async fn step(
    conn: &mut AsyncPgConnection,
    settings: &PushSettings,
    index: usize,
    live: &mut Live,
    metrics: &Metrics,
    channels: &Channels,
    tasks: &mut JoinSet<()>,
) -> Result<(), PushError> {
    if live.plan.is_none() {
        return Ok(());
    }
    if let Some((since, status)) = live.failing.values().min_by_key(|(s, _)| *s).cloned() {
        let failing_for = (Utc::now() - since).to_std().unwrap_or_default();
        if failing_for >= settings.pause_after {
            let reason = format!(
                "failing since {} (last: {status}), longer than CHANGES_WEBHOOK_PAUSE_AFTER",
                since.to_rfc3339()
            );
            tracing::error!(endpoint = %live.labels.endpoint, %reason, "pausing change endpoint");
            store::pause(conn, &live.labels.endpoint, &reason).await?;
            live.cancel.cancel();
            live.senders.clear();
            live.plan = None;
            live.paused = true;
            live.failing.clear();
            metrics.push_paused.get_or_create(&live.labels).set(1);
            return Ok(());
        }
    }
    if live.plan.is_none() {
        return Ok(());
    }
    // Batches first (what is queued goes out at once), then reading, then batches for what the
    // reading brought.
    start(settings, index, live, channels, tasks);
    let Some(plan) = live.plan.as_mut() else {
        return Ok(());
    };
    let target = &live.target;
    if plan.wants_more() {
        // Heads first: the payloads of rows the plan would not keep (an organization far
        // ahead of its deliveries) are read later, by its refills.
        let heads = store::scan_heads(conn, plan.scanned(), SCAN_LIMIT).await?;
        let mut keep = Vec::new();
        for (seq, org, kind) in &heads {
            if target.endpoint.wants(kind) && plan.keeps(org, *seq) {
                keep.push(*seq);
            }
        }
        let mut kept = store::rows(conn, &keep).await?.into_iter().peekable();
        for (seq, org, kind) in &heads {
            if !target.endpoint.wants(kind) {
                plan.pass(*seq);
            } else if kept.peek().is_some_and(|r| r.0 == *seq) {
                if let Some(row) = kept.next() {
                    plan.offer(org, pending(&row)?);
                }
            } else {
                plan.skip(org, *seq);
            }
        }
    }
    let kinds = kinds(target);
    for (org, after, through) in plan.refills() {
        let per_org = i64::try_from(plan.limits().per_org).unwrap_or(i64::MAX);
        let rows = store::refill(conn, &org, after, through, &kinds, per_org).await?;
        let rows = rows.iter().map(pending).collect::<Result<Vec<_>, _>>()?;
        plan.refill(&org, rows, through);
    }
    start(settings, index, live, channels, tasks);
    let Some(plan) = live.plan.as_mut() else {
        return Ok(());
    };
    if !live.unwritten.is_empty() {
        let moved: Vec<(String, i64)> = live.unwritten.drain().collect();
        let written = store::delivered(
            conn,
            &live.labels.endpoint,
            live.generation,
            &moved,
            !live.failing.is_empty(),
        )
        .await?;
        if !written {
            // Replayed meanwhile: the next refresh rebuilds the endpoint.
            live.generation = -1;
            return Ok(());
        }
    }
    let floor = plan.floor();
    if floor > live.stored_floor {
        store::store_floor(conn, &live.labels.endpoint, live.generation, floor).await?;
        live.stored_floor = floor;
    }
    let lag = plan
        .oldest_undelivered()
        .map_or(0.0, |t| (Utc::now() - t).as_seconds_f64().max(0.0));
    metrics
        .push_lag_seconds
        .get_or_create(&live.labels)
        .set(lag);
    Ok(())
}

/// Where delivery tasks report.
struct Channels {
    failures: mpsc::UnboundedSender<Attempt>,
    done: mpsc::UnboundedSender<Done>,
}

/// Hands each batch the plan has ready to its organization's sender (started when it has
/// none).
fn start(
    settings: &PushSettings,
    index: usize,
    live: &mut Live,
    channels: &Channels,
    tasks: &mut JoinSet<()>,
) {
    let Some(plan) = live.plan.as_mut() else {
        return;
    };
    let room = settings.concurrency.saturating_sub(plan.in_flight());
    for batch in plan.next_batches(room) {
        let batch = match live.senders.get(&batch.organization_id) {
            Some(tx) => match tx.try_send(batch) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b)) => b,
            },
            None => batch,
        };
        let (tx, rx) = mpsc::channel(AHEAD);
        let org = batch.organization_id.clone();
        // A fresh channel has room for it.
        let _ = tx.try_send(batch);
        live.senders.insert(org, tx);
        tasks.spawn(sender(
            Arc::clone(&live.target),
            index,
            live.epoch,
            rx,
            channels.done.clone(),
            channels.failures.clone(),
            live.cancel.clone(),
        ));
    }
}

/// One organization's sender: posts its batches in order, each until a 2xx (or `cancel`),
/// the next right after; ends when the leader drops its channel (nothing more handed).
async fn sender(
    target: Arc<Target>,
    index: usize,
    epoch: u64,
    mut batches: mpsc::Receiver<Batch>,
    done: mpsc::UnboundedSender<Done>,
    failures: mpsc::UnboundedSender<Attempt>,
    cancel: CancellationToken,
) {
    loop {
        let batch = tokio::select! {
            () = cancel.cancelled() => return,
            b = batches.recv() => match b {
                Some(b) => b,
                None => return,
            },
        };
        let delivered = send::deliver(&target, index, &batch, &failures, &cancel).await;
        let _ = done.send(Done {
            endpoint: index,
            epoch,
            organization_id: batch.organization_id,
            last: batch.last,
            count: batch.count,
            delivered,
        });
        if !delivered {
            return;
        }
    }
}

/// A batch's answer: a 2xx moves the organization's position (in memory now, written by the
/// endpoint's next step, after its next batches are on their way).
fn settle(lives: &mut [Live], done: Done, metrics: &Metrics) {
    let Some(live) = lives.get_mut(done.endpoint) else {
        return;
    };
    if !done.delivered || done.epoch != live.epoch {
        return;
    }
    let Some(plan) = live.plan.as_mut() else {
        return;
    };
    live.failing.remove(&done.organization_id);
    plan.delivered(&done.organization_id, done.last);
    if !plan.is_in_flight(&done.organization_id) {
        // Nothing handed: its sender ends (a new one starts with its next batch).
        live.senders.remove(&done.organization_id);
    }
    live.unwritten.insert(done.organization_id, done.last);
    metrics
        .push_delivered
        .get_or_create(&live.labels)
        .inc_by(u64::try_from(done.count).unwrap_or(0));
}

/// A failed attempt: counted, and written (at most every second per endpoint).
async fn record_failure(
    conn: &mut AsyncPgConnection,
    lives: &mut [Live],
    attempt: Attempt,
    metrics: &Metrics,
) -> Result<(), PushError> {
    let Some(live) = lives.get_mut(attempt.endpoint) else {
        return Ok(());
    };
    metrics.push_failed.get_or_create(&live.labels).inc();
    let status = attempt.failure.to_string();
    let since = live
        .failing
        .entry(attempt.organization_id)
        .or_insert_with(|| (Utc::now(), status.clone()));
    since.1.clone_from(&status);
    let since = since.0;
    if live
        .last_failure_write
        .is_none_or(|t| t.elapsed() >= FAILURE_WRITE_EVERY)
    {
        tracing::warn!(endpoint = %live.labels.endpoint, %status, "change delivery failed; retrying");
        store::failed(conn, &live.labels.endpoint, since, &status).await?;
        live.last_failure_write = Some(Instant::now());
    }
    Ok(())
}
