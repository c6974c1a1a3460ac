//! One endpoint as the delivery leader follows it ([`Live`]): rebuilt from its row when paused,
//! resumed or replayed (`refresh`); each round pauses it after too long a failure, reads what
//! is new, hands batches to the senders and writes positions (`step`); answers and failed
//! attempts settle into it (`settle`, `record_failure`).

use super::plan::{Limits, Pending, Plan};
use super::send::{Attempt, Target};
use super::senders::{Channels, Done, Origin, Senders};
use super::{PushError, PushSettings, store};
use crate::service::changes::body::{Row, message};
use crate::service::metrics::{EndpointLabels, Metrics};
use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Rows read per scan query.
const SCAN_LIMIT: i64 = 1000;
/// Failed attempts are written at most this often per endpoint.
const FAILURE_WRITE_EVERY: Duration = Duration::from_secs(1);

/// One endpoint as the leader follows it.
pub(super) struct Live {
    pub(super) target: Arc<Target>,
    pub(super) labels: EndpointLabels,
    pub(super) generation: i64,
    pub(super) paused: bool,
    /// Raised at each rebuild: answers of batches started before are ignored.
    pub(super) epoch: u64,
    pub(super) plan: Option<Plan>,
    pub(super) cancel: CancellationToken,
    pub(super) stored_floor: i64,
    /// Organizations whose batch is failing, since when.
    pub(super) failing: HashMap<String, (DateTime<Utc>, String)>,
    pub(super) last_failure_write: Option<Instant>,
    /// Positions moved by 2xx answers and not yet written: written after the next batches
    /// are on their way, all in one statement.
    pub(super) unwritten: HashMap<String, i64>,
    /// Each organization's sender: a task posting its batches in order, one at a time.
    pub(super) senders: Senders,
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

/// Reads the endpoints' rows; an endpoint paused, resumed or replayed is rebuilt from them.
pub(super) async fn refresh(
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
pub(super) async fn step(
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

/// A batch's answer: a 2xx moves the organization's position (in memory now, written by the
/// endpoint's next step, after its next batches are on their way).
pub(super) fn settle(lives: &mut [Live], done: Done, metrics: &Metrics) {
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
        live.senders.idle(&done.organization_id);
    }
    live.unwritten.insert(done.organization_id, done.last);
    metrics
        .push_delivered
        .get_or_create(&live.labels)
        .inc_by(u64::try_from(done.count).unwrap_or(0));
}

/// A failed attempt: counted, and written (at most every second per endpoint).
pub(super) async fn record_failure(
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

/// Hands the batches the plan has ready (within `CHANGES_WEBHOOK_CONCURRENCY` organizations) to
/// their senders.
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
    let batches = plan.next_batches(room);
    let origin = Origin {
        target: &live.target,
        endpoint: index,
        epoch: live.epoch,
        cancel: &live.cancel,
    };
    live.senders.hand(batches, &origin, channels, tasks);
}
