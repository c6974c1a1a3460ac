//! Writing planned changes into the `changes` outbox, in the transaction of the change itself.
//!
//! `seq` must be commit order, so the relay never publishes a later commit before an earlier
//! one: the rows are inserted under a transaction-scoped advisory lock that is held until the
//! transaction ends. That lock is the last one a transaction takes (after its entity locks), so
//! it cannot take part in a lock cycle; it serializes only the insert and the commit.

use super::plan::PlannedChange;
use crate::db::json::JsonbText;
use crate::db::schema::changes as c;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// The advisory lock that orders outbox inserts ("scim-chg").
pub const COMMIT_ORDER_LOCK: i64 = 0x7363_696d_2d63_6867;

/// The channel the relay listens on; notified on commit of any transaction that wrote changes.
pub const NOTIFY_CHANNEL: &str = "scim_changes";

/// Inserts the changes (in order) and wakes the relay when the transaction commits.
pub async fn write(conn: &mut AsyncPgConnection, changes: &[PlannedChange]) -> QueryResult<usize> {
    if changes.is_empty() {
        return Ok(0);
    }
    diesel::sql_query(format!(
        "SELECT pg_advisory_xact_lock({COMMIT_ORDER_LOCK}), pg_notify('{NOTIFY_CHANNEL}', '')"
    ))
    .execute(conn)
    .await?;
    let mut written = 0;
    for chunk in changes.chunks(1000) {
        let rows = chunk
            .iter()
            .map(|ch| {
                // Straight to text: no `Value` tree per change.
                let payload = JsonbText::of(&ch.payload)
                    .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
                Ok((
                    c::kind.eq(ch.kind.as_str()),
                    c::organization_id.eq(ch.organization_id.as_str()),
                    c::cause_event_id.eq(ch.cause_event_id.as_str()),
                    c::occurred_at.eq(ch.occurred_at),
                    c::payload.eq(payload),
                ))
            })
            .collect::<QueryResult<Vec<_>>>()?;
        written += diesel::insert_into(c::table)
            .values(rows)
            .execute(conn)
            .await?;
    }
    Ok(written)
}
