//! What the worker writes down only so that operators can ask about it later: dead-lettered
//! events (`dead_lettered_events`) and directory sync runs (`sync_runs`). Both are best effort:
//! the dead-letter queue and the logs stay the source of truth when the database is down.

use crate::service::db::schema::{dead_lettered_events as d, sync_runs as s};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::{MessageMeta, WebhookEvent};

/// Records that an event went to the dead-letter queue, and why. `body` is the message as
/// delivered: its ids are read from it as far as it parses (a body whose `data` does not fit
/// its type still names its user), else taken from the message's metadata.
pub async fn dead_lettered(
    conn: &mut AsyncPgConnection,
    meta: &MessageMeta,
    body: &[u8],
    reason: &str,
    detail: &str,
) -> QueryResult<()> {
    let event = WebhookEvent::parse(body).ok();
    // A body whose typed parse failed may still name its subject and organization.
    let raw: Option<serde_json::Value> = match event {
        Some(_) => None,
        None => serde_json::from_slice(body).ok(),
    };
    let raw_str = |path: &[&str]| {
        let mut v = raw.as_ref()?;
        for key in path {
            v = v.get(key)?;
        }
        v.as_str()
    };
    let event_id = event
        .as_ref()
        .map(|e| e.envelope.id.as_str())
        .or_else(|| raw_str(&["id"]))
        .unwrap_or(meta.message_id.as_str());
    let organization_id = event
        .as_ref()
        .and_then(|e| e.organization_id().map(|o| o.as_str()))
        .or_else(|| raw_str(&["organization_id"]))
        .or_else(|| raw_str(&["data", "organization_id"]))
        .or(meta.organization_id.as_deref());
    let subject_id = event
        .as_ref()
        .and_then(|e| e.event.subject_id())
        .or_else(|| raw_str(&["data", "id"]));
    let event_type = event
        .as_ref()
        .map(|e| e.envelope.event_type.as_str())
        .or_else(|| raw_str(&["type"]))
        .unwrap_or(meta.event_type.as_str());
    let time = |t: &str| {
        DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let occurred_at = event
        .as_ref()
        .map(|e| e.envelope.occurred_at)
        .or_else(|| raw_str(&["occurred_at"]).and_then(time))
        .or_else(|| meta.occurred_at.as_deref().and_then(time));
    diesel::insert_into(d::table)
        .values((
            d::event_id.eq(event_id),
            d::event_type.eq(event_type),
            d::organization_id.eq(organization_id),
            d::subject_id.eq(subject_id),
            d::occurred_at.eq(occurred_at),
            d::source.eq(meta.source.as_str()),
            d::reason.eq(reason),
            d::detail.eq(detail),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// How one directory sync ended.
#[derive(Debug, Clone)]
pub struct SyncRun<'a> {
    pub organization_id: &'a str,
    pub directory_id: &'a str,
    pub started_at: DateTime<Utc>,
    /// `ok` or `failed`.
    pub outcome: &'a str,
    pub users_listed: Option<usize>,
    pub users_changed: Option<usize>,
    /// The error of a failed run.
    pub detail: Option<String>,
}

pub async fn sync_run(conn: &mut AsyncPgConnection, run: &SyncRun<'_>) -> QueryResult<()> {
    let count = |n: Option<usize>| n.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
    diesel::insert_into(s::table)
        .values((
            s::organization_id.eq(run.organization_id),
            s::directory_id.eq(run.directory_id),
            s::started_at.eq(run.started_at),
            s::outcome.eq(run.outcome),
            s::users_listed.eq(count(run.users_listed)),
            s::users_changed.eq(count(run.users_changed)),
            s::detail.eq(run.detail.as_deref()),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}
