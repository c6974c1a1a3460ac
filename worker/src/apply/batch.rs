//! Applying many user events in one transaction, set-based: every lock taken up front in the
//! global order (groups shared, then users, each sorted), one dedupe insert (sorted by event
//! id), one load of every user involved, the same pure planner folded over each user's events
//! in memory, one write per table. Because a batch holds all its locks before it inserts a
//! dedupe row, concurrent batches (and single events) cannot deadlock on each other. Any error
//! fails the whole batch; the caller then applies its events one by one (which isolates a bad
//! event and classifies its failure). Other event kinds go through `Applier::apply`.

use super::batch_store::{self, FinalUser, UserKey};
use super::user_plan::{PlanContext, StoredUser, UserEvent, UserPlan, plan_user};
use super::version::Version;
use super::{Applier, ApplyError, Outcome, locks};
use crate::db::schema::processed_events as p;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared::{Event, MessageMeta, WebhookEvent};
use std::collections::{BTreeMap, BTreeSet, HashSet};

type Audit = batch_store::UserAudit;

impl Applier {
    /// Applies user events (`user_created`, `user_updated`, `user_deleted`) in one
    /// transaction; outcomes in input order. Other kinds are refused (`ApplyError::NotBatchable`).
    pub async fn apply_batch(
        &self,
        items: &[(MessageMeta, WebhookEvent)],
    ) -> Result<Vec<Outcome>, ApplyError> {
        if items.iter().any(|(_, e)| !super::batchable(&e.event)) {
            return Err(ApplyError::NotBatchable);
        }
        let mut orgs = Vec::with_capacity(items.len());
        for (_, e) in items {
            orgs.push(
                e.organization_id()
                    .map(|o| o.as_str().to_owned())
                    .ok_or(ApplyError::MissingOrganization)?,
            );
        }
        let mut conn = self.pool().get().await?;
        let mapping = self.mapping();
        let hard_delete = self.hard_delete();
        conn.transaction::<Vec<Outcome>, ApplyError, _>(async |conn| {
            let mut outcomes = vec![Outcome::Duplicate; items.len()];
            let all: Vec<usize> = (0..items.len()).collect();
            lock_segment(conn, items, &orgs, &all).await?;
            let fresh = claim_all(conn, items, &orgs).await?;
            let segment: Vec<usize> = all.into_iter().filter(|i| fresh[*i]).collect();
            apply_user_segment(
                conn,
                items,
                &orgs,
                &segment,
                &mut outcomes,
                mapping,
                hard_delete,
            )
            .await?;
            let stale: Vec<&str> = items
                .iter()
                .zip(&outcomes)
                .zip(&fresh)
                .filter(|((_, o), f)| **f && **o == Outcome::Stale)
                .map(|(((_, e), _), _)| e.envelope.id.as_str())
                .collect();
            if !stale.is_empty() {
                diesel::update(p::table.filter(p::event_id.eq_any(stale)))
                    .set(p::outcome.eq(Outcome::Stale.as_str()))
                    .execute(conn)
                    .await?;
            }
            Ok(outcomes)
        })
        .await
    }
}

/// Inserts every dedupe row at once; `true` for the items that are new (the first occurrence of
/// an id in the batch, when it was not processed before).
async fn claim_all(
    conn: &mut AsyncPgConnection,
    items: &[(MessageMeta, WebhookEvent)],
    orgs: &[String],
) -> diesel::QueryResult<Vec<bool>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|a, b| items[*a].1.envelope.id.cmp(&items[*b].1.envelope.id));
    order.dedup_by(|a, b| items[*a].1.envelope.id == items[*b].1.envelope.id);
    let rows: Vec<_> = order
        .iter()
        .map(|&i| (&items[i], &orgs[i]))
        .map(|((meta, e), org)| {
            (
                p::event_id.eq(e.envelope.id.as_str()),
                p::webhook_id.eq(meta.webhook_id.as_deref()),
                p::event_type.eq(e.envelope.event_type.as_str()),
                p::organization_id.eq(org.as_str()),
                p::occurred_at.eq(e.envelope.occurred_at),
                p::source.eq(meta.source.as_str()),
                p::outcome.eq(Outcome::Applied.as_str()),
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
        .map(|(_, e)| new.remove(e.envelope.id.as_str()))
        .collect())
}

/// The user and group keys of the user events at `indices`.
fn segment_keys(
    items: &[(MessageMeta, WebhookEvent)],
    orgs: &[String],
    indices: &[usize],
) -> (BTreeSet<UserKey>, BTreeSet<UserKey>) {
    let mut user_keys: BTreeSet<UserKey> = BTreeSet::new();
    let mut group_keys: BTreeSet<UserKey> = BTreeSet::new();
    for &i in indices {
        let org = &orgs[i];
        match &items[i].1.event {
            Event::UserCreated(u) | Event::UserUpdated(u) => {
                user_keys.insert((org.clone(), u.id.as_str().to_owned()));
                for g in u.groups.iter().flatten() {
                    group_keys.insert((org.clone(), g.id.as_str().to_owned()));
                }
            }
            Event::UserDeleted(u) => {
                user_keys.insert((org.clone(), u.id.as_str().to_owned()));
            }
            _ => {}
        }
    }
    (user_keys, group_keys)
}

async fn lock_segment(
    conn: &mut AsyncPgConnection,
    items: &[(MessageMeta, WebhookEvent)],
    orgs: &[String],
    indices: &[usize],
) -> diesel::QueryResult<()> {
    let (user_keys, group_keys) = segment_keys(items, orgs, indices);
    let lock_groups: BTreeSet<String> = group_keys
        .iter()
        .map(|(o, g)| locks::group_key(o, g))
        .collect();
    let lock_users: BTreeSet<String> = user_keys
        .iter()
        .map(|(o, u)| locks::user_key(o, u))
        .collect();
    batch_store::lock_all(conn, &lock_groups, &lock_users).await
}

#[allow(clippy::too_many_arguments)]
async fn apply_user_segment(
    conn: &mut AsyncPgConnection,
    items: &[(MessageMeta, WebhookEvent)],
    orgs: &[String],
    segment: &[usize],
    outcomes: &mut [Outcome],
    mapping: &crate::role_mapping::RoleMapping,
    hard_delete: bool,
) -> diesel::QueryResult<()> {
    if segment.is_empty() {
        return Ok(());
    }
    let (user_keys, group_keys) = segment_keys(items, orgs, segment);
    let keys: Vec<UserKey> = user_keys.into_iter().collect();
    // As stored before the batch, and as the batch leaves each changed user (with the directory
    // id of the newest event that carried one).
    let loaded = batch_store::load_users(conn, &keys).await?;
    let mut next: BTreeMap<UserKey, (StoredUser, Option<String>)> = BTreeMap::new();
    let groups: Vec<UserKey> = group_keys.into_iter().collect();
    let deleted = batch_store::deleted_groups(conn, &groups).await?;
    let mut deleted_by_org: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (o, g) in &deleted {
        deleted_by_org.entry(o).or_default().insert(g.clone());
    }
    let none_deleted = BTreeSet::new();
    let mut audits: Vec<Audit> = Vec::new();
    for &i in segment {
        let (_, event) = &items[i];
        let org = orgs[i].as_str();
        let version = Version::new(event.envelope.occurred_at, event.envelope.id.as_str());
        let raw = &event.envelope.data;
        let (key, plan_event, directory_id) = match &event.event {
            Event::UserCreated(u) | Event::UserUpdated(u) => (
                (org.to_owned(), u.id.as_str().to_owned()),
                UserEvent::Upsert(u),
                u.directory_id.as_ref().map(|d| d.as_str().to_owned()),
            ),
            Event::UserDeleted(u) => (
                (org.to_owned(), u.id.as_str().to_owned()),
                UserEvent::Delete(u),
                None,
            ),
            _ => continue,
        };
        let ctx = PlanContext {
            organization_id: org,
            mapping,
            hard_delete,
            deleted_groups: deleted_by_org.get(org).unwrap_or(&none_deleted),
        };
        let current = next.get(&key).map(|(s, _)| s).or_else(|| loaded.get(&key));
        match plan_user(plan_event, raw, version, current, &ctx) {
            UserPlan::Stale => outcomes[i] = Outcome::Stale,
            UserPlan::Apply(change) => {
                audits.push((
                    event.envelope.id.as_str().to_owned(),
                    org.to_owned(),
                    key.1.clone(),
                    change.action,
                    change.before.clone(),
                    change.after.clone(),
                ));
                let state = change.applied_to(current);
                let directory_id = match next.remove(&key) {
                    Some((_, earlier)) => directory_id.or(earlier),
                    None => directory_id,
                };
                next.insert(key, (state, directory_id));
                outcomes[i] = Outcome::Applied;
            }
        }
    }
    let finals: Vec<FinalUser<'_>> = next
        .iter()
        .map(|(key, (state, dir))| FinalUser::new(key, state, dir.as_deref(), loaded.get(key)))
        .collect();
    batch_store::write_users(conn, &finals).await?;
    batch_store::write_audit(conn, &audits).await
}
