//! The catalogue planners without a database: groups and directories.

use super::plan::*;
use crate::service::apply::version::Version;
use chrono::{TimeZone, Utc};
use serde_json::json;
use shared::{DirectoryData, GroupData};

fn v(secs: i64) -> Version {
    Version::new(
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap(),
        format!("evt_{secs}"),
    )
}

fn group(name: &str) -> GroupData {
    GroupData {
        id: shared::DirectoryGroupId::new("dirgroup_1"),
        organization_id: shared::OrganizationId::new("org_1"),
        directory_id: None,
        display_name: Some(name.into()),
        external_id: None,
        dp_id: None,
        raw_attributes: None,
    }
}

#[test]
fn group_lifecycle_and_ordering() {
    let GroupPlan::Apply(c) = plan_group(&group("Eng"), &json!({}), false, v(1), None) else {
        panic!()
    };
    assert_eq!(c.action, "created");
    let stored = StoredGroup {
        version: v(1),
        display_name: c.display_name.clone(),
        deleted_at: None,
    };
    let GroupPlan::Apply(d) = plan_group(&group("Eng"), &json!({}), true, v(3), Some(&stored))
    else {
        panic!()
    };
    assert_eq!(d.action, "deleted");
    assert!(d.removes_memberships && d.deleted_at == Some(v(3).at));
    let tomb = StoredGroup {
        version: v(3),
        display_name: d.display_name.clone(),
        deleted_at: d.deleted_at,
    };
    assert_eq!(
        plan_group(&group("Eng2"), &json!({}), false, v(2), Some(&tomb)),
        GroupPlan::Stale
    );
    let GroupPlan::Apply(r) = plan_group(&group("Eng2"), &json!({}), false, v(4), Some(&tomb))
    else {
        panic!()
    };
    assert_eq!(r.action, "restored");
    assert!(r.deleted_at.is_none());
}

#[test]
fn directory_enable_disable_by_event_type() {
    let data = DirectoryData {
        id: shared::DirectoryId::new("dir_1"),
        organization_id: shared::OrganizationId::new("org_1"),
        directory_type: Some("SCIM".into()),
        provider: Some("OKTA".into()),
        enabled: Some(false), // the docs' example says false on directory_enabled: ignored
        updated_at: None,
        last_sync_at: None,
        status: None,
        environment_id: None,
    };
    let DirectoryPlan::Apply(c) = plan_directory(&data, true, v(1), None) else {
        panic!()
    };
    assert!(c.enabled);
    let s = StoredDirectory {
        version: v(2),
        enabled: false,
    };
    assert_eq!(
        plan_directory(&data, true, v(1), Some(&s)),
        DirectoryPlan::Stale
    );
}
