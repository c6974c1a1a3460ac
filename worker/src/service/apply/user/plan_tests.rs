//! The user planner without a database: every user event kind, each ordering rule, role mapping.

use super::plan::*;
use crate::service::apply::version::Version;
use crate::service::role_mapping::RoleMapping;
use chrono::{TimeZone, Utc};
use serde_json::json;
use shared::{GroupRef, RoleRef, UserData, UserDeletedData};
use std::collections::BTreeSet;

fn v(secs: i64) -> Version {
    Version::new(
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap(),
        format!("evt_{secs}"),
    )
}

fn user(active: Option<bool>, groups: &[(&str, &str)], roles: &[&str]) -> UserData {
    UserData {
        id: shared::DirectoryUserId::new("diruser_1"),
        organization_id: shared::OrganizationId::new("org_1"),
        active,
        email: Some("a@example.com".into()),
        given_name: Some("Ada".into()),
        family_name: Some("Lovelace".into()),
        groups: Some(
            groups
                .iter()
                .map(|(id, name)| GroupRef {
                    id: shared::DirectoryGroupId::new(*id),
                    name: Some((*name).into()),
                })
                .collect(),
        ),
        roles: Some(
            roles
                .iter()
                .map(|r| RoleRef {
                    role_name: (*r).into(),
                })
                .collect(),
        ),
        ..UserData::default()
    }
}

fn deleted() -> UserDeletedData {
    UserDeletedData {
        id: shared::DirectoryUserId::new("diruser_1"),
        organization_id: shared::OrganizationId::new("org_1"),
        dp_id: None,
        email: Some("a@example.com".into()),
    }
}

fn mapping() -> RoleMapping {
    RoleMapping::parse(
        "[default.by_group_name]\n\"eng\" = \"developer\"\n[default.by_group_id]\n\"dirgroup_admins\" = \"admin\"\n",
        "test",
    )
    .unwrap()
}

fn ctx<'a>(
    m: &'a RoleMapping,
    deleted_groups: &'a BTreeSet<String>,
    hard_delete: bool,
) -> PlanContext<'a> {
    PlanContext {
        organization_id: "org_1",
        mapping: m,
        hard_delete,
        deleted_groups,
    }
}

fn apply(plan: UserPlan) -> UserChange {
    match plan {
        UserPlan::Apply(c) => *c,
        UserPlan::Stale => panic!("expected a change"),
    }
}

fn stored(c: &UserChange) -> StoredUser {
    StoredUser {
        provisioned: c.active,
        version: c.version.clone(),
        profile_version: c.profile_version.clone(),
        active: c.active,
        deactivated_at: c.deactivated_at,
        erased: c.erase,
        profile: c.profile.clone(),
        memberships: c.memberships.clone(),
        roles: c.roles_added.clone(),
    }
}

fn roles(set: &RoleSet) -> Vec<(&str, &str)> {
    set.iter().map(|(r, s)| (r.as_str(), s.as_str())).collect()
}

#[test]
fn created_user_gets_scalekit_and_mapped_roles_by_name_and_id() {
    let m = mapping();
    let none = BTreeSet::new();
    let data = user(
        None,
        &[("dirgroup_eng", "Eng"), ("dirgroup_admins", "Admins")],
        &["member"],
    );
    let c = apply(plan_user(
        UserEvent::Upsert(&data),
        &json!({}),
        v(1),
        None,
        &ctx(&m, &none, false),
    ));
    assert_eq!(c.action, "created");
    assert!(c.active, "absent `active` means active");
    assert_eq!(c.profile.display_name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(c.memberships.len(), 2);
    assert_eq!(
        roles(&c.roles_added),
        [
            ("admin", "mapping"),
            ("developer", "mapping"),
            ("member", "scalekit")
        ]
    );
    assert!(c.roles_removed.is_empty());
}

#[test]
fn update_diffs_roles_and_memberships() {
    let m = mapping();
    let none = BTreeSet::new();
    let first = user(
        Some(true),
        &[("dirgroup_eng", "Eng"), ("dirgroup_admins", "Admins")],
        &["member"],
    );
    let c1 = apply(plan_user(
        UserEvent::Upsert(&first),
        &json!({}),
        v(1),
        None,
        &ctx(&m, &none, false),
    ));
    let s1 = stored(&c1);
    let second = user(
        Some(true),
        &[("dirgroup_eng", "Eng")],
        &["member", "billing"],
    );
    let c2 = apply(plan_user(
        UserEvent::Upsert(&second),
        &json!({}),
        v(2),
        Some(&s1),
        &ctx(&m, &none, false),
    ));
    assert_eq!(c2.action, "updated");
    assert_eq!(c2.memberships_removed, ["dirgroup_admins"]);
    assert!(c2.memberships_added.is_empty());
    assert_eq!(roles(&c2.roles_added), [("billing", "scalekit")]);
    assert_eq!(roles(&c2.roles_removed), [("admin", "mapping")]);
}

#[test]
fn older_events_are_stale() {
    let m = mapping();
    let none = BTreeSet::new();
    let data = user(Some(true), &[], &[]);
    let c = apply(plan_user(
        UserEvent::Upsert(&data),
        &json!({}),
        v(5),
        None,
        &ctx(&m, &none, false),
    ));
    let s = stored(&c);
    assert_eq!(
        plan_user(
            UserEvent::Upsert(&data),
            &json!({}),
            v(4),
            Some(&s),
            &ctx(&m, &none, false)
        ),
        UserPlan::Stale
    );
    assert_eq!(
        plan_user(
            UserEvent::Upsert(&data),
            &json!({}),
            v(5),
            Some(&s),
            &ctx(&m, &none, false)
        ),
        UserPlan::Stale
    );
    assert_eq!(
        plan_user(
            UserEvent::Delete(&deleted()),
            &json!({}),
            v(3),
            Some(&s),
            &ctx(&m, &none, false)
        ),
        UserPlan::Stale
    );
}

#[test]
fn delete_deactivates_and_an_older_create_cannot_resurrect() {
    let m = mapping();
    let none = BTreeSet::new();
    let data = user(Some(true), &[("dirgroup_eng", "Eng")], &["member"]);
    let s1 = stored(&apply(plan_user(
        UserEvent::Upsert(&data),
        &json!({}),
        v(1),
        None,
        &ctx(&m, &none, false),
    )));
    let del = apply(plan_user(
        UserEvent::Delete(&deleted()),
        &json!({}),
        v(3),
        Some(&s1),
        &ctx(&m, &none, false),
    ));
    assert_eq!(del.action, "deactivated");
    assert!(!del.active);
    assert_eq!(del.deactivated_at, Some(v(3).at));
    assert!(del.memberships.is_empty());
    assert_eq!(del.roles_removed.len(), 2);
    let mut s2 = stored(&del);
    s2.roles = RoleSet::new();
    // Older than the delete, newer than the profile: profile only, still inactive.
    let late = user(Some(true), &[("dirgroup_eng", "Eng")], &["member"]);
    let c = apply(plan_user(
        UserEvent::Upsert(&late),
        &json!({}),
        v(2),
        Some(&s2),
        &ctx(&m, &none, false),
    ));
    assert!(!c.active);
    assert!(c.roles_added.is_empty() && c.memberships.is_empty());
    assert_eq!(c.version, v(3), "lifecycle version unchanged");
    // Newer: re-activates with its groups and roles.
    let c = apply(plan_user(
        UserEvent::Upsert(&late),
        &json!({}),
        v(4),
        Some(&s2),
        &ctx(&m, &none, false),
    ));
    assert_eq!(c.action, "reactivated");
    assert!(c.active && c.deactivated_at.is_none());
    assert_eq!(
        roles(&c.roles_added),
        [("developer", "mapping"), ("member", "scalekit")]
    );
}

#[test]
fn active_false_deactivates() {
    let m = mapping();
    let none = BTreeSet::new();
    let on = user(Some(true), &[("dirgroup_eng", "Eng")], &["member"]);
    let s = stored(&apply(plan_user(
        UserEvent::Upsert(&on),
        &json!({}),
        v(1),
        None,
        &ctx(&m, &none, false),
    )));
    let off = user(Some(false), &[("dirgroup_eng", "Eng")], &["member"]);
    let c = apply(plan_user(
        UserEvent::Upsert(&off),
        &json!({}),
        v(2),
        Some(&s),
        &ctx(&m, &none, false),
    ));
    assert_eq!(c.action, "deactivated");
    assert!(!c.active && c.memberships.is_empty() && c.roles_removed.len() == 2);
}

#[test]
fn hard_delete_erases() {
    let m = mapping();
    let none = BTreeSet::new();
    let data = user(Some(true), &[], &[]);
    let s = stored(&apply(plan_user(
        UserEvent::Upsert(&data),
        &json!({"x": 1}),
        v(1),
        None,
        &ctx(&m, &none, true),
    )));
    let c = apply(plan_user(
        UserEvent::Delete(&deleted()),
        &json!({}),
        v(2),
        Some(&s),
        &ctx(&m, &none, true),
    ));
    assert_eq!(c.action, "erased");
    assert!(c.erase && c.profile.email.is_none() && *c.profile.attributes == json!({}));
    // Its audit summaries keep the lifecycle, not the person.
    let before = c.before.clone().unwrap();
    assert!(s.profile.email.is_some(), "the stored user had an email");
    for summary in [&before, &c.after] {
        for field in PERSONAL_FIELDS {
            assert!(summary.get(field).is_none(), "{field} in {summary}");
        }
    }
    assert_eq!(
        (before["active"].clone(), c.after["active"].clone()),
        (json!(true), json!(false))
    );
    // An older update cannot refill an erased user.
    let s2 = stored(&c);
    assert_eq!(
        plan_user(
            UserEvent::Upsert(&data),
            &json!({}),
            v(1),
            Some(&s2),
            &ctx(&m, &none, true)
        ),
        UserPlan::Stale
    );
}

#[test]
fn memberships_to_deleted_groups_are_dropped() {
    let m = mapping();
    let gone: BTreeSet<String> = ["dirgroup_eng".to_owned()].into();
    let data = user(
        Some(true),
        &[("dirgroup_eng", "Eng"), ("dirgroup_x", "X")],
        &[],
    );
    let c = apply(plan_user(
        UserEvent::Upsert(&data),
        &json!({}),
        v(1),
        None,
        &ctx(&m, &gone, false),
    ));
    assert_eq!(c.memberships.keys().collect::<Vec<_>>(), ["dirgroup_x"]);
    assert!(
        c.roles_added.is_empty(),
        "no role mapped from a deleted group"
    );
}
