//! B_sql's third part: the rows the worker writes for a batch of events, written the cheapest
//! direct way — one statement per table over arrays (`unnest`), each kept prepared on the
//! connection (the worker's own statement form, `worker::service::db::cached`), one transaction per
//! batch. Per event: a dedupe row, a user upsert, an audit row and its change-feed rows; a
//! user's first event also writes a membership and a role.

use diesel::sql_types::{Array, Jsonb, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};
use std::ops::Range;
use worker::service::db::cached::cached;

/// The change kinds event `i` makes: a user's first event provisions it (and grants its role
/// and group), a later one updates its profile — 3 and 1 rows, 2 per event on average, as in
/// the drain.
fn change_kinds(i: usize, users: usize) -> &'static [&'static str] {
    if i < users {
        &[
            "user.provisioned",
            "user.roles_changed",
            "user.groups_changed",
        ]
    } else {
        &["user.updated"]
    }
}

fn user_id(i: usize, users: usize) -> String {
    format!("diruser_{:07}", i % users)
}

fn event_id(i: usize) -> String {
    format!("evt_sql_{i:09}")
}

/// An audit summary of the profile event `n` left.
fn profile(n: usize, attrs: &Value) -> Value {
    json!({
        "email": format!("user{n}@example.com"),
        "given_name": "Bench",
        "family_name": format!("User{n}"),
        "active": true,
        "attributes": attrs,
    })
}

/// The user's snapshot a change carries.
fn snapshot(i: usize, users: usize) -> Value {
    json!({"user": {
        "directory_user_id": user_id(i, users),
        "email": format!("user{i}@example.com"),
        "given_name": "Bench",
        "family_name": format!("User{i}"),
        "display_name": format!("Bench User{i}"),
        "active": true,
        "roles": ["member"],
        "groups": ["dirgroup_bench"],
    }})
}

/// Writes the rows of events `range` (over `users` users) in one transaction. The range must
/// not hold two events of one user (at most `users` events): the worker folds a user's events
/// into one row, and one upsert cannot write a row twice.
pub async fn write_batch(
    conn: &mut AsyncPgConnection,
    range: Range<usize>,
    users: usize,
    attrs: &Value,
) -> anyhow::Result<()> {
    let events: Vec<usize> = range.collect();
    let ids: Vec<String> = events.iter().map(|&i| event_id(i)).collect();
    let user_ids: Vec<String> = events.iter().map(|&i| user_id(i, users)).collect();
    let emails: Vec<String> = events
        .iter()
        .map(|i| format!("user{i}@example.com"))
        .collect();
    let family: Vec<String> = events.iter().map(|i| format!("User{i}")).collect();
    let display: Vec<String> = events.iter().map(|i| format!("Bench User{i}")).collect();
    let usernames: Vec<String> = events.iter().map(|i| format!("u{i}")).collect();
    let attributes: Vec<&Value> = events.iter().map(|_| attrs).collect();
    let before: Vec<Value> = events
        .iter()
        .map(|&i| profile(i.saturating_sub(users), attrs))
        .collect();
    let after: Vec<Value> = events.iter().map(|&i| profile(i, attrs)).collect();
    let mut change_kind = Vec::new();
    let mut change_cause = Vec::new();
    let mut change_payload = Vec::new();
    for &i in &events {
        for kind in change_kinds(i, users) {
            change_kind.push(*kind);
            change_cause.push(event_id(i));
            change_payload.push(snapshot(i, users));
        }
    }
    let new_users: Vec<String> = events
        .iter()
        .filter(|&&i| i < users)
        .map(|&i| user_id(i, users))
        .collect();
    conn.transaction::<_, anyhow::Error, _>(async |c| {
        cached(
            diesel::sql_query(
                "INSERT INTO processed_events (event_id, webhook_id, event_type, organization_id, occurred_at, source, outcome) \
                 SELECT e, 'msg_' || e, 'organization.directory.user_updated', 'org_sql', now(), 'webhook', 'applied' \
                 FROM unnest($1::text[]) AS r(e) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind::<Array<Text>, _>(&ids),
        )
        .execute(c)
        .await?;
        cached(
            diesel::sql_query(
                "INSERT INTO directory_users (organization_id, directory_user_id, email, given_name, family_name, \
                 display_name, preferred_username, active, attributes, source_updated_at, source_event_id) \
                 SELECT 'org_sql', u, m, 'Bench', f, d, n, true, a, now(), e \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::text[]) AS r(u, m, f, d, n, a, e) \
                 ON CONFLICT (organization_id, directory_user_id) DO UPDATE SET email = excluded.email, \
                 given_name = excluded.given_name, family_name = excluded.family_name, display_name = excluded.display_name, \
                 attributes = excluded.attributes, source_updated_at = excluded.source_updated_at, \
                 source_event_id = excluded.source_event_id, updated_at = now()",
            )
            .bind::<Array<Text>, _>(&user_ids)
            .bind::<Array<Text>, _>(&emails)
            .bind::<Array<Text>, _>(&family)
            .bind::<Array<Text>, _>(&display)
            .bind::<Array<Text>, _>(&usernames)
            .bind::<Array<Jsonb>, _>(&attributes)
            .bind::<Array<Text>, _>(&ids),
        )
        .execute(c)
        .await?;
        cached(
            diesel::sql_query(
                "INSERT INTO audit_log (event_id, organization_id, entity_type, entity_id, action, before, after) \
                 SELECT e, 'org_sql', 'user', u, 'updated', b, a FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::jsonb[]) AS r(e, u, b, a)",
            )
            .bind::<Array<Text>, _>(&ids)
            .bind::<Array<Text>, _>(&user_ids)
            .bind::<Array<Jsonb>, _>(&before)
            .bind::<Array<Jsonb>, _>(&after),
        )
        .execute(c)
        .await?;
        cached(
            diesel::sql_query(
                "INSERT INTO changes (kind, organization_id, cause_event_id, occurred_at, payload) \
                 SELECT k, 'org_sql', e, now(), p FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS r(k, e, p)",
            )
            .bind::<Array<Text>, _>(&change_kind)
            .bind::<Array<Text>, _>(&change_cause)
            .bind::<Array<Jsonb>, _>(&change_payload),
        )
        .execute(c)
        .await?;
        // A new user's membership and role.
        for sql in [
            "INSERT INTO directory_group_memberships (organization_id, directory_user_id, directory_group_id, group_name) \
             SELECT 'org_sql', u, 'dirgroup_bench', 'Bench' FROM unnest($1::text[]) AS r(u)",
            "INSERT INTO user_roles (organization_id, directory_user_id, role_name, source) \
             SELECT 'org_sql', u, 'member', 'scalekit' FROM unnest($1::text[]) AS r(u)",
        ] {
            if !new_users.is_empty() {
                cached(diesel::sql_query(sql).bind::<Array<Text>, _>(&new_users))
                    .execute(c)
                    .await?;
            }
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_events_provision_and_later_ones_update() {
        assert_eq!(change_kinds(3, 5).len(), 3);
        assert_eq!(change_kinds(7, 5), ["user.updated"]);
        assert_eq!(user_id(7, 5), "diruser_0000002");
        let s = snapshot(12, 5);
        assert_eq!(s["user"]["directory_user_id"], "diruser_0000002");
        assert_eq!(s["user"]["roles"][0], "member");
    }
}
