//! What a sync reads from (and the one thing it writes to) the database: the active users of a
//! directory to reconcile, `last_synced_at`. Listed users are read as the apply path reads them
//! (`crate::service::apply::user::store::load_users`).

use crate::service::db::schema::{directories as d, directory_users as u};
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Active users of a directory with their lifecycle version (event id). Users whose directory
/// is unknown (webhooks do not say) count as members when the organization has one directory.
pub async fn active_users(
    conn: &mut AsyncPgConnection,
    org: &str,
    dir: &str,
    include_unassigned: bool,
) -> QueryResult<Vec<(String, String)>> {
    let mut q = u::table
        .filter(u::organization_id.eq(org).and(u::active.eq(true)))
        .select((u::directory_user_id, u::source_event_id))
        .into_boxed();
    q = if include_unassigned {
        q.filter(u::directory_id.eq(dir).or(u::directory_id.is_null()))
    } else {
        q.filter(u::directory_id.eq(dir))
    };
    q.load(conn).await
}

pub async fn mark_synced(conn: &mut AsyncPgConnection, org: &str, dir: &str) -> QueryResult<()> {
    diesel::update(d::table.filter(d::organization_id.eq(org).and(d::id.eq(dir))))
        .set(d::last_synced_at.eq(Utc::now()))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Organizations with at least one enabled directory, and when each was last synced.
pub async fn enabled_organizations(
    conn: &mut AsyncPgConnection,
) -> QueryResult<Vec<(String, Option<chrono::DateTime<Utc>>)>> {
    let rows: Vec<(String, Option<chrono::DateTime<Utc>>)> = d::table
        .filter(d::enabled.eq(true))
        .select((d::organization_id, d::last_synced_at))
        .order(d::organization_id)
        .load(conn)
        .await?;
    let mut out: Vec<(String, Option<chrono::DateTime<Utc>>)> = Vec::new();
    for (org, at) in rows {
        match out.last_mut() {
            Some((last, seen)) if *last == org => *seen = (*seen).min(at),
            _ => out.push((org, at)),
        }
    }
    Ok(out)
}
