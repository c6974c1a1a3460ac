//! `processed_events`: the dedupe key, inserted in the same transaction as the change.

use super::Outcome;
use crate::db::schema::processed_events as p;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::{MessageMeta, WebhookEvent};

/// Inserts the event's row; `false` when it was already there (a duplicate). A concurrent
/// transaction holding the same id makes this wait, then see the conflict.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    meta: &MessageMeta,
    event: &WebhookEvent,
    organization_id: &str,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(p::table)
        .values((
            p::event_id.eq(event.envelope.id.as_str()),
            p::webhook_id.eq(meta.webhook_id.as_deref()),
            p::event_type.eq(&event.envelope.event_type),
            p::organization_id.eq(organization_id),
            p::occurred_at.eq(event.envelope.occurred_at),
            p::source.eq(meta.source.as_str()),
            p::outcome.eq(Outcome::Applied.as_str()),
        ))
        .on_conflict(p::event_id)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

pub async fn set_outcome(
    conn: &mut AsyncPgConnection,
    event_id: &str,
    outcome: Outcome,
) -> QueryResult<()> {
    diesel::update(p::table.filter(p::event_id.eq(event_id)))
        .set(p::outcome.eq(outcome.as_str()))
        .execute(conn)
        .await
        .map(|_| ())
}
