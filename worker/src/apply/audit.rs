//! One `audit_log` row per applied change.

use crate::db::schema::audit_log;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

pub struct AuditEntry<'a> {
    pub event_id: &'a str,
    pub organization_id: &'a str,
    pub entity_type: &'a str,
    pub entity_id: &'a str,
    pub action: &'a str,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

pub async fn record(conn: &mut AsyncPgConnection, e: AuditEntry<'_>) -> QueryResult<()> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::event_id.eq(e.event_id),
            audit_log::organization_id.eq(e.organization_id),
            audit_log::entity_type.eq(e.entity_type),
            audit_log::entity_id.eq(e.entity_id),
            audit_log::action.eq(e.action),
            audit_log::before.eq(e.before),
            audit_log::after.eq(e.after),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}
