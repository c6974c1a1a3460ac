//! The deprovisioning brake under concurrent batches, through the applier against a real
//! database: batches of many lanes deactivating users of one organization at once never pass
//! more than its budget (the unlocked read is confirmed under the brake lock at each batch's
//! end, and a contended batch runs again under the lock), while an organization far from its
//! threshold passes every deactivation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::{parsed, user_deleted, user_event};
use testkit::db::TestDb;
use worker::service::apply::{Applier, Outcome};
use worker::service::brake::BrakeSettings;
use worker::service::role_mapping::RoleMapping;

fn created(org: &str, i: usize) -> Vec<u8> {
    let data = json!({"active": true, "email": format!("u{i}@{org}.example")});
    user_event(org, i, "user_created", "c", "2026-01-01T10:00:00Z", data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_never_pass_more_than_the_budget() {
    let db = TestDb::create().await;
    let settings = BrakeSettings {
        window: Duration::from_secs(3600),
        percent: 20,
        min: 10,
    };
    let applier = Applier::new(
        worker::service::db::pool(&db.url, 8),
        Arc::new(RoleMapping::default()),
        false,
    )
    .with_brake(settings);
    // "near": 200 users, 40 may go; "far": 1,000 users, 200 may go, 100 do.
    let mut setup = Vec::new();
    for i in 0..200 {
        setup.push(created("org_near", i));
    }
    for i in 0..1000 {
        setup.push(created("org_far", i));
    }
    for chunk in setup.chunks(100) {
        let items: Vec<_> = chunk.iter().map(|b| parsed(b)).collect();
        applier.apply_batch(&items).await.unwrap();
    }
    // 20 batches at once, each deleting 10 users of "near" and 5 of "far".
    let mut tasks = tokio::task::JoinSet::new();
    for b in 0..20 {
        let applier = applier.clone();
        tasks.spawn(async move {
            let mut bodies = Vec::new();
            for k in 0..10 {
                bodies.push(user_deleted("org_near", b * 10 + k));
            }
            for k in 0..5 {
                bodies.push(user_deleted("org_far", b * 5 + k));
            }
            let items: Vec<_> = bodies.iter().map(|b| parsed(b)).collect();
            applier.apply_batch(&items).await.unwrap()
        });
    }
    let mut near = (0, 0);
    let mut far = (0, 0);
    while let Some(outcomes) = tasks.join_next().await {
        let outcomes = outcomes.unwrap();
        for (k, o) in outcomes.iter().enumerate() {
            let counts = if k < 10 { &mut near } else { &mut far };
            match o {
                Outcome::Applied => counts.0 += 1,
                Outcome::Held => counts.1 += 1,
                other => panic!("unexpected outcome {other:?}"),
            }
        }
    }
    assert_eq!(near, (40, 160), "near: (applied, held)");
    assert_eq!(far, (100, 0), "far: (applied, held)");
    let mut conn = db.connect().await;
    let active = |org: &'static str| {
        diesel::sql_query(format!(
            "SELECT count(*) AS n FROM directory_users WHERE organization_id = '{org}' AND active"
        ))
    };
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel_async::RunQueryDsl;
    let n: N = active("org_near").get_result(&mut conn).await.unwrap();
    assert_eq!(n.n, 160);
    let n: N = active("org_far").get_result(&mut conn).await.unwrap();
    assert_eq!(n.n, 900);
    db.drop_db().await;
}
