//! The change planner without a database: every kind, and the cases that change nothing.

use super::*;
use crate::service::apply::user::plan::{Profile, RoleSource};
use crate::service::apply::version::Version;
use chrono::TimeZone;
use serde_json::json;

fn cause() -> Cause<'static> {
    Cause {
        organization_id: "org_1",
        event_id: "evt_1",
        occurred_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
    }
}

fn user(active: bool, email: &str, roles: &[&str], groups: &[&str]) -> StoredUser {
    StoredUser {
        version: Version::new(Utc.timestamp_opt(1_700_000_000, 0).unwrap(), "evt_0"),
        profile_version: None,
        active,
        deactivated_at: None,
        erased: false,
        provisioned: active,
        profile: Profile {
            email: Some(email.into()),
            attributes: json!({}).into(),
            ..Profile::default()
        },
        memberships: groups.iter().map(|g| ((*g).to_owned(), None)).collect(),
        roles: roles
            .iter()
            .map(|r| ((*r).to_owned(), RoleSource::Scalekit))
            .collect(),
    }
}

fn kinds(changes: &[PlannedChange]) -> Vec<&'static str> {
    changes.iter().map(|c| c.kind.as_str()).collect()
}

#[test]
fn a_new_active_user_is_provisioned_with_its_roles_and_groups() {
    let after = user(true, "a@x", &["member", "admin"], &["g1"]);
    let out = user_changes(cause(), "u1", None, &after);
    assert_eq!(
        kinds(&out),
        [
            "user.provisioned",
            "user.roles_changed",
            "user.groups_changed"
        ]
    );
    let snapshot = out[0].payload.user.as_ref().unwrap();
    assert_eq!(snapshot.roles, ["admin", "member"], "sorted");
    assert_eq!(snapshot.groups, ["g1"]);
    assert!(snapshot.active);
    assert_eq!(
        out[1].payload.granted.as_deref(),
        Some(&["admin".to_owned(), "member".to_owned()][..])
    );
    assert_eq!(out[1].payload.revoked.as_deref(), Some(&[][..]));
    assert_eq!(
        out[2].payload.joined.as_deref(),
        Some(&["g1".to_owned()][..])
    );
    assert!(out.iter().all(|c| c.cause_event_id == "evt_1"));
}

#[test]
fn deactivation_deprovisions_and_revokes_everything() {
    let before = user(true, "a@x", &["member"], &["g1"]);
    let mut after = user(false, "a@x", &[], &[]);
    after.provisioned = true;
    let out = user_changes(cause(), "u1", Some(&before), &after);
    assert_eq!(
        kinds(&out),
        [
            "user.deprovisioned",
            "user.roles_changed",
            "user.groups_changed"
        ]
    );
    assert_eq!(
        out[1].payload.revoked.as_deref(),
        Some(&["member".to_owned()][..])
    );
    assert_eq!(out[2].payload.left.as_deref(), Some(&["g1".to_owned()][..]));
    assert!(!out[0].payload.user.as_ref().unwrap().active);
}

#[test]
fn coming_back_is_a_reactivation_and_a_first_activation_a_provisioning() {
    let mut gone = user(false, "a@x", &[], &[]);
    gone.provisioned = true;
    let back = user(true, "a@x", &[], &[]);
    assert_eq!(
        kinds(&user_changes(cause(), "u1", Some(&gone), &back)),
        ["user.reactivated"]
    );
    // Created inactive, activated later: the first activation.
    let never = user(false, "a@x", &[], &[]);
    assert_eq!(
        kinds(&user_changes(cause(), "u1", Some(&never), &back)),
        ["user.provisioned"]
    );
}

#[test]
fn profile_changes_are_updates_and_attribute_only_changes_are_nothing() {
    let before = user(true, "a@x", &["member"], &["g1"]);
    let renamed = user(true, "b@x", &["member"], &["g1"]);
    assert_eq!(
        kinds(&user_changes(cause(), "u1", Some(&before), &renamed)),
        ["user.updated"]
    );
    let mut attributes_only = before.clone();
    attributes_only.profile.attributes = json!({"department": "R&D"}).into();
    assert!(user_changes(cause(), "u1", Some(&before), &attributes_only).is_empty());
    let regrouped = user(true, "a@x", &["member"], &["g2"]);
    let out = user_changes(cause(), "u1", Some(&before), &regrouped);
    assert_eq!(kinds(&out), ["user.groups_changed"]);
    assert_eq!(
        out[0].payload.joined.as_deref(),
        Some(&["g2".to_owned()][..])
    );
    assert_eq!(out[0].payload.left.as_deref(), Some(&["g1".to_owned()][..]));
}

#[test]
fn unseen_users_produce_nothing_when_deleted_or_erased() {
    let mut tombstone = user(false, "a@x", &[], &[]);
    assert!(user_changes(cause(), "u1", None, &tombstone).is_empty());
    tombstone.erased = true;
    assert!(user_changes(cause(), "u1", None, &tombstone).is_empty());
    // A provisioned user erased: one erasure (and what it lost).
    let before = user(true, "a@x", &["member"], &[]);
    let mut erased = user(false, "", &[], &[]);
    erased.erased = true;
    erased.provisioned = true;
    assert_eq!(
        kinds(&user_changes(cause(), "u1", Some(&before), &erased)),
        ["user.erased", "user.roles_changed"]
    );
}

fn group(name: &str, deleted: bool) -> StoredGroup {
    StoredGroup {
        version: Version::new(Utc.timestamp_opt(1_700_000_000, 0).unwrap(), "evt_0"),
        display_name: Some(name.into()),
        deleted_at: deleted.then(|| Utc.timestamp_opt(1_700_000_000, 0).unwrap()),
    }
}

#[test]
fn groups_change_on_create_rename_delete_and_restore_only() {
    let kind = |before: Option<&StoredGroup>, name: &str, deleted: bool| {
        group_change(cause(), "g1", before, Some(name), deleted).map(|c| c.kind.as_str())
    };
    assert_eq!(kind(None, "Eng", false), Some("group.created"));
    assert_eq!(kind(Some(&group("Eng", false)), "Eng", false), None);
    assert_eq!(
        kind(Some(&group("Eng", false)), "Engineering", false),
        Some("group.updated")
    );
    assert_eq!(
        kind(Some(&group("Eng", false)), "Eng", true),
        Some("group.deleted")
    );
    assert_eq!(kind(None, "Eng", true), None, "never seen");
    assert_eq!(kind(Some(&group("Eng", true)), "Eng", true), None);
    assert_eq!(
        kind(Some(&group("Eng", true)), "Eng", false),
        Some("group.created"),
        "restored"
    );
    let c = group_change(cause(), "g1", None, Some("Eng"), false).unwrap();
    let g = c.payload.group.unwrap();
    assert_eq!((g.directory_group_id.as_str(), g.deleted), ("g1", false));
}

#[test]
fn directories_change_when_enabled_or_disabled() {
    let dir = |enabled| DirectoryState {
        id: "dir_1".into(),
        enabled,
        provider: Some("OKTA".into()),
        directory_type: Some("SCIM".into()),
    };
    let stored = |enabled| StoredDirectory {
        version: Version::new(Utc.timestamp_opt(1_700_000_000, 0).unwrap(), "evt_0"),
        enabled,
    };
    let kind = |before: Option<StoredDirectory>, enabled| {
        directory_change(cause(), before.as_ref(), dir(enabled)).map(|c| c.kind.as_str())
    };
    assert_eq!(kind(None, true), Some("directory.enabled"));
    assert_eq!(kind(Some(stored(false)), true), Some("directory.enabled"));
    assert_eq!(kind(Some(stored(true)), true), None);
    assert_eq!(kind(Some(stored(true)), false), Some("directory.disabled"));
    assert_eq!(kind(None, false), None);
}

#[test]
fn the_identity_providers_id_is_carried_and_a_new_one_is_an_update() {
    let mut before = user(true, "a@x", &[], &[]);
    before.profile.attributes = json!({"dp_id": "00u1"}).into();
    let created = user_changes(cause(), "u1", None, &before);
    let state = created[0].payload.user.as_ref().unwrap();
    assert_eq!(state.external_id.as_deref(), Some("00u1"));
    assert_eq!(
        user_state("u1", &user(true, "a@x", &[], &[])).external_id,
        None,
        "unknown when the provider sent none"
    );
    let mut after = before.clone();
    after.profile.attributes = json!({"dp_id": "00u2"}).into();
    let out = user_changes(cause(), "u1", Some(&before), &after);
    assert_eq!(kinds(&out), ["user.updated"]);
    assert_eq!(
        out[0].payload.user.as_ref().unwrap().external_id.as_deref(),
        Some("00u2")
    );
}
