//! Batches against a real database: any split of any order reaches the same end state, and
//! memberships and roles are rewritten only when they change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use support::apply::{applier, apply_all, corpora, truncate};
use support::*;
use testkit::db::TestDb;
use testkit::tables;
use worker::service::apply::Outcome;
use worker::service::role_mapping::RoleMapping;

#[tokio::test]
async fn batches_reach_the_same_end_state_in_any_order_and_split() {
    let db = TestDb::create().await;
    let mut conn = db.connect().await;
    let mapping = RoleMapping::parse(
        "[default.by_group_name]\n\"Finance\" = \"finance_viewer\"\n",
        "test",
    )
    .unwrap();
    let a = applier(&db, mapping);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xba7c);
    for (_, bodies) in corpora() {
        truncate(&mut conn).await;
        apply_all(&a, &bodies).await;
        let expected = tables::read(&mut conn).await.unwrap();
        for run in 0..100 {
            truncate(&mut conn).await;
            let mut order = bodies.clone();
            for _ in 0..rng.random_range(0..4) {
                order.push(bodies[rng.random_range(0..bodies.len())].clone());
            }
            order.shuffle(&mut rng);
            // Random split into batches (duplicates may share a batch).
            let mut rest = &order[..];
            while !rest.is_empty() {
                let n = rng.random_range(1..=rest.len());
                // The chunk in one call, as the worker hands over what a lane took.
                let chunk: Vec<_> = rest[..n].iter().map(|b| parsed(b)).collect();
                let outcomes = a.apply_batch(&chunk).await.unwrap();
                assert_eq!(outcomes.len(), chunk.len());
                rest = &rest[n..];
            }
            assert_eq!(
                tables::read(&mut conn).await.unwrap(),
                expected,
                "run {run} diverged"
            );
        }
    }
    db.drop_db().await;
}

/// `04_user_updated` with its id, time, groups and email replaced.
fn user_update(n: u32, groups: &[(&str, &str)], email: &str) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("04_user_updated.json")).unwrap();
    v["id"] = format!("evt_rewrite_{n:03}").into();
    v["occurred_at"] = format!("2025-02-01T00:00:{n:02}Z").into();
    v["data"]["email"] = email.into();
    v["data"]["groups"] = groups
        .iter()
        .map(|(id, name)| serde_json::json!({"id": id, "name": name}))
        .collect();
    serde_json::to_vec(&v).unwrap()
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct RowVersion {
    #[diesel(sql_type = diesel::sql_types::Text)]
    key: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

/// Membership and role rows with their row versions (`xmin`: changes when a row is rewritten).
async fn set_rows(conn: &mut diesel_async::AsyncPgConnection) -> Vec<RowVersion> {
    use diesel_async::RunQueryDsl;
    diesel::sql_query(
        "SELECT 'm:' || directory_group_id AS key, xmin::text AS version FROM directory_group_memberships \
         UNION ALL SELECT 'r:' || role_name || ':' || source, xmin::text FROM user_roles ORDER BY 1",
    )
    .load(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn memberships_and_roles_are_rewritten_only_when_they_change() {
    let db = TestDb::create().await;
    let mut conn = db.connect().await;
    let a = applier(&db, RoleMapping::default());
    let eng = ("dirgroup_eng", "Engineering");
    let fin = ("dirgroup_fin", "Finance");
    for batched in [false, true] {
        truncate(&mut conn).await;
        let apply = async |body: Vec<u8>| {
            let (meta, event) = parsed(&body);
            if batched {
                a.apply_batch(&[(meta, event)]).await.unwrap()[0]
            } else {
                a.apply(&meta, &event).await.unwrap()
            }
        };
        assert_eq!(
            apply(user_update(1, &[eng, fin], "a@example.com")).await,
            Outcome::Applied
        );
        let first = set_rows(&mut conn).await;
        let keys: Vec<&str> = first.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "m:dirgroup_eng",
                "m:dirgroup_fin",
                "r:billing_admin:scalekit",
                "r:member:scalekit"
            ],
            "batched={batched}"
        );
        // A profile change with the same groups and roles leaves those rows untouched.
        assert_eq!(
            apply(user_update(2, &[eng, fin], "b@example.com")).await,
            Outcome::Applied
        );
        assert_eq!(set_rows(&mut conn).await, first, "batched={batched}");
        // Leaving a group rewrites the sets: the membership is gone.
        assert_eq!(
            apply(user_update(3, &[eng], "b@example.com")).await,
            Outcome::Applied
        );
        let after = set_rows(&mut conn).await;
        let keys: Vec<&str> = after.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "m:dirgroup_eng",
                "r:billing_admin:scalekit",
                "r:member:scalekit"
            ],
            "batched={batched}"
        );
        assert_ne!(after[0].version, first[0].version, "rewritten");
    }
    db.drop_db().await;
}

#[derive(diesel::QueryableByName, Debug)]
struct Prepared {
    #[diesel(sql_type = diesel::sql_types::Text)]
    statement: String,
}

/// The statements kept prepared on the applier's connection (its pool holds one).
async fn prepared(a: &worker::service::apply::Applier) -> Vec<String> {
    use diesel_async::RunQueryDsl;
    let mut conn = a.pool().get().await.unwrap();
    let rows: Vec<Prepared> =
        diesel::sql_query("SELECT statement FROM pg_prepared_statements ORDER BY statement")
            .load(&mut *conn)
            .await
            .unwrap();
    rows.into_iter().map(|r| r.statement).collect()
}

#[tokio::test]
async fn batches_of_any_size_run_the_same_prepared_statements() {
    let db = TestDb::create().await;
    let a = worker::service::apply::Applier::new(
        worker::service::db::pool(&db.url, 1),
        std::sync::Arc::new(RoleMapping::default()),
        false,
    );
    let eng = ("dirgroup_eng", "Engineering");
    // New users (each its own row, memberships and roles), `n` of them in one batch.
    let batch = |from: u32, n: u32| -> Vec<_> {
        (from..from + n)
            .map(|i| {
                let mut v: serde_json::Value =
                    serde_json::from_slice(&user_update(i, &[eng], &format!("u{i}@example.com")))
                        .unwrap();
                v["data"]["id"] = format!("diruser_prepared_{i:03}").into();
                parsed(&serde_json::to_vec(&v).unwrap())
            })
            .collect()
    };
    let applied = async |events: Vec<_>| {
        let outcomes = a.apply_batch(&events).await.unwrap();
        assert!(
            outcomes.iter().all(|o| *o == Outcome::Applied),
            "{outcomes:?}"
        );
    };
    applied(batch(0, 2)).await;
    let after_first = prepared(&a).await;
    // Every multi-row write is one prepared statement, whatever the batch's size.
    for table in [
        "processed_events",
        "directory_users",
        "directory_group_memberships",
        "user_roles",
        "audit_log",
        "changes",
    ] {
        let prefix = format!("INSERT INTO {table} ");
        let n = after_first
            .iter()
            .filter(|s| s.starts_with(&prefix))
            .count();
        assert_eq!(n, 1, "{table}: {after_first:#?}");
    }
    applied(batch(10, 7)).await;
    assert_eq!(
        prepared(&a).await,
        after_first,
        "a new batch size prepared anew"
    );
    db.drop_db().await;
}
