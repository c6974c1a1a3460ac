//! What the deployment's two leaders of the change feed — the relay (to the stream) and push
//! delivery (to the applications) — share: a bounded connection set for their work, and the
//! session-level advisory lock that makes exactly one worker lead each.

use crate::service::db::Timeouts;
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use std::time::Duration;

/// Connecting (and trying the lock) is bounded: a cut network must not hold a leader.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LeaderDbError {
    #[error("database connection")]
    Connect(#[from] diesel::ConnectionError),
    #[error("no database connection within {0:?}")]
    Timeout(Duration),
    #[error("database")]
    Query(#[from] diesel::result::Error),
}

/// A leader's connection, bounded in time. What a leader writes (a relay's marks, delivery
/// positions) only repeats work when lost in a crash (consumers skip what they have), so its
/// commits need not wait for the WAL flush.
///
/// Its queries read a few hundred rows along the primary key, so it never plans parallel
/// workers: before `changes` has statistics (a new deployment, a fresh database) PostgreSQL
/// guessed a third of the table for `seq > floor` and started two workers each second, about
/// 15 ms apiece against 1 ms without them (EXPLAIN ANALYZE over 100,000 rows).
pub async fn connect(url: &str, timeouts: &Timeouts) -> Result<AsyncPgConnection, LeaderDbError> {
    let mut conn =
        tokio::time::timeout(CONNECT_TIMEOUT, crate::service::db::connect(url, timeouts))
            .await
            .map_err(|_| LeaderDbError::Timeout(CONNECT_TIMEOUT))??;
    conn.batch_execute("SET synchronous_commit = off; SET max_parallel_workers_per_gather = 0")
        .await?;
    Ok(conn)
}

/// Tries the session lock `key` on `conn`, bounded in time: whether this connection leads.
pub async fn try_lock(conn: &mut AsyncPgConnection, key: i64) -> Result<bool, LeaderDbError> {
    #[derive(QueryableByName)]
    struct Leader {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        leader: bool,
    }
    let query = diesel::sql_query(format!("SELECT pg_try_advisory_lock({key}) AS leader"));
    let leader: Leader = tokio::time::timeout(CONNECT_TIMEOUT, query.get_result(conn))
        .await
        .map_err(|_| LeaderDbError::Timeout(CONNECT_TIMEOUT))??;
    Ok(leader.leader)
}

/// Whether any session holds the leader lock `key` (a read for operators: it takes nothing).
pub async fn is_held(conn: &mut AsyncPgConnection, key: i64) -> diesel::QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Held {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        held: bool,
    }
    // A bigint advisory key is shown in `pg_locks` as its high half (`classid`) and low half
    // (`objid`), with `objsubid` 1.
    let (high, low) = (key >> 32, key & 0xffff_ffff);
    let held: Held = diesel::sql_query(format!(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
                        AND classid = {high} AND objid = {low} AND objsubid = 1) AS held"
    ))
    .get_result(conn)
    .await?;
    Ok(held.held)
}
