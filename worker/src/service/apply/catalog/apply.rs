//! The catalogue step of a transaction: one group or directory event, with soft deletion. A
//! group deletion also takes the group out of its members' memberships and mapped roles.

use super::plan::{DirectoryPlan, GroupPlan, plan_directory, plan_group};
use super::store;
use crate::service::apply::audit::{self, AuditRow};
use crate::service::apply::locks::{self, LockSet};
use crate::service::apply::outbox::plan::{
    Cause, PlannedChange, directory_change, group_change, user_changes,
};
use crate::service::apply::user::plan::{RoleSet, RoleSource, diff_roles, mapped_roles};
use crate::service::apply::user::store::{self as user_store, FinalUser, Key};
use crate::service::apply::version::Version;
use crate::service::apply::{Item, Outcome, Rules};
use diesel_async::AsyncPgConnection;
use serde_json::json;
use shared::Event;
use shared::changes::DirectoryState;

/// The entity the event writes, locked exclusively (nothing for an unknown event).
pub fn locks(item: &Item<'_>) -> LockSet {
    let org = item.organization_id;
    let keys = match &item.event.event {
        Event::GroupCreated(g) | Event::GroupUpdated(g) => {
            vec![locks::group_key(org, g.id.as_str())]
        }
        // A deletion rewrites every member: it excludes the organization's user transactions
        // with one lock (they hold it shared) instead of one lock per member.
        Event::GroupDeleted(g) => vec![
            locks::org_users_key(org),
            locks::group_key(org, g.id.as_str()),
        ],
        Event::DirectoryEnabled(d) | Event::DirectoryDisabled(d) => {
            vec![locks::directory_key(org, d.id.as_str())]
        }
        _ => Vec::new(),
    };
    LockSet {
        shared: Default::default(),
        exclusive: keys.into_iter().collect(),
    }
}

/// Applies one new catalogue event (claimed, its lock held): its outcome and the net changes it
/// made. The one exhaustive `match` over event kinds that are not user events: a new variant
/// does not compile until handled here.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    item: &Item<'_>,
    rules: &Rules<'_>,
) -> diesel::QueryResult<(Outcome, Vec<PlannedChange>)> {
    let envelope = &item.event.envelope;
    let version = Version::new(envelope.occurred_at, envelope.id.as_str());
    let org = item.organization_id;
    let cause = Cause {
        organization_id: org,
        event_id: envelope.id.as_str(),
        occurred_at: envelope.occurred_at,
    };
    let mut changes = Vec::new();
    let audits = match &item.event.event {
        Event::GroupCreated(g) | Event::GroupUpdated(g) | Event::GroupDeleted(g) => {
            let deleted = matches!(item.event.event, Event::GroupDeleted(_));
            let group = g.id.as_str();
            let current = store::load_group(conn, org, group).await?;
            let GroupPlan::Apply(change) =
                plan_group(g, &envelope.data, deleted, version, current.as_ref())
            else {
                return Ok((Outcome::Stale, changes));
            };
            store::write_group(conn, org, group, &change).await?;
            changes.extend(group_change(
                cause,
                group,
                current.as_ref(),
                change.display_name.as_deref(),
                deleted,
            ));
            let mut audits = vec![AuditRow {
                event_id: envelope.id.as_str().to_owned(),
                organization_id: org.to_owned(),
                entity_type: "group",
                entity_id: group.to_owned(),
                action: change.action,
                before: change.before.clone(),
                after: change.after.clone(),
            }];
            if change.removes_memberships {
                audits.extend(remove_group(conn, item, group, rules, &mut changes).await?);
            }
            audits
        }
        Event::DirectoryEnabled(d) | Event::DirectoryDisabled(d) => {
            let enabled = matches!(item.event.event, Event::DirectoryEnabled(_));
            let dir = d.id.as_str();
            let current = store::load_directory(conn, org, dir).await?;
            let DirectoryPlan::Apply(change) =
                plan_directory(d, enabled, version, current.as_ref())
            else {
                return Ok((Outcome::Stale, changes));
            };
            store::write_directory(conn, org, dir, &change).await?;
            changes.extend(directory_change(
                cause,
                current.as_ref(),
                DirectoryState {
                    id: dir.to_owned(),
                    enabled,
                    provider: change.provider.clone(),
                    directory_type: change.directory_type.clone(),
                },
            ));
            vec![AuditRow {
                event_id: envelope.id.as_str().to_owned(),
                organization_id: org.to_owned(),
                entity_type: "directory",
                entity_id: dir.to_owned(),
                action: change.action,
                before: change.before.clone(),
                after: change.after.clone(),
            }]
        }
        Event::UserCreated(_) | Event::UserUpdated(_) | Event::UserDeleted(_) => {
            // Not a catalogue event: `Applier` sends user events to `user::apply`.
            return Ok((Outcome::Ignored, changes));
        }
        Event::Unknown { .. } => return Ok((Outcome::Ignored, changes)),
    };
    audit::write(conn, &audits).await?;
    Ok((Outcome::Applied, changes))
}

/// Deleting a group never leaves a membership, or a role mapped from it, behind: each member
/// (all of them excluded from other transactions by the organization's users key) loses the
/// membership and has its mapped roles recomputed. One audit row per member.
async fn remove_group(
    conn: &mut AsyncPgConnection,
    item: &Item<'_>,
    group: &str,
    rules: &Rules<'_>,
    changes: &mut Vec<PlannedChange>,
) -> diesel::QueryResult<Vec<AuditRow>> {
    let org = item.organization_id;
    let members: Vec<Key> = store::group_members(conn, org, group)
        .await?
        .into_iter()
        .map(|user| (org.to_owned(), user))
        .collect();
    if members.is_empty() {
        return Ok(Vec::new());
    }
    // No member locks: the organization's users key, held exclusive since the transaction
    // began (`locks`), keeps every user transaction of the organization out.
    let stored = user_store::load_users(conn, &members).await?;
    let mut next = Vec::with_capacity(stored.len());
    let mut audits = Vec::with_capacity(stored.len());
    for (key, user) in &stored {
        let mut state = user.clone();
        state.memberships.remove(group);
        let mut roles: RoleSet = user
            .roles
            .iter()
            .filter(|(_, s)| *s == RoleSource::Scalekit)
            .cloned()
            .collect();
        roles.extend(mapped_roles(org, rules.mapping, &state.memberships));
        let (_, removed) = diff_roles(&user.roles, &roles);
        state.roles = roles;
        audits.push(AuditRow {
            event_id: item.event.envelope.id.as_str().to_owned(),
            organization_id: org.to_owned(),
            entity_type: "user",
            entity_id: key.1.clone(),
            action: "group_removed",
            before: None,
            after: json!({
                "group": group,
                "roles_removed": removed.iter().map(|(r, _)| r).collect::<Vec<_>>(),
            }),
        });
        let cause = Cause {
            organization_id: org,
            event_id: item.event.envelope.id.as_str(),
            occurred_at: item.event.envelope.occurred_at,
        };
        changes.extend(user_changes(cause, &key.1, Some(user), &state));
        next.push((key, state));
    }
    let finals: Vec<FinalUser<'_>> = next
        .iter()
        .map(|(key, state)| FinalUser::new(key, state, None, stored.get(*key)))
        .collect();
    user_store::rewrite_sets(conn, &finals).await?;
    Ok(audits)
}
