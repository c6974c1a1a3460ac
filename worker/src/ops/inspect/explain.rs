//! `worker explain --org ORG --user USER`: a user's current state and the history that led to
//! it, oldest first — every event about the user that reached the worker (type, when it
//! occurred, where it came from), what became of it (applied, duplicate deliveries, stale,
//! held by the brake, dead-lettered and why) and what it changed.
//!
//! The history is read from `processed_events` (one row per event, naming its subject),
//! `audit_log` (before / after of every applied change; also the changes made to the user by
//! another entity's event, such as a group deletion) and `dead_lettered_events`.

use super::InspectError;
use chrono::{DateTime, Utc};
use diesel::sql_types::{Bool, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub organization_id: String,
    /// The directory user id the question resolved to (by id, else by email).
    pub directory_user_id: String,
    /// `None` when no such user is stored (events about it may still have come and failed).
    pub user: Option<UserState>,
    pub history: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserState {
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub active: bool,
    pub deactivated_at: Option<DateTime<Utc>>,
    pub erased_at: Option<DateTime<Utc>>,
    pub provisioned_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// `role (source)`, sorted.
    pub roles: Vec<String>,
    /// Group ids, sorted.
    pub groups: Vec<String>,
}

/// One event about the user, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: Option<DateTime<Utc>>,
    /// `webhook`, `sync` or `replay`.
    pub source: Option<String>,
    /// When the worker handled it (committed, or dead-lettered).
    pub handled_at: DateTime<Utc>,
    /// `applied`, `stale`, `held`, `ignored` or `dead_lettered`.
    pub outcome: String,
    /// Why, for a dead-lettered event.
    pub reason: Option<String>,
    /// Deliveries of the same event after the first (each changed nothing).
    pub duplicates: i32,
    /// What it changed of this user (applied events).
    pub changes: Vec<Effect>,
}

/// What one applied change did to the user (from its audit row).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Effect {
    /// created, updated, reactivated, deactivated, erased, or a group event's action.
    pub action: String,
    /// `Some((before, after))` when `active` changed.
    pub active: Option<(Option<bool>, bool)>,
    pub granted: Vec<String>,
    pub revoked: Vec<String>,
    pub joined: Vec<String>,
    pub left: Vec<String>,
    /// Profile fields whose value changed.
    pub profile: Vec<String>,
}

const PROFILE_FIELDS: [&str; 5] = [
    "email",
    "given_name",
    "family_name",
    "display_name",
    "preferred_username",
];

fn strings(summary: Option<&Value>, field: &str) -> BTreeSet<String> {
    summary
        .and_then(|s| s.get(field))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// What an audit row's before / after summaries say changed. Pure.
pub fn effect(action: &str, before: Option<&Value>, after: Option<&Value>) -> Effect {
    let was = before
        .and_then(|b| b.get("active"))
        .and_then(Value::as_bool);
    let is = after.and_then(|a| a.get("active")).and_then(Value::as_bool);
    let diff = |field: &str| {
        let (b, a) = (strings(before, field), strings(after, field));
        (
            a.difference(&b).cloned().collect(),
            b.difference(&a).cloned().collect(),
        )
    };
    let (granted, revoked) = diff("roles");
    let (joined, left) = diff("groups");
    let profile = match (before, after) {
        (Some(b), Some(a)) => PROFILE_FIELDS
            .iter()
            .filter(|f| b.get(**f) != a.get(**f))
            .map(|f| (*f).to_owned())
            .collect(),
        _ => Vec::new(),
    };
    Effect {
        action: action.to_owned(),
        active: is.filter(|is| was != Some(*is)).map(|is| (was, is)),
        granted,
        revoked,
        joined,
        left,
        profile,
    }
}

#[derive(diesel::QueryableByName)]
struct Resolved {
    #[diesel(sql_type = Text)]
    directory_user_id: String,
}

#[derive(diesel::QueryableByName)]
struct StateRow {
    #[diesel(sql_type = Nullable<Text>)]
    email: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    display_name: Option<String>,
    #[diesel(sql_type = Bool)]
    active: bool,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    deactivated_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    erased_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    provisioned_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

#[derive(diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(diesel::QueryableByName)]
struct EventRow {
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    event_type: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    occurred_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    source: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    handled_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    outcome: String,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<String>,
    #[diesel(sql_type = Integer)]
    duplicates: i32,
}

#[derive(diesel::QueryableByName)]
struct AuditRow {
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    before: Option<Value>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    after: Option<Value>,
}

/// Resolves `user` (a directory user id, else an email) in `org` and reads its story.
pub async fn explain(
    conn: &mut AsyncPgConnection,
    org: &str,
    user: &str,
) -> Result<Explanation, InspectError> {
    let resolved: Option<Resolved> = diesel::sql_query(
        "SELECT directory_user_id FROM directory_users \
         WHERE organization_id = $1 AND (directory_user_id = $2 OR lower(email) = lower($2)) \
         ORDER BY (directory_user_id = $2) DESC, updated_at DESC LIMIT 1",
    )
    .bind::<Text, _>(org)
    .bind::<Text, _>(user)
    .get_result(conn)
    .await
    .map(Some)
    .or_else(|e| match e {
        diesel::result::Error::NotFound => Ok(None),
        e => Err(e),
    })?;
    let id = resolved.map_or_else(|| user.to_owned(), |r| r.directory_user_id);
    let state = state(conn, org, &id).await?;
    let events: Vec<EventRow> = diesel::sql_query(
        "SELECT event_id, event_type, occurred_at, source, processed_at AS handled_at, outcome, \
                NULL::text AS reason, duplicates \
         FROM processed_events \
         WHERE organization_id = $1 AND (subject_id = $2 OR event_id IN ( \
             SELECT event_id FROM audit_log \
             WHERE organization_id = $1 AND entity_type = 'user' AND entity_id = $2)) \
         UNION ALL \
         SELECT event_id, event_type, occurred_at, source, dead_lettered_at, 'dead_lettered', \
                reason || coalesce(': ' || detail, ''), 0 \
         FROM dead_lettered_events WHERE organization_id = $1 AND subject_id = $2",
    )
    .bind::<Text, _>(org)
    .bind::<Text, _>(&id)
    .load(conn)
    .await?;
    let audits: Vec<AuditRow> = diesel::sql_query(
        "SELECT event_id, action, before, after FROM audit_log \
         WHERE organization_id = $1 AND entity_type = 'user' AND entity_id = $2 ORDER BY id",
    )
    .bind::<Text, _>(org)
    .bind::<Text, _>(&id)
    .load(conn)
    .await?;
    let mut history: Vec<Entry> = events
        .into_iter()
        .map(|e| Entry {
            changes: if e.outcome == "applied" {
                audits
                    .iter()
                    .filter(|a| a.event_id == e.event_id)
                    .map(|a| effect(&a.action, a.before.as_ref(), a.after.as_ref()))
                    .collect()
            } else {
                Vec::new()
            },
            event_id: e.event_id,
            event_type: e.event_type.unwrap_or_default(),
            occurred_at: e.occurred_at,
            source: e.source,
            handled_at: e.handled_at,
            outcome: e.outcome,
            reason: e.reason,
            duplicates: e.duplicates,
        })
        .collect();
    history.sort_by(|a, b| {
        (a.occurred_at, a.handled_at, &a.event_id).cmp(&(b.occurred_at, b.handled_at, &b.event_id))
    });
    Ok(Explanation {
        organization_id: org.to_owned(),
        directory_user_id: id,
        user: state,
        history,
    })
}

async fn state(
    conn: &mut AsyncPgConnection,
    org: &str,
    id: &str,
) -> Result<Option<UserState>, InspectError> {
    let row: Vec<StateRow> = diesel::sql_query(
        "SELECT email, display_name, active, deactivated_at, erased_at, provisioned_at, updated_at \
         FROM directory_users WHERE organization_id = $1 AND directory_user_id = $2",
    )
    .bind::<Text, _>(org)
    .bind::<Text, _>(id)
    .load(conn)
    .await?;
    let Some(row) = row.into_iter().next() else {
        return Ok(None);
    };
    let names = |sql: &'static str| {
        diesel::sql_query(sql)
            .bind::<Text, _>(org.to_owned())
            .bind::<Text, _>(id.to_owned())
    };
    let roles: Vec<Name> = names(
        "SELECT role_name || ' (' || source || ')' AS name FROM user_roles \
         WHERE organization_id = $1 AND directory_user_id = $2 ORDER BY 1",
    )
    .load(conn)
    .await?;
    let groups: Vec<Name> = names(
        "SELECT directory_group_id AS name FROM directory_group_memberships \
         WHERE organization_id = $1 AND directory_user_id = $2 ORDER BY 1",
    )
    .load(conn)
    .await?;
    Ok(Some(UserState {
        email: row.email,
        display_name: row.display_name,
        active: row.active,
        deactivated_at: row.deactivated_at,
        erased_at: row.erased_at,
        provisioned_at: row.provisioned_at,
        updated_at: row.updated_at,
        roles: roles.into_iter().map(|n| n.name).collect(),
        groups: groups.into_iter().map(|n| n.name).collect(),
    }))
}
