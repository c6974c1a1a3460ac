//! The user step of a transaction: every user the batch touches loaded at once, the planner
//! folded over each user's events in input order, one write per table.

use super::plan::{PlanContext, StoredUser, UserEvent, UserPlan, plan_user};
use super::store::{self, FinalUser, Key};
use crate::service::apply::audit::{self, AuditRow};
use crate::service::apply::locks::{self, LockSet};
use crate::service::apply::outbox::plan::{Cause, PlannedChange, user_changes};
use crate::service::apply::version::Version;
use crate::service::apply::{ApplyError, Item, Outcome, Rules};
use crate::service::brake::{self, Budget};
use diesel_async::AsyncPgConnection;
use shared::{Event, UserData};
use std::collections::{BTreeMap, BTreeSet};

/// A user event's user key, groups, planner input and directory id.
fn parts<'a>(item: &Item<'a>) -> Option<(Key, UserEvent<'a>, Option<&'a UserData>)> {
    let org = item.organization_id.to_owned();
    match &item.event.event {
        Event::UserCreated(u) | Event::UserUpdated(u) => Some((
            (org, u.id.as_str().to_owned()),
            UserEvent::Upsert(u),
            Some(u),
        )),
        Event::UserDeleted(u) => {
            Some(((org, u.id.as_str().to_owned()), UserEvent::Delete(u), None))
        }
        _ => None,
    }
}

/// The users and the groups (as (org, group)) the events refer to.
fn keys(items: &[Item<'_>]) -> (BTreeSet<Key>, BTreeSet<Key>) {
    let mut users = BTreeSet::new();
    let mut groups = BTreeSet::new();
    for item in items {
        let Some((key, _, data)) = parts(item) else {
            continue;
        };
        for g in data.iter().flat_map(|u| u.groups.iter().flatten()) {
            groups.insert((key.0.clone(), g.id.as_str().to_owned()));
        }
        users.insert(key);
    }
    (users, groups)
}

/// The locks of user events: their groups and their organizations' users key shared (a
/// concurrent deletion of one of the groups must not interleave), their users exclusive.
pub fn locks(items: &[Item<'_>]) -> LockSet {
    let (users, groups) = keys(items);
    LockSet {
        shared: groups
            .iter()
            .map(|(o, g)| locks::group_key(o, g))
            .chain(users.iter().map(|(o, _)| locks::org_users_key(o)))
            .collect(),
        exclusive: users.iter().map(|(o, u)| locks::user_key(o, u)).collect(),
    }
}

/// Applies new user events (already claimed, their locks held): one outcome each, and the net
/// changes they made, in order.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    items: &[Item<'_>],
    rules: &Rules<'_>,
) -> Result<(Vec<Outcome>, Vec<PlannedChange>), ApplyError> {
    let mut outcomes = vec![Outcome::Ignored; items.len()];
    let mut changes = Vec::new();
    if items.is_empty() {
        return Ok((outcomes, changes));
    }
    let (users, groups) = keys(items);
    let users: Vec<Key> = users.into_iter().collect();
    let groups: Vec<Key> = groups.into_iter().collect();
    // As stored before the batch, and as the batch leaves each changed user (with the directory
    // id of the newest event that carried one).
    let stored = store::load_users(conn, &users).await?;
    let mut next: BTreeMap<Key, (StoredUser, Option<String>)> = BTreeMap::new();
    let mut deleted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (org, group) in store::deleted_groups(conn, &groups).await? {
        deleted.entry(org).or_default().insert(group);
    }
    let none_deleted = BTreeSet::new();
    let mut audits: Vec<AuditRow> = Vec::new();
    // The deprovisioning brake's budget per organization, read when its first deactivation in
    // this batch comes up; and the deactivations it holds back.
    let mut budgets: BTreeMap<String, OrgBudget> = BTreeMap::new();
    if let Some(settings) = rules.brake.filter(|_| rules.strict_brake) {
        // Under the lock from the start: every organization this batch may deactivate users
        // of, in order (every transaction takes brake locks in this order, after its entity
        // locks and before the outbox's).
        let orgs: BTreeSet<&str> = items
            .iter()
            .filter(|i| may_deactivate(i))
            .map(|i| i.organization_id)
            .collect();
        for org in orgs {
            let budget = brake::store::budget(conn, org, &settings).await?;
            budgets.insert(org.to_owned(), OrgBudget::Locked(budget));
        }
    }
    let mut held: Vec<brake::store::HeldEvent> = Vec::new();
    // Users erased by this batch: their earlier audit rows lose the personal fields.
    let mut erased: Vec<Key> = Vec::new();
    for (item, outcome) in items.iter().zip(outcomes.iter_mut()) {
        let Some((key, plan_event, data)) = parts(item) else {
            continue;
        };
        let envelope = &item.event.envelope;
        let ctx = PlanContext {
            organization_id: item.organization_id,
            mapping: rules.mapping,
            hard_delete: rules.hard_delete,
            deleted_groups: deleted.get(item.organization_id).unwrap_or(&none_deleted),
        };
        let version = Version::new(envelope.occurred_at, envelope.id.as_str());
        let current = next.get(&key).map(|(s, _)| s).or_else(|| stored.get(&key));
        match plan_user(plan_event, &envelope.data, version, current, &ctx) {
            UserPlan::Stale => *outcome = Outcome::Stale,
            UserPlan::Apply(change) => {
                let deactivates = current.is_some_and(|c| c.active) && !change.active;
                if let Some(settings) = rules.brake.filter(|_| deactivates) {
                    let budget = match budgets.entry(key.0.clone()) {
                        std::collections::btree_map::Entry::Occupied(b) => b.into_mut(),
                        std::collections::btree_map::Entry::Vacant(v) => {
                            let now = std::time::Instant::now();
                            let c = match rules.brake_cache.get(&key.0, now) {
                                Some(c) => c,
                                None => {
                                    let c = brake::store::counts_unlocked(conn, &key.0, &settings)
                                        .await?;
                                    rules.brake_cache.put(&key.0, c, now);
                                    c
                                }
                            };
                            v.insert(OrgBudget::Unlocked {
                                budget: Budget::new(&settings, c.engaged, c.active, c.recent),
                                passed: 0,
                            })
                        }
                    };
                    if !budget.take()? {
                        held.push(held_event(item, &key, current));
                        *outcome = Outcome::Held;
                        continue;
                    }
                }
                if change.erase && !current.is_some_and(|c| c.erased) {
                    erased.push(key.clone());
                }
                audits.push(AuditRow {
                    event_id: envelope.id.as_str().to_owned(),
                    organization_id: key.0.clone(),
                    entity_type: "user",
                    entity_id: key.1.clone(),
                    action: change.action,
                    before: change.before.clone(),
                    after: change.after.clone(),
                });
                let state = change.applied_to(current);
                let cause = Cause {
                    organization_id: item.organization_id,
                    event_id: envelope.id.as_str(),
                    occurred_at: envelope.occurred_at,
                };
                changes.extend(user_changes(cause, &key.1, current, &state));
                let directory_id = data
                    .and_then(|u| u.directory_id.as_ref())
                    .map(|d| d.as_str().to_owned());
                let directory_id = match next.remove(&key) {
                    Some((_, earlier)) => directory_id.or(earlier),
                    None => directory_id,
                };
                next.insert(key, (state, directory_id));
                *outcome = Outcome::Applied;
            }
        }
    }
    let finals: Vec<FinalUser<'_>> = next
        .iter()
        .map(|(key, (state, dir))| FinalUser::new(key, state, dir.as_deref(), stored.get(key)))
        .collect();
    store::write_users(conn, &finals).await?;
    // Deactivations passed on an unlocked read are confirmed under the brake lock, taken last
    // (organizations in order) and held only until the commit that follows.
    if let Some(settings) = rules.brake {
        for (org, budget) in &budgets {
            if let OrgBudget::Unlocked { passed, .. } = budget
                && *passed > 0
            {
                let (ok, after) = brake::store::confirm(conn, org, &settings, *passed).await?;
                // What the next batch reads optimistically (this one commits right after).
                rules.brake_cache.put(org, after, std::time::Instant::now());
                if !ok {
                    return Err(ApplyError::BrakeContended);
                }
            }
        }
    }
    audit::write(conn, &audits).await?;
    super::erasure::scrub(conn, &erased).await?;
    if !held.is_empty() {
        tracing::warn!(
            held = held.len(),
            organization_id = %held[0].organization_id.escape_debug(),
            "deprovisioning brake engaged: deactivations held"
        );
        brake::store::hold(conn, &held).await?;
    }
    Ok((outcomes, changes))
}

/// An organization's brake budget within a batch: on an unlocked read while far from the
/// threshold (confirmed at the end), or under the organization's brake lock once near it.
enum OrgBudget {
    Unlocked { budget: Budget, passed: i64 },
    Locked(Budget),
}

impl OrgBudget {
    /// Whether one more deactivation may pass; `false` holds it (and every later one). An
    /// unlocked read without room sends the batch back ([`ApplyError::BrakeContended`]) to run
    /// under the brake lock from its start: only a locked read may hold.
    fn take(&mut self) -> Result<bool, ApplyError> {
        match self {
            Self::Unlocked { budget, passed } => {
                if budget.take_unlocked() {
                    *passed += 1;
                    Ok(true)
                } else {
                    Err(ApplyError::BrakeContended)
                }
            }
            Self::Locked(budget) => Ok(budget.take()),
        }
    }
}

/// Whether the event may deactivate its user (a deletion, or a user event that does not say
/// the user is active).
fn may_deactivate(item: &Item<'_>) -> bool {
    match &item.event.event {
        Event::UserDeleted(_) => true,
        Event::UserCreated(u) | Event::UserUpdated(u) => u.active != Some(true),
        _ => false,
    }
}

/// The stored form of a deactivation the brake holds.
fn held_event(item: &Item<'_>, key: &Key, current: Option<&StoredUser>) -> brake::store::HeldEvent {
    let envelope = &item.event.envelope;
    brake::store::HeldEvent {
        event_id: envelope.id.as_str().to_owned(),
        organization_id: key.0.clone(),
        event_type: envelope.event_type.as_str().to_owned(),
        directory_user_id: key.1.clone(),
        email: current.and_then(|c| c.profile.email.clone()),
        occurred_at: envelope.occurred_at,
        source: item.meta.source.as_str(),
        webhook_id: item.meta.webhook_id.clone(),
        body: serde_json::to_value(envelope).unwrap_or_default(),
    }
}
