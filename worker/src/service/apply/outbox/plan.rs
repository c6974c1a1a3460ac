//! Pure decisions: which net changes one applied event made, from the state before and after it.
//! Nothing is planned when nothing an application can see changed.

use crate::service::apply::catalog::plan::{StoredDirectory, StoredGroup};
use crate::service::apply::user::plan::StoredUser;
use chrono::{DateTime, Utc};
use shared::changes::{ChangeKind, ChangePayload, DirectoryState, GroupState, UserState};
use std::collections::BTreeSet;

/// A change to be written to the outbox (`seq`, `id` and `committed_at` are the database's).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedChange {
    pub kind: ChangeKind,
    pub organization_id: String,
    pub cause_event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub payload: ChangePayload,
}

/// The event that caused the changes.
#[derive(Debug, Clone, Copy)]
pub struct Cause<'a> {
    pub organization_id: &'a str,
    pub event_id: &'a str,
    pub occurred_at: DateTime<Utc>,
}

impl Cause<'_> {
    fn change(&self, kind: ChangeKind, payload: ChangePayload) -> PlannedChange {
        PlannedChange {
            kind,
            organization_id: self.organization_id.to_owned(),
            cause_event_id: self.event_id.to_owned(),
            occurred_at: self.occurred_at,
            payload,
        }
    }
}

fn role_names(user: Option<&StoredUser>) -> BTreeSet<String> {
    user.map(|u| u.roles.iter().map(|(r, _)| r.clone()).collect())
        .unwrap_or_default()
}

fn group_ids(user: Option<&StoredUser>) -> BTreeSet<String> {
    user.map(|u| u.memberships.keys().cloned().collect())
        .unwrap_or_default()
}

/// The user as the feed shows it.
pub fn user_state(directory_user_id: &str, user: &StoredUser) -> UserState {
    UserState {
        directory_user_id: directory_user_id.to_owned(),
        email: user.profile.email.clone(),
        given_name: user.profile.given_name.clone(),
        family_name: user.profile.family_name.clone(),
        display_name: user.profile.display_name.clone(),
        external_id: external_id(user),
        active: user.active,
        roles: role_names(Some(user)).into_iter().collect(),
        groups: group_ids(Some(user)).into_iter().collect(),
    }
}

/// The identity provider's id of the user (`dp_id` of its last event's data).
fn external_id(user: &StoredUser) -> Option<String> {
    user.profile
        .attributes
        .get("dp_id")
        .and_then(serde_json::Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

fn profile_differs(before: &StoredUser, after: &StoredUser) -> bool {
    let (b, a) = (&before.profile, &after.profile);
    external_id(before) != external_id(after)
        || b.email != a.email
        || b.given_name != a.given_name
        || b.family_name != a.family_name
        || b.display_name != a.display_name
        || b.preferred_username != a.preferred_username
}

/// Whether `after` is news about a user the application would be told: it appears, or its
/// lifecycle (active, erased), profile or groups differ from `before`. The one decision of "did
/// this user change": [`user_changes`] plans changes by the same parts, and a sync reports
/// with it (`crate::service::sync::snapshot::classify`). Roles are decided by the mapping, not
/// by the directory, and are not part of it.
pub fn user_differs(before: Option<&StoredUser>, after: &StoredUser) -> bool {
    match before {
        None => true,
        Some(b) => {
            b.active != after.active
                || b.erased != after.erased
                || profile_differs(b, after)
                || group_ids(before) != group_ids(Some(after))
        }
    }
}

/// The changes of one user event: at most one lifecycle or profile change, then the roles and
/// groups that changed. Every change carries the user's full state after the event.
pub fn user_changes(
    cause: Cause<'_>,
    directory_user_id: &str,
    before: Option<&StoredUser>,
    after: &StoredUser,
) -> Vec<PlannedChange> {
    let was_active = before.is_some_and(|b| b.active);
    let was_provisioned = before.is_some_and(|b| b.provisioned);
    let lifecycle = if after.erased && !before.is_some_and(|b| b.erased) {
        // Erasing a user the application never saw tells it nothing.
        was_provisioned.then_some(ChangeKind::UserErased)
    } else if was_active && !after.active {
        Some(ChangeKind::UserDeprovisioned)
    } else if !was_active && after.active {
        Some(if was_provisioned {
            ChangeKind::UserReactivated
        } else {
            ChangeKind::UserProvisioned
        })
    } else {
        None
    };
    let mut kinds = Vec::new();
    match (lifecycle, before) {
        (Some(kind), _) => kinds.push(kind),
        // A profile change of a user the application knows (active, or deactivated since).
        (None, Some(b)) if b.provisioned && !after.erased && profile_differs(b, after) => {
            kinds.push(ChangeKind::UserUpdated)
        }
        (None, _) => {}
    }
    let user = user_state(directory_user_id, after);
    let mut out: Vec<PlannedChange> = kinds
        .into_iter()
        .map(|k| {
            cause.change(
                k,
                ChangePayload {
                    user: Some(user.clone()),
                    ..ChangePayload::default()
                },
            )
        })
        .collect();
    let (roles_before, roles_after) = (role_names(before), role_names(Some(after)));
    if roles_before != roles_after {
        out.push(cause.change(
            ChangeKind::UserRolesChanged,
            ChangePayload {
                user: Some(user.clone()),
                granted: Some(roles_after.difference(&roles_before).cloned().collect()),
                revoked: Some(roles_before.difference(&roles_after).cloned().collect()),
                ..ChangePayload::default()
            },
        ));
    }
    let (groups_before, groups_after) = (group_ids(before), group_ids(Some(after)));
    if groups_before != groups_after {
        out.push(cause.change(
            ChangeKind::UserGroupsChanged,
            ChangePayload {
                user: Some(user),
                joined: Some(groups_after.difference(&groups_before).cloned().collect()),
                left: Some(groups_before.difference(&groups_after).cloned().collect()),
                ..ChangePayload::default()
            },
        ));
    }
    out
}

/// The change of one group event: created (or restored), renamed, or deleted.
pub fn group_change(
    cause: Cause<'_>,
    directory_group_id: &str,
    before: Option<&StoredGroup>,
    display_name: Option<&str>,
    deleted: bool,
) -> Option<PlannedChange> {
    let existed = before.is_some_and(|b| b.deleted_at.is_none());
    let kind = match (existed, deleted) {
        (false, false) => ChangeKind::GroupCreated,
        (true, true) => ChangeKind::GroupDeleted,
        (true, false) if before.and_then(|b| b.display_name.as_deref()) != display_name => {
            ChangeKind::GroupUpdated
        }
        // Unchanged, or the deletion of a group the application never saw.
        _ => return None,
    };
    Some(cause.change(
        kind,
        ChangePayload {
            group: Some(GroupState {
                directory_group_id: directory_group_id.to_owned(),
                display_name: display_name.map(str::to_owned),
                deleted,
            }),
            ..ChangePayload::default()
        },
    ))
}

/// The change of one directory event, when its state changes.
pub fn directory_change(
    cause: Cause<'_>,
    before: Option<&StoredDirectory>,
    after: DirectoryState,
) -> Option<PlannedChange> {
    let kind = match (before.map(|b| b.enabled), after.enabled) {
        (None | Some(false), true) => ChangeKind::DirectoryEnabled,
        (Some(true), false) => ChangeKind::DirectoryDisabled,
        _ => return None,
    };
    Some(cause.change(
        kind,
        ChangePayload {
            directory: Some(after),
            ..ChangePayload::default()
        },
    ))
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
