//! `processed_events`: the dedupe key of every event, inserted in the same transaction as its
//! change. One insert claims a whole batch (a single event is a batch of one).

use super::{Item, Outcome};
use crate::db::schema::processed_events as p;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashSet;

/// Inserts the dedupe row of every item; `true` for the items that are new (the first
/// occurrence of an id in the batch, when it was not processed before). A concurrent
/// transaction holding the same id makes this wait, then see the conflict. Rows are inserted in
/// event id order, so two batches never wait on each other's rows in a cycle.
pub async fn claim_all(conn: &mut AsyncPgConnection, items: &[Item<'_>]) -> QueryResult<Vec<bool>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|a, b| {
        items[*a]
            .event
            .envelope
            .id
            .cmp(&items[*b].event.envelope.id)
    });
    order.dedup_by(|a, b| items[*a].event.envelope.id == items[*b].event.envelope.id);
    let rows: Vec<_> = order
        .iter()
        .map(|&i| &items[i])
        .map(|item| {
            let e = &item.event.envelope;
            (
                p::event_id.eq(e.id.as_str()),
                p::webhook_id.eq(item.meta.webhook_id.as_deref()),
                p::event_type.eq(e.event_type.as_str()),
                p::organization_id.eq(item.organization_id),
                p::occurred_at.eq(e.occurred_at),
                p::source.eq(item.meta.source.as_str()),
                p::outcome.eq(Outcome::Applied.as_str()),
                p::subject_id.eq(item.event.event.subject_id()),
            )
        })
        .collect();
    let inserted: Vec<String> = diesel::insert_into(p::table)
        .values(rows)
        .on_conflict(p::event_id)
        .do_nothing()
        .returning(p::event_id)
        .get_results(conn)
        .await?;
    let mut new: HashSet<String> = inserted.into_iter().collect();
    Ok(items
        .iter()
        .map(|item| new.remove(item.event.envelope.id.as_str()))
        .collect())
}

/// Records `outcome` (stale, ignored) for events claimed as applied that changed nothing.
pub async fn set_outcome(
    conn: &mut AsyncPgConnection,
    event_ids: &[&str],
    outcome: Outcome,
) -> QueryResult<()> {
    if event_ids.is_empty() {
        return Ok(());
    }
    diesel::update(p::table.filter(p::event_id.eq_any(event_ids)))
        .set(p::outcome.eq(outcome.as_str()))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Counts deliveries of events already processed (each id once per occurrence), so
/// `worker explain` can show that a webhook came again and changed nothing.
pub async fn count_duplicates(conn: &mut AsyncPgConnection, event_ids: &[&str]) -> QueryResult<()> {
    if event_ids.is_empty() {
        return Ok(());
    }
    let mut counts: std::collections::BTreeMap<&str, i32> = std::collections::BTreeMap::new();
    for id in event_ids {
        *counts.entry(id).or_default() += 1;
    }
    // In id order, as the claim takes its rows: no lock cycle with another batch.
    for (id, n) in counts {
        diesel::update(p::table.filter(p::event_id.eq(id)))
            .set((
                p::duplicates.eq(p::duplicates + n),
                p::last_duplicate_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}
