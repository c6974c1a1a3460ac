//! `audit_log`: one row per applied change, written in the transaction of the change, in one
//! statement per thousand rows.

use crate::db::schema::audit_log as a;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

/// One audit row.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub event_id: String,
    pub organization_id: String,
    /// `user`, `group` or `directory`.
    pub entity_type: &'static str,
    pub entity_id: String,
    pub action: &'static str,
    pub before: Option<Value>,
    pub after: Value,
}

pub async fn write(conn: &mut AsyncPgConnection, rows: &[AuditRow]) -> QueryResult<()> {
    for chunk in rows.chunks(1000) {
        let values: Vec<_> = chunk
            .iter()
            .map(|r| {
                (
                    a::event_id.eq(r.event_id.as_str()),
                    a::organization_id.eq(r.organization_id.as_str()),
                    a::entity_type.eq(r.entity_type),
                    a::entity_id.eq(r.entity_id.as_str()),
                    a::action.eq(r.action),
                    a::before.eq(r.before.as_ref()),
                    a::after.eq(Some(&r.after)),
                )
            })
            .collect();
        diesel::insert_into(a::table)
            .values(values)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Removes `fields` from the before / after summaries of every audit row of these users
/// (`(organization, user)`), in the caller's transaction: an erased user's earlier rows keep
/// ids, times and actions, not the person.
pub async fn redact_users(
    conn: &mut AsyncPgConnection,
    users: &[(String, String)],
    fields: &[&str],
) -> QueryResult<()> {
    use diesel::sql_types::{Array, Text};
    if users.is_empty() {
        return Ok(());
    }
    let (orgs, ids): (Vec<&str>, Vec<&str>) =
        users.iter().map(|(o, u)| (o.as_str(), u.as_str())).unzip();
    diesel::sql_query(
        "UPDATE audit_log a SET before = a.before - $3::text[], after = a.after - $3::text[] \
         FROM unnest($1::text[], $2::text[]) AS u(org, id) \
         WHERE a.organization_id = u.org AND a.entity_type = 'user' AND a.entity_id = u.id",
    )
    .bind::<Array<Text>, _>(orgs)
    .bind::<Array<Text>, _>(ids)
    .bind::<Array<Text>, _>(fields)
    .execute(conn)
    .await
    .map(|_| ())
}
