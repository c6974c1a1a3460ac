//! Pure decisions for user events: given the stored user (if any) and an event, what the row,
//! memberships and roles must become, and the differences to write.

use crate::service::apply::version::Version;
use crate::service::role_mapping::RoleMapping;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared::{UserData, UserDeletedData};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Where a role came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RoleSource {
    Scalekit,
    Mapping,
}

impl RoleSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleSource::Scalekit => "scalekit",
            RoleSource::Mapping => "mapping",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scalekit" => Some(RoleSource::Scalekit),
            "mapping" => Some(RoleSource::Mapping),
            _ => None,
        }
    }
}

pub type RoleSet = BTreeSet<(String, RoleSource)>;
/// group id → group name as last seen on a user event.
pub type Memberships = BTreeMap<String, Option<String>>;

/// The profile columns of `directory_users`. `attributes` (the event's whole `data`, about
/// 1 KiB) is shared, not copied, by the states and plans that carry the profile.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub preferred_username: Option<String>,
    pub attributes: Arc<Value>,
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUser {
    /// Lifecycle version: the newest event of any kind applied.
    pub version: Version,
    /// Profile version: the newest `user_created`/`user_updated` applied.
    pub profile_version: Option<Version>,
    pub active: bool,
    pub deactivated_at: Option<DateTime<Utc>>,
    pub erased: bool,
    /// Whether the user was ever active (decides `user.provisioned` vs `user.reactivated`).
    pub provisioned: bool,
    pub profile: Profile,
    pub memberships: Memberships,
    pub roles: RoleSet,
}

/// What the user must become.
#[derive(Debug, Clone, PartialEq)]
pub struct UserChange {
    pub action: &'static str,
    /// The new lifecycle version (unchanged for a profile-only change).
    pub version: Version,
    pub profile_version: Option<Version>,
    pub active: bool,
    pub deactivated_at: Option<DateTime<Utc>>,
    /// Personal data removed (`HARD_DELETE=true`): an id-only tombstone stays.
    pub erase: bool,
    pub profile: Profile,
    pub memberships: Memberships,
    pub memberships_added: Memberships,
    pub memberships_removed: Vec<String>,
    pub roles_added: RoleSet,
    pub roles_removed: RoleSet,
    pub before: Option<Value>,
    pub after: Value,
}

impl UserChange {
    /// The stored user this change leaves behind.
    pub fn applied_to(&self, current: Option<&StoredUser>) -> StoredUser {
        let mut roles: RoleSet = current.map(|s| s.roles.clone()).unwrap_or_default();
        for r in &self.roles_removed {
            roles.remove(r);
        }
        roles.extend(self.roles_added.iter().cloned());
        StoredUser {
            version: self.version.clone(),
            profile_version: self.profile_version.clone(),
            active: self.active,
            deactivated_at: self.deactivated_at,
            erased: self.erase,
            provisioned: current.is_some_and(|c| c.provisioned) || self.active,
            profile: self.profile.clone(),
            memberships: self.memberships.clone(),
            roles,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum UserPlan {
    /// Older than what is stored: nothing changes.
    Stale,
    Apply(Box<UserChange>),
}

/// An incoming user event.
pub enum UserEvent<'a> {
    Upsert(&'a UserData),
    Delete(&'a UserDeletedData),
}

/// Settings that shape the plan.
pub struct PlanContext<'a> {
    pub organization_id: &'a str,
    pub mapping: &'a RoleMapping,
    pub hard_delete: bool,
    /// Groups of the event that are known to be deleted (memberships to them are dropped).
    pub deleted_groups: &'a BTreeSet<String>,
}

fn profile_from(data: &UserData, raw_data: &Value) -> Profile {
    let display_name = data
        .name
        .clone()
        .or_else(|| match (&data.given_name, &data.family_name) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            (Some(n), None) | (None, Some(n)) => Some(n.clone()),
            (None, None) => None,
        });
    Profile {
        email: data.email.clone(),
        given_name: data.given_name.clone(),
        family_name: data.family_name.clone(),
        display_name,
        preferred_username: data.preferred_username.clone(),
        attributes: Arc::new(raw_data.clone()),
    }
}

/// The mapped roles for `memberships`.
pub fn mapped_roles(ctx_org: &str, mapping: &RoleMapping, memberships: &Memberships) -> RoleSet {
    mapping
        .roles_for(
            ctx_org,
            memberships
                .iter()
                .map(|(id, name)| (id.as_str(), name.as_deref())),
        )
        .into_iter()
        .map(|r| (r, RoleSource::Mapping))
        .collect()
}

/// Set differences: (added, removed).
pub fn diff_roles(current: &RoleSet, desired: &RoleSet) -> (RoleSet, RoleSet) {
    (
        desired.difference(current).cloned().collect(),
        current.difference(desired).cloned().collect(),
    )
}

fn summary(active: bool, profile: &Profile, memberships: &Memberships, roles: &RoleSet) -> Value {
    json!({
        "active": active,
        "email": profile.email,
        "given_name": profile.given_name,
        "family_name": profile.family_name,
        "display_name": profile.display_name,
        "preferred_username": profile.preferred_username,
        "groups": memberships.keys().collect::<Vec<_>>(),
        "roles": roles.iter().map(|(r, s)| format!("{r} ({})", s.as_str())).collect::<Vec<_>>(),
    })
}

/// Plans a user event. `raw_data` is the event's `data` object (kept as attributes).
///
/// Two versions keep the result independent of arrival order: the lifecycle version (any event)
/// decides whether the user is active; the profile version (created/updated only) decides the
/// profile, so an older update arriving after a delete still corrects the profile of the
/// deactivated user, without bringing it back. An erased user's profile is never refilled by
/// an older event.
/// The personal fields of a summary: removed from every audit row of an erased user.
pub const PERSONAL_FIELDS: [&str; 5] = [
    "email",
    "given_name",
    "family_name",
    "display_name",
    "preferred_username",
];

/// A summary without its personal fields.
fn redacted(mut summary: Value) -> Value {
    if let Some(fields) = summary.as_object_mut() {
        for f in PERSONAL_FIELDS {
            fields.remove(f);
        }
    }
    summary
}

pub fn plan_user(
    event: UserEvent<'_>,
    raw_data: &Value,
    version: Version,
    current: Option<&StoredUser>,
    ctx: &PlanContext<'_>,
) -> UserPlan {
    let lifecycle_newer = version.supersedes(current.map(|c| &c.version));
    let upsert = match event {
        UserEvent::Upsert(data) => Some(data),
        UserEvent::Delete(_) => None,
    };
    let profile_newer =
        upsert.is_some() && version.supersedes(current.and_then(|c| c.profile_version.as_ref()));
    let profile_only = profile_newer && current.is_some_and(|c| !c.erased);
    if !(lifecycle_newer || profile_only) {
        return UserPlan::Stale;
    }
    let current_roles = current.map(|c| c.roles.clone()).unwrap_or_default();
    let current_memberships = current.map(|c| c.memberships.clone()).unwrap_or_default();

    let (active, erase, profile, profile_version, memberships, scalekit_roles) =
        match (event, current) {
            // Older than the stored delete, newer than the stored profile: profile only.
            (UserEvent::Upsert(data), Some(c)) if !lifecycle_newer => (
                c.active,
                false,
                profile_from(data, raw_data),
                Some(version.clone()),
                c.memberships.clone(),
                BTreeSet::new(),
            ),
            (UserEvent::Upsert(data), _) => {
                let memberships: Memberships = match &data.groups {
                    Some(groups) => groups
                        .iter()
                        .filter(|g| !ctx.deleted_groups.contains(g.id.as_str()))
                        .map(|g| (g.id.as_str().to_owned(), g.name.clone()))
                        .collect(),
                    // The event does not say: keep what we have.
                    None => current_memberships.clone(),
                };
                let scalekit: BTreeSet<String> = match &data.roles {
                    Some(roles) => roles.iter().map(|r| r.role_name.clone()).collect(),
                    None => current_roles
                        .iter()
                        .filter(|(_, s)| *s == RoleSource::Scalekit)
                        .map(|(r, _)| r.clone())
                        .collect(),
                };
                (
                    data.active.unwrap_or(true),
                    false,
                    profile_from(data, raw_data),
                    Some(version.clone()),
                    memberships,
                    scalekit,
                )
            }
            (UserEvent::Delete(data), _) => {
                let mut profile = current.map(|c| c.profile.clone()).unwrap_or_default();
                if profile.email.is_none() {
                    profile.email = data.email.clone();
                }
                (
                    false,
                    ctx.hard_delete || current.is_some_and(|c| c.erased),
                    profile,
                    current.and_then(|c| c.profile_version.clone()),
                    Memberships::new(),
                    BTreeSet::new(),
                )
            }
        };

    // A deactivated user keeps no groups and no roles (least privilege); an erased one keeps
    // no personal data either.
    let (profile, memberships, desired_roles) = if active {
        let mut roles: RoleSet = scalekit_roles
            .into_iter()
            .map(|r| (r, RoleSource::Scalekit))
            .collect();
        roles.extend(mapped_roles(ctx.organization_id, ctx.mapping, &memberships));
        (profile, memberships, roles)
    } else if erase {
        (
            Profile {
                attributes: Arc::new(json!({})),
                ..Profile::default()
            },
            Memberships::new(),
            RoleSet::new(),
        )
    } else {
        (profile, Memberships::new(), RoleSet::new())
    };

    // The time of the newest deactivating event: a function of the set of events applied, not
    // of their arrival order (a profile-only change keeps it).
    let deactivated_at = match current {
        _ if active => None,
        Some(c) if !lifecycle_newer => c.deactivated_at,
        _ => Some(version.at),
    };
    let action = match (current, active) {
        (_, false) if erase => "erased",
        (None, true) => "created",
        (Some(c), true) if !c.active => "reactivated",
        (Some(_), true) => "updated",
        (Some(c), false) if !c.active => "updated",
        (_, false) => "deactivated",
    };
    let memberships_added: Memberships = memberships
        .iter()
        .filter(|(id, name)| current_memberships.get(*id) != Some(*name))
        .map(|(id, name)| (id.clone(), name.clone()))
        .collect();
    let memberships_removed: Vec<String> = current_memberships
        .keys()
        .filter(|id| !memberships.contains_key(*id))
        .cloned()
        .collect();
    let (roles_added, roles_removed) = diff_roles(&current_roles, &desired_roles);
    let before = current.map(|c| summary(c.active, &c.profile, &c.memberships, &c.roles));
    let after = summary(active, &profile, &memberships, &desired_roles);
    // An erasure's own audit row keeps ids, times and the kind of change, not the person.
    let (before, after) = if erase {
        (before.map(redacted), redacted(after))
    } else {
        (before, after)
    };
    let lifecycle_version = match current {
        Some(c) if !lifecycle_newer => c.version.clone(),
        _ => version,
    };
    UserPlan::Apply(Box::new(UserChange {
        action,
        version: lifecycle_version,
        profile_version,
        active,
        deactivated_at,
        erase,
        profile,
        memberships,
        memberships_added,
        memberships_removed,
        roles_added,
        roles_removed,
        before,
        after,
    }))
}
