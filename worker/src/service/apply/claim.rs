//! `processed_events`: the dedupe key of every event, inserted in the same transaction as its
//! change. One insert claims a whole batch (a single event is a batch of one).

use super::{Item, Outcome};
use crate::service::db::cached::{cached, column};
use crate::service::db::schema::processed_events as p;
use diesel::prelude::*;
use diesel::sql_types::{Array, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashSet;

#[derive(diesel::QueryableByName)]
struct Claimed {
    #[diesel(sql_type = Text)]
    event_id: String,
}

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
    let claimed: Vec<&Item<'_>> = order.iter().map(|&i| &items[i]).collect();
    // One statement of fixed text for any number of events (kept prepared: see
    // `crate::service::db::cached`); rows go in in the arrays' order.
    let inserted: Vec<Claimed> = cached(
        diesel::sql_query(
            "INSERT INTO processed_events (event_id, webhook_id, event_type, organization_id, occurred_at, source, outcome, subject_id) \
             SELECT e, w, t, o, a, s, $8, j FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], \
             $6::text[], $7::text[]) WITH ORDINALITY AS r(e, w, t, o, a, s, j, n) ORDER BY n \
             ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        )
        .bind::<Array<Text>, _>(column(&claimed, |i| i.event.envelope.id.as_str()))
        .bind::<Array<Nullable<Text>>, _>(column(&claimed, |i| i.meta.webhook_id.as_deref()))
        .bind::<Array<Text>, _>(column(&claimed, |i| i.event.envelope.event_type.as_str()))
        .bind::<Array<Text>, _>(column(&claimed, |i| i.organization_id))
        .bind::<Array<Timestamptz>, _>(column(&claimed, |i| i.event.envelope.occurred_at))
        .bind::<Array<Text>, _>(column(&claimed, |i| i.meta.source.as_str()))
        .bind::<Array<Nullable<Text>>, _>(column(&claimed, |i| i.event.event.subject_id()))
        .bind::<Text, _>(Outcome::Applied.as_str()),
    )
    .load(conn)
    .await?;
    let mut new: HashSet<String> = inserted.into_iter().map(|c| c.event_id).collect();
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
