//! Retention, run by the leading relay in small batches: published changes older than
//! `CHANGES_RETENTION`, and dedupe rows older than `PROCESSED_EVENTS_RETENTION` (which must
//! outlive Scalekit's retries, about 28 hours, and manual replays, days later). The records
//! operators ask about (dead-lettered events, sync runs) are kept as long as the dedupe rows.

use chrono::Utc;
use diesel::sql_types::Timestamptz;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::time::Duration;

/// How often the leader prunes.
pub const EVERY: Duration = Duration::from_secs(60);
/// Rows deleted per statement, and statements per table per pass: small, so a pass never holds
/// many locks or a long transaction.
const BATCH: i64 = 1000;
const ROUNDS: usize = 20;

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub changes: Duration,
    pub processed_events: Duration,
}

/// One pruning pass; how many rows it deleted.
pub async fn run(
    conn: &mut AsyncPgConnection,
    retention: &Retention,
) -> diesel::QueryResult<usize> {
    let mut deleted = 0;
    for (sql, keep) in [
        (
            // Oldest first along the primary key, up to the first row still unpublished or
            // within retention (no index names `published_at`; publish times follow `seq`).
            "DELETE FROM changes WHERE seq IN (SELECT seq FROM changes WHERE seq < \
             (SELECT COALESCE(min(seq), 9223372036854775807) FROM changes \
              WHERE published_at IS NULL OR published_at >= $1) ORDER BY seq LIMIT $2)",
            retention.changes,
        ),
        (
            "DELETE FROM processed_events WHERE event_id IN (SELECT event_id FROM processed_events WHERE processed_at < $1 LIMIT $2)",
            retention.processed_events,
        ),
        (
            "DELETE FROM dead_lettered_events WHERE id IN (SELECT id FROM dead_lettered_events WHERE dead_lettered_at < $1 ORDER BY id LIMIT $2)",
            retention.processed_events,
        ),
        (
            "DELETE FROM sync_runs WHERE id IN (SELECT id FROM sync_runs WHERE finished_at < $1 ORDER BY id LIMIT $2)",
            retention.processed_events,
        ),
    ] {
        let cutoff = chrono::Duration::from_std(keep)
            .ok()
            .and_then(|keep| Utc::now().checked_sub_signed(keep))
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        for _ in 0..ROUNDS {
            let n = diesel::sql_query(sql)
                .bind::<Timestamptz, _>(cutoff)
                .bind::<diesel::sql_types::BigInt, _>(BATCH)
                .execute(conn)
                .await?;
            deleted += n;
            if i64::try_from(n).unwrap_or(0) < BATCH {
                break;
            }
        }
    }
    Ok(deleted)
}
