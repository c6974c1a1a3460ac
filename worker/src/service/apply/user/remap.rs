//! What a role mapping changes for one stored user (`worker roles plan | apply`, and
//! [`crate::service::apply::Applier::remap_roles`]).

use super::plan::{RoleSet, RoleSource, StoredUser, diff_roles, mapped_roles};
use crate::service::role_mapping::RoleMapping;

/// A user whose mapped roles the mapping changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Remap {
    /// The user with the new roles.
    pub after: StoredUser,
    pub granted: Vec<String>,
    pub revoked: Vec<String>,
}

/// The user's roles under `mapping`: Scalekit's own roles kept, mapped roles recomputed from
/// the stored memberships. `None` when nothing changes, or the user is not active (an inactive
/// user keeps no roles).
pub fn remap(org: &str, stored: &StoredUser, mapping: &RoleMapping) -> Option<Remap> {
    if !stored.active {
        return None;
    }
    let mut desired: RoleSet = stored
        .roles
        .iter()
        .filter(|(_, s)| *s == RoleSource::Scalekit)
        .cloned()
        .collect();
    desired.extend(mapped_roles(org, mapping, &stored.memberships));
    let (added, removed) = diff_roles(&stored.roles, &desired);
    if added.is_empty() && removed.is_empty() {
        return None;
    }
    let names = |set: &RoleSet| -> Vec<String> {
        let mut v: Vec<String> = set.iter().map(|(r, _)| r.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    Some(Remap {
        granted: names(&added),
        revoked: names(&removed),
        after: StoredUser {
            roles: desired,
            ..stored.clone()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::apply::user::plan::{Memberships, Profile};
    use crate::service::apply::version::Version;
    use chrono::{TimeZone, Utc};

    fn user(active: bool, groups: &[&str], roles: &[(&str, RoleSource)]) -> StoredUser {
        StoredUser {
            version: Version::new(Utc.timestamp_opt(1, 0).unwrap(), "evt_1"),
            profile_version: None,
            active,
            deactivated_at: None,
            erased: false,
            provisioned: true,
            profile: Profile::default(),
            memberships: groups
                .iter()
                .map(|g| ((*g).to_owned(), Some((*g).to_owned())))
                .collect::<Memberships>(),
            roles: roles.iter().map(|(r, s)| ((*r).to_owned(), *s)).collect(),
        }
    }

    fn mapping(text: &str) -> RoleMapping {
        RoleMapping::parse(text, "test.toml").unwrap()
    }

    #[test]
    fn a_new_mapping_grants_and_revokes_mapped_roles_only() {
        let m = mapping("[default.by_group_name]\n\"Eng\" = \"developer\"\n");
        let u = user(
            true,
            &["Eng"],
            &[
                ("engineer", RoleSource::Mapping),
                ("member", RoleSource::Scalekit),
            ],
        );
        let r = remap("org_1", &u, &m).unwrap();
        assert_eq!(r.granted, ["developer"]);
        assert_eq!(r.revoked, ["engineer"]);
        assert!(
            r.after
                .roles
                .contains(&("member".to_owned(), RoleSource::Scalekit))
        );
        assert!(
            remap("org_1", &r.after, &m).is_none(),
            "applying twice changes nothing"
        );
    }

    #[test]
    fn inactive_users_and_unchanged_roles_are_left_alone() {
        let m = mapping("[default.by_group_name]\n\"Eng\" = \"developer\"\n");
        assert!(remap("org_1", &user(false, &["Eng"], &[]), &m).is_none());
        let same = user(true, &["Eng"], &[("developer", RoleSource::Mapping)]);
        assert!(remap("org_1", &same, &m).is_none());
    }

    #[test]
    fn an_organization_section_replaces_the_default() {
        let m = mapping(
            "[default.by_group_name]\n\"Eng\" = \"developer\"\n[organizations.org_2.by_group_name]\n\"Eng\" = \"admin\"\n",
        );
        let u = user(true, &["Eng"], &[]);
        assert_eq!(remap("org_1", &u, &m).unwrap().granted, ["developer"]);
        assert_eq!(remap("org_2", &u, &m).unwrap().granted, ["admin"]);
    }
}
