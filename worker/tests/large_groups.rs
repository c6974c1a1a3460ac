//! Large groups against PostgreSQL's lock table (64 locks per connection by default, shared
//! by all): deleting a group of 20,000 members, and users in 2,000 groups applied at once,
//! take a handful of locks each, not one per member or per group.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::apply::applier;
use support::parsed;
use testkit::db::TestDb;
use worker::service::apply::Outcome;
use worker::service::role_mapping::RoleMapping;

fn user(i: usize, groups: &[String]) -> Vec<u8> {
    let groups: Vec<_> = groups.iter().map(|g| json!({"id": g, "name": g})).collect();
    serde_json::to_vec(&json!({
        "id": format!("evt_u{i}"), "type": "organization.directory.user_created",
        "object": "DirectoryUser", "spec_version": "1", "environment_id": "env_1",
        "organization_id": "org_big", "occurred_at": "2026-01-01T10:00:00Z",
        "data": {"id": format!("diruser_{i:05}"), "organization_id": "org_big", "active": true,
                 "email": format!("u{i}@example.com"), "groups": groups}
    }))
    .unwrap()
}

fn group_deleted(group: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": format!("evt_del_{group}"), "type": "organization.directory.group_deleted",
        "object": "DirectoryGroup", "spec_version": "1", "environment_id": "env_1",
        "organization_id": "org_big", "occurred_at": "2026-01-01T11:00:00Z",
        "data": {"id": group, "organization_id": "org_big", "display_name": group}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_group_of_20000_members_is_applied() {
    let db = TestDb::create().await;
    let a = applier(&db, RoleMapping::default());
    let big = vec!["dirgroup_big".to_owned()];
    for chunk in (0..20_000).collect::<Vec<_>>().chunks(1000) {
        let items: Vec<_> = chunk.iter().map(|i| parsed(&user(*i, &big))).collect();
        let outcomes = a.apply_batch(&items).await.unwrap();
        assert!(outcomes.iter().all(|o| *o == Outcome::Applied));
    }
    let (meta, event) = parsed(&group_deleted("dirgroup_big"));
    assert_eq!(a.apply(&meta, &event).await.unwrap(), Outcome::Applied);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM directory_group_memberships")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_log WHERE action = 'group_removed'")
            .await,
        20_000
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_in_2000_groups_applied_concurrently() {
    let db = TestDb::create().await;
    let a = applier(&db, RoleMapping::default());
    // Each user in 2,000 groups of its own: 4 connections at once would need 8,000 lock slots
    // if each group were locked.
    let bodies: Vec<Vec<u8>> = (0..6)
        .map(|i| {
            let groups: Vec<String> = (0..2000).map(|g| format!("dirgroup_{i}_{g:04}")).collect();
            user(i, &groups)
        })
        .collect();
    let runs = bodies.iter().map(|b| {
        let a = a.clone();
        let (meta, event) = parsed(b);
        async move { a.apply(&meta, &event).await }
    });
    for outcome in futures_util::future::join_all(runs).await {
        assert_eq!(outcome.unwrap(), Outcome::Applied);
    }
    assert_eq!(
        db.count("SELECT count(*) AS n FROM directory_group_memberships")
            .await,
        12_000
    );
    db.drop_db().await;
}
