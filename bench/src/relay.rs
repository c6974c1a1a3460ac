//! The change relay's share: how many changes the worker's events made, what publishing a
//! backlog of them costs per change (the relay alone at work, after the drain), and commit →
//! published latency of the changes made under half load.

use super::cpu::{CpuUse, Watched};
use super::percentile;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize, Default)]
pub struct RelayDrain {
    /// Changes written per event drained.
    pub changes_per_event: f64,
    /// Changes still unpublished when the last event was applied.
    pub backlog: i64,
    /// Time for the relay to publish that backlog, and its CPU per change (when the backlog was
    /// large enough to measure).
    pub catch_up_seconds: f64,
    pub catch_up_cpu: Option<CpuUse>,
}

use super::count;

/// Right after the drain: the changes made, and the relay publishing what is left.
pub async fn after_drain(db_url: &str, watch: &Watched, events: u32) -> anyhow::Result<RelayDrain> {
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    let written = count(&mut conn, "SELECT count(*) AS n FROM changes").await?;
    let backlog = super::unpublished(&mut conn).await?;
    let sample = watch.start();
    let started = Instant::now();
    while super::unpublished(&mut conn).await? > 0 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the relay did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(RelayDrain {
        changes_per_event: written as f64 / f64::from(events.max(1)),
        backlog,
        catch_up_seconds: seconds,
        catch_up_cpu: (backlog >= 1000)
            .then(|| sample.finish(usize::try_from(backlog).unwrap_or(usize::MAX))),
    })
}

/// Waits (up to `timeout`) until no change is unpublished; how many were when it started.
pub async fn wait_published(db_url: &str, timeout: Duration) -> anyhow::Result<i64> {
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    let backlog = super::unpublished(&mut conn).await?;
    let started = Instant::now();
    while super::unpublished(&mut conn).await? > 0 {
        anyhow::ensure!(started.elapsed() < timeout, "the relay did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(backlog)
}

/// Commit → published (confirmed and marked) of the changes whose cause ids lie in `[from, to)`:
/// (p50 ms, p99 ms, how many).
pub async fn latency(db_url: &str, from: &str, to: &str) -> anyhow::Result<(f64, f64, usize)> {
    #[derive(diesel::QueryableByName)]
    struct Ms {
        #[diesel(sql_type = diesel::sql_types::Double)]
        ms: f64,
    }
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    let rows: Vec<Ms> = diesel::sql_query(
        "SELECT (EXTRACT(EPOCH FROM published_at - committed_at) * 1000)::float8 AS ms FROM changes \
         WHERE cause_event_id >= $1 AND cause_event_id < $2 AND published_at IS NOT NULL",
    )
    .bind::<diesel::sql_types::Text, _>(from)
    .bind::<diesel::sql_types::Text, _>(to)
    .load(&mut conn)
    .await?;
    let mut ms: Vec<f64> = rows.into_iter().map(|r| r.ms).collect();
    ms.sort_by(f64::total_cmp);
    Ok((percentile(&ms, 0.5), percentile(&ms, 0.99), ms.len()))
}
