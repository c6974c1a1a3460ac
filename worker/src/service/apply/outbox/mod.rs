//! Writing planned changes into the `changes` outbox, in the transaction of the change itself.
//!
//! `seq` must be commit order, so the relay never publishes a later commit before an earlier
//! one: the rows are inserted under a transaction-scoped advisory lock that is held until the
//! transaction ends. That lock is the last one a transaction takes (after its entity locks), so
//! it cannot take part in a lock cycle; it serializes only the insert and the commit.

pub mod plan;

use crate::service::db::cached::{cached, column};
use crate::service::db::json::JsonbText;
use diesel::QueryResult;
use diesel::sql_types::{Array, Jsonb, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use plan::PlannedChange;

/// The advisory lock that orders outbox inserts ("scim-chg").
pub const COMMIT_ORDER_LOCK: i64 = 0x7363_696d_2d63_6867;

/// The channel the relay listens on; notified on commit of any transaction that wrote changes.
pub const NOTIFY_CHANNEL: &str = "scim_changes";

/// Inserts the changes (in order) and wakes the relay when the transaction commits.
pub async fn write(conn: &mut AsyncPgConnection, changes: &[PlannedChange]) -> QueryResult<usize> {
    if changes.is_empty() {
        return Ok(0);
    }
    cached(diesel::sql_query(format!(
        "SELECT pg_advisory_xact_lock({COMMIT_ORDER_LOCK}), pg_notify('{NOTIFY_CHANNEL}', '')"
    )))
    .execute(conn)
    .await?;
    let payloads = changes
        .iter()
        // Straight to text: no `Value` tree per change.
        .map(|ch| JsonbText::of(&ch.payload))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    // One statement of fixed text for any number of rows (kept prepared); `seq` is drawn in
    // the arrays' order.
    cached(
        diesel::sql_query(
            "INSERT INTO changes (kind, organization_id, cause_event_id, occurred_at, payload) \
             SELECT k, o, c, a, p FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::jsonb[]) \
             WITH ORDINALITY AS r(k, o, c, a, p, n) ORDER BY n",
        )
        .bind::<Array<Text>, _>(column(changes, |ch| ch.kind.as_str()))
        .bind::<Array<Text>, _>(column(changes, |ch| ch.organization_id.as_str()))
        .bind::<Array<Text>, _>(column(changes, |ch| ch.cause_event_id.as_str()))
        .bind::<Array<Timestamptz>, _>(column(changes, |ch| ch.occurred_at))
        .bind::<Array<Jsonb>, _>(payloads),
    )
    .execute(conn)
    .await
}
