//! `audit_log`: one row per applied change, written in the transaction of the change, all of a
//! transaction's rows in one statement.

use crate::service::db::cached::{cached, column};
use diesel::QueryResult;
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

/// Inserts the rows in order, in one statement of fixed text (kept prepared: see
/// `crate::service::db::cached`).
pub async fn write(conn: &mut AsyncPgConnection, rows: &[AuditRow]) -> QueryResult<()> {
    use diesel::sql_types::{Array, Jsonb, Nullable, Text};
    if rows.is_empty() {
        return Ok(());
    }
    cached(
        diesel::sql_query(
            "INSERT INTO audit_log (event_id, organization_id, entity_type, entity_id, action, before, after) \
             SELECT e, o, t, i, a, b, f FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::jsonb[], $7::jsonb[]) WITH ORDINALITY AS r(e, o, t, i, a, b, f, n) ORDER BY n",
        )
        .bind::<Array<Text>, _>(column(rows, |r| r.event_id.as_str()))
        .bind::<Array<Text>, _>(column(rows, |r| r.organization_id.as_str()))
        .bind::<Array<Text>, _>(column(rows, |r| r.entity_type))
        .bind::<Array<Text>, _>(column(rows, |r| r.entity_id.as_str()))
        .bind::<Array<Text>, _>(column(rows, |r| r.action))
        .bind::<Array<Nullable<Jsonb>>, _>(column(rows, |r| r.before.as_ref()))
        .bind::<Array<Jsonb>, _>(column(rows, |r| &r.after)),
    )
    .execute(conn)
    .await
    .map(|_| ())
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
    cached(
        diesel::sql_query(
            "UPDATE audit_log a SET before = a.before - $3::text[], after = a.after - $3::text[] \
         FROM unnest($1::text[], $2::text[]) AS u(org, id) \
         WHERE a.organization_id = u.org AND a.entity_type = 'user' AND a.entity_id = u.id",
        )
        .bind::<Array<Text>, _>(orgs)
        .bind::<Array<Text>, _>(ids)
        .bind::<Array<Text>, _>(fields),
    )
    .execute(conn)
    .await
    .map(|_| ())
}
