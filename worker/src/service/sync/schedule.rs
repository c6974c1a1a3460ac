//! Scheduled and triggered syncs, one at a time: every `SYNC_INTERVAL` each organization with an
//! enabled directory (skipping those another replica synced recently), with jitter; and a full
//! sync of a directory when its `directory_enabled` event is applied.

use super::progress::Progress;
use super::run::Syncer;
use super::store;
use crate::service::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A request for a full sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub organization_id: String,
    pub directory_id: Option<String>,
}

/// Capacity of the trigger queue; further triggers are dropped (the next one syncs anyway).
pub const TRIGGER_CAPACITY: usize = 64;

fn jitter(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or_default();
    Duration::from_nanos(seed % nanos)
}

async fn sync_one(syncer: &Syncer, metrics: &Metrics, req: &SyncRequest) {
    let started = std::time::Instant::now();
    match syncer
        .sync_org(
            &req.organization_id,
            req.directory_id.as_deref(),
            &mut Progress::quiet(),
        )
        .await
    {
        Ok(summary) => {
            metrics.sync_users.inc_by(summary.seen as u64);
            metrics.count_sync("ok");
            tracing::info!(organization_id = %req.organization_id, %summary, elapsed_ms = started.elapsed().as_millis() as u64, "sync finished");
        }
        Err(super::SyncError::Cancelled) => {
            metrics.count_sync("cancelled");
            tracing::info!(organization_id = %req.organization_id, "sync cancelled: the worker is stopping; nothing was deactivated");
        }
        Err(super::SyncError::AlreadyRunning(what)) => {
            metrics.count_sync("skipped");
            tracing::info!(%what, "sync already running elsewhere; skipped");
        }
        Err(error) => {
            metrics.count_sync("failed");
            tracing::error!(organization_id = %req.organization_id, error = %shared::Chain(&error), "sync failed; nothing was deactivated");
        }
    }
}

pub async fn run(
    syncer: Arc<Syncer>,
    metrics: Arc<Metrics>,
    interval: Option<Duration>,
    mut triggers: mpsc::Receiver<SyncRequest>,
    stop: CancellationToken,
) {
    let period = interval.unwrap_or(Duration::from_secs(365 * 24 * 3600));
    let mut next = tokio::time::Instant::now() + jitter(period.min(Duration::from_secs(60)));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            Some(req) = triggers.recv() => sync_one(&syncer, &metrics, &req).await,
            _ = tokio::time::sleep_until(next), if interval.is_some() => {
                next = tokio::time::Instant::now() + period + jitter(period / 10);
                let orgs = match syncer.pool.get().await {
                    Ok(mut conn) => store::enabled_organizations(&mut conn).await.unwrap_or_default(),
                    Err(error) => {
                        tracing::warn!(error = %shared::Chain(&error), "scheduled sync: database unavailable");
                        continue;
                    }
                };
                let fresh_after = chrono::Utc::now() - chrono::Duration::from_std(period / 2).unwrap_or_default();
                for (org, last) in orgs {
                    if stop.is_cancelled() {
                        return;
                    }
                    if last.is_some_and(|t| t > fresh_after) {
                        continue;
                    }
                    tokio::time::sleep(jitter(Duration::from_secs(5))).await;
                    sync_one(&syncer, &metrics, &SyncRequest { organization_id: org, directory_id: None }).await;
                }
            }
        }
    }
}
