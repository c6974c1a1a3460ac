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
