//! Retention, run by the leading relay in small batches: the earlier states of erased users
//! scrubbed from the outbox ([`scrub_erased`]), published changes older than
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

/// The profile fields of a change's user state, set to null for an erased user.
const SCRUBBED_USER: &str =
    r#"{"email": null, "given_name": null, "family_name": null, "display_name": null}"#;

/// Scrubs the earlier states of every user erased since the last pass
/// ([`crate::service::apply::user::erasure`]) from the `changes` outbox: their profile fields become null,
/// ids, kinds, roles and groups stay. One statement, so the notes go with the rows they
/// cleaned; how many rows it changed.
pub async fn scrub_erased(conn: &mut AsyncPgConnection) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "WITH erased AS (DELETE FROM erasures_pending RETURNING organization_id, directory_user_id) \
         UPDATE changes c SET payload = jsonb_set(c.payload, '{user}', (c.payload->'user') || $1::jsonb) \
         FROM erased e \
         WHERE c.organization_id = e.organization_id \
           AND c.payload->'user'->>'directory_user_id' = e.directory_user_id \
           AND jsonb_typeof(c.payload->'user') = 'object' \
           AND (c.payload->'user') @> $1::jsonb IS NOT TRUE",
    )
    .bind::<diesel::sql_types::Text, _>(SCRUBBED_USER)
    .execute(conn)
    .await
}

/// One pruning pass (erasures first); how many rows it deleted or scrubbed.
pub async fn run(
    conn: &mut AsyncPgConnection,
    retention: &Retention,
) -> diesel::QueryResult<usize> {
    let mut deleted = scrub_erased(conn).await?;
    for (sql, keep) in [
        (
            // Oldest first along the primary key, up to the first row still unpublished or
            // within retention (no index names `published_at`; publish times follow `seq`).
            // The highest deleted `seq` raises `pruned_through` in the same statement: the pull
            // API answers a cursor below it with 410 `cursor_expired`. Nothing is deleted that a
            // configured push endpoint (paused ones included) has not been delivered: an
            // endpoint's floor holds retention back rather than lose a change.
            "WITH gone AS (DELETE FROM changes WHERE seq IN (SELECT seq FROM changes WHERE seq < \
             (SELECT COALESCE(min(seq), 9223372036854775807) FROM changes \
              WHERE published_at IS NULL OR published_at >= $1) \
             AND seq <= (SELECT COALESCE(min(scanned_through), 9223372036854775807) \
              FROM change_endpoints WHERE retired_at IS NULL) ORDER BY seq LIMIT $2) \
              RETURNING seq), \
             mark AS (UPDATE change_relay SET pruned_through = \
              GREATEST(pruned_through, (SELECT max(seq) FROM gone)) \
              WHERE EXISTS (SELECT 1 FROM gone)) \
             SELECT count(*) AS n FROM gone",
            retention.changes,
        ),
        (
            "WITH gone AS (DELETE FROM processed_events WHERE event_id IN (SELECT event_id FROM processed_events WHERE processed_at < $1 LIMIT $2) RETURNING 1) SELECT count(*) AS n FROM gone",
            retention.processed_events,
        ),
        (
            "WITH gone AS (DELETE FROM dead_lettered_events WHERE id IN (SELECT id FROM dead_lettered_events WHERE dead_lettered_at < $1 ORDER BY id LIMIT $2) RETURNING 1) SELECT count(*) AS n FROM gone",
            retention.processed_events,
        ),
        (
            "WITH gone AS (DELETE FROM sync_runs WHERE id IN (SELECT id FROM sync_runs WHERE finished_at < $1 ORDER BY id LIMIT $2) RETURNING 1) SELECT count(*) AS n FROM gone",
            retention.processed_events,
        ),
    ] {
        let cutoff = chrono::Duration::from_std(keep)
            .ok()
            .and_then(|keep| Utc::now().checked_sub_signed(keep))
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        for _ in 0..ROUNDS {
            #[derive(diesel::QueryableByName)]
            struct Deleted {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let Deleted { n } = diesel::sql_query(sql)
                .bind::<Timestamptz, _>(cutoff)
                .bind::<diesel::sql_types::BigInt, _>(BATCH)
                .get_result(conn)
                .await?;
            deleted += usize::try_from(n).unwrap_or(0);
            if n < BATCH {
                break;
            }
        }
    }
    Ok(deleted)
}
