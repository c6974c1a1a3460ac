//! The apply rules against a real database: fixtures in order and in any order, duplicates,
//! tombstones and re-activation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use support::apply::{applier, apply_all, corpora, rows_naming, truncate};
use support::*;
use testkit::db::TestDb;
use testkit::tables;
use worker::service::apply::{Applier, Outcome};
use worker::service::role_mapping::RoleMapping;

#[tokio::test]
async fn fixtures_in_order_reach_the_documented_end_state() {
    let db = TestDb::create().await;
    let a = applier(&db, RoleMapping::default());
    let bodies: Vec<_> = FIXTURES.iter().map(|f| fixture(f)).collect();
    let outcomes = apply_all(&a, &bodies).await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Applied),
        "{outcomes:?}"
    );
    let mut conn = db.connect().await;
    let s = tables::read(&mut conn).await.unwrap();

    assert_eq!(s.directories.len(), 1);
    let (org, dir, enabled, provider) = &s.directories[0];
    assert_eq!(
        (org.as_str(), dir.as_str()),
        ("org_53879494091473415", "dir_55135622825771522")
    );
    assert!(!enabled, "disabled by 08");
    assert_eq!(provider.as_deref(), Some("OKTA"));

    assert_eq!(s.users.len(), 1);
    let user = &s.users[0];
    assert_eq!(user.1, "diruser_12312312312312");
    assert_eq!(user.2.as_deref(), Some("jane.smith@example.com"));
    assert_eq!(user.4.as_deref(), Some("Smith"));
    assert!(!user.6, "deactivated, not deleted");
    assert!(user.7.is_some(), "deactivated_at set");
    assert!(!user.8, "not erased");

    assert_eq!(s.groups.len(), 1);
    assert_eq!(s.groups[0].2.as_deref(), Some("Engineering (all)"));
    assert!(s.groups[0].3.is_some(), "group deleted");
    assert!(
        s.memberships.is_empty(),
        "a deactivated user keeps no groups"
    );
    assert!(s.roles.is_empty(), "a deactivated user keeps no roles");

    // One processed_events row per event, one audit row per change.
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let processed: i64 = worker::service::db::schema::processed_events::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(processed, 8);
    let audits: i64 = worker::service::db::schema::audit_log::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(audits >= 8);

    // Delivering everything again changes nothing: all duplicates.
    let again = apply_all(&a, &bodies).await;
    assert!(again.iter().all(|o| *o == Outcome::Duplicate), "{again:?}");
    assert_eq!(tables::read(&mut conn).await.unwrap(), s);
    db.drop_db().await;
}

#[tokio::test]
async fn any_order_with_duplicates_gives_the_same_end_state() {
    let db = TestDb::create().await;
    let mut conn = db.connect().await;
    let mapping = RoleMapping::parse(
        "[default.by_group_name]\n\"Finance\" = \"finance_viewer\"\n[default.by_group_id]\n\"dirgroup_45645645645645\" = \"engineer\"\n",
        "test",
    )
    .unwrap();
    let a = applier(&db, mapping);
    for (corpus, bodies) in corpora() {
        check_permutations(&a, &mut conn, corpus, &bodies, 150).await;
    }
    db.drop_db().await;
}

async fn check_permutations(
    a: &Applier,
    conn: &mut diesel_async::AsyncPgConnection,
    corpus: &str,
    bodies: &[Vec<u8>],
    runs: usize,
) {
    truncate(conn).await;
    apply_all(a, bodies).await;
    let expected = tables::read(conn).await.unwrap();
    if corpus == "active" {
        // Engineering was deleted: only Finance remains, with its mapped role.
        assert_eq!(expected.memberships.len(), 1, "{expected:?}");
        assert_eq!(expected.memberships[0].2, "dirgroup_78978978978978");
        let roles: Vec<_> = expected
            .roles
            .iter()
            .map(|r| (r.2.as_str(), r.3.as_str()))
            .collect();
        assert_eq!(
            roles,
            [
                ("billing_admin", "scalekit"),
                ("finance_viewer", "mapping"),
                ("member", "scalekit")
            ]
        );
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5c1a);
    for run in 0..runs {
        truncate(conn).await;
        let mut order: Vec<Vec<u8>> = bodies.to_vec();
        for _ in 0..rng.random_range(0..4) {
            let dup = bodies[rng.random_range(0..bodies.len())].clone();
            order.push(dup);
        }
        order.shuffle(&mut rng);
        apply_all(a, &order).await;
        let got = tables::read(conn).await.unwrap();
        assert_eq!(got, expected, "{corpus}: run {run} diverged");
    }
}

fn user_event(id: &str, kind: &str, at: &str, active: bool) -> Vec<u8> {
    let data = if kind == "user_deleted" {
        serde_json::json!({"id": "diruser_1", "organization_id": "org_1", "email": "a@example.com"})
    } else {
        serde_json::json!({"id": "diruser_1", "organization_id": "org_1", "email": "a@example.com",
            "given_name": "A", "active": active, "groups": [{"id": "dirgroup_1", "name": "Eng"}],
            "roles": [{"role_name": "member"}]})
    };
    serde_json::to_vec(&serde_json::json!({
        "spec_version": "1", "id": id, "type": format!("organization.directory.{kind}"),
        "occurred_at": at, "environment_id": "env_1", "organization_id": "org_1",
        "object": "DirectoryUser", "data": data,
    }))
    .unwrap()
}

#[tokio::test]
async fn tombstones_and_reactivation() {
    let db = TestDb::create().await;
    let a = applier(&db, RoleMapping::default());
    let mut conn = db.connect().await;
    let deleted = user_event("evt_2", "user_deleted", "2025-01-01T00:00:02Z", false);
    let created_older = user_event("evt_1", "user_created", "2025-01-01T00:00:01Z", true);
    let created_newer = user_event("evt_3", "user_created", "2025-01-01T00:00:03Z", true);

    assert_eq!(apply_all(&a, &[deleted]).await, [Outcome::Applied]);
    // An older user_created arriving late does not resurrect the user (it may fill the profile).
    apply_all(&a, &[created_older]).await;
    let s = tables::read(&mut conn).await.unwrap();
    assert!(!s.users[0].6, "still deactivated");
    assert!(s.roles.is_empty() && s.memberships.is_empty());

    // A newer one re-activates, with its groups and roles.
    assert_eq!(apply_all(&a, &[created_newer]).await, [Outcome::Applied]);
    let s = tables::read(&mut conn).await.unwrap();
    assert!(s.users[0].6, "re-activated");
    assert!(s.users[0].7.is_none());
    assert_eq!(s.memberships.len(), 1);
    assert_eq!(
        s.roles,
        [(
            "org_1".into(),
            "diruser_1".into(),
            "member".into(),
            "scalekit".into()
        )]
    );

    // user_updated with active:false deactivates.
    let off = user_event("evt_4", "user_updated", "2025-01-01T00:00:04Z", false);
    assert_eq!(apply_all(&a, &[off]).await, [Outcome::Applied]);
    let s = tables::read(&mut conn).await.unwrap();
    assert!(!s.users[0].6);
    // An older event is stale.
    let stale = user_event("evt_0", "user_updated", "2025-01-01T00:00:00Z", true);
    assert_eq!(apply_all(&a, &[stale]).await, [Outcome::Stale]);
    db.drop_db().await;
}

/// An applier with `HARD_DELETE=true`.
fn erasing_applier(db: &TestDb) -> Applier {
    Applier::new(
        worker::service::db::pool(&db.url, 2),
        Arc::new(RoleMapping::default()),
        true,
    )
}

#[tokio::test]
async fn hard_delete_erases_personal_data_but_keeps_a_tombstone() {
    let db = TestDb::create().await;
    let a = erasing_applier(&db);
    let mut conn = db.connect().await;
    apply_all(
        &a,
        &[user_event(
            "evt_1",
            "user_created",
            "2025-01-01T00:00:01Z",
            true,
        )],
    )
    .await;
    apply_all(
        &a,
        &[user_event(
            "evt_2",
            "user_deleted",
            "2025-01-01T00:00:02Z",
            false,
        )],
    )
    .await;
    let s = tables::read(&mut conn).await.unwrap();
    let u = &s.users[0];
    assert!(!u.6 && u.8, "inactive and erased");
    assert_eq!(
        (u.2.as_deref(), u.3.as_deref()),
        (None, None),
        "no personal data left"
    );
    assert_eq!(u.9, serde_json::json!({}));
    // The audit log keeps both rows (ids, times, actions) but not the person: neither the
    // creation's summary nor the erasure's names her.
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_log WHERE entity_id = 'diruser_1'")
            .await,
        2
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_log WHERE entity_id = 'diruser_1' AND action IN ('created', 'erased')")
            .await,
        2
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_log WHERE coalesce(before::text, '') || after::text ~ '(a@example.com|\"A\")'")
            .await,
        0,
        "no personal data in audit_log"
    );
    // A late, older update cannot refill it.
    let late = user_event("evt_0", "user_updated", "2025-01-01T00:00:00Z", true);
    assert_eq!(apply_all(&a, &[late]).await, [Outcome::Stale]);
    db.drop_db().await;
}

/// The erased user's email or names, in a row's text.
const THE_USER: &str = "(a@example\\.com|\"A\"|Aa Bb)";

#[tokio::test]
async fn erasure_leaves_the_user_in_no_column_of_any_table() {
    let db = TestDb::create().await;
    let a = erasing_applier(&db);
    let mut conn = db.connect().await;
    let created = user_event("evt_1", "user_created", "2025-01-01T00:00:01Z", true);
    apply_all(&a, std::slice::from_ref(&created)).await;
    // A dead-lettered event about her whose error quotes her, and a deactivation the brake held.
    let (meta, _) = parsed(&created);
    worker::service::records::dead_lettered(
        &mut conn,
        &meta,
        &created,
        "rejected",
        "bad value \"a@example.com\"",
    )
    .await
    .unwrap();
    let mut body: serde_json::Value = serde_json::from_slice(&created).unwrap();
    body["data"]["family_name"] = "Aa Bb".into();
    worker::service::brake::store::hold(
        &mut conn,
        &[worker::service::brake::store::HeldEvent {
            event_id: "evt_held".to_owned(),
            organization_id: "org_1".to_owned(),
            event_type: "organization.directory.user_updated".to_owned(),
            directory_user_id: "diruser_1".to_owned(),
            email: Some("a@example.com".to_owned()),
            occurred_at: chrono::Utc::now(),
            source: "webhook",
            webhook_id: None,
            body,
        }],
    )
    .await
    .unwrap();
    assert_eq!(
        rows_naming(&db, THE_USER).await,
        [
            "audit_log (1)",
            "changes (3)",
            "dead_lettered_events (1)",
            "directory_users (1)",
            "held_events (1)"
        ],
    );
    let deleted = user_event("evt_2", "user_deleted", "2025-01-01T00:00:02Z", false);
    apply_all(&a, &[deleted]).await;
    // The apply transaction scrubbed what it reaches by index; the outbox waits for the pass.
    assert_eq!(rows_naming(&db, THE_USER).await, ["changes (3)"]);
    assert!(
        worker::service::changes::prune::scrub_erased(&mut conn)
            .await
            .unwrap()
            >= 1
    );
    assert_eq!(rows_naming(&db, THE_USER).await, Vec::<String>::new());
    // Ids, kinds and times stay: the held event can still be listed, the changes still read.
    assert_eq!(
        db.count("SELECT count(*) AS n FROM held_events WHERE event_id = 'evt_held' AND body->'data'->>'id' = 'diruser_1' AND email IS NULL").await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM changes WHERE payload->'user'->>'directory_user_id' = 'diruser_1'").await,
        db.count("SELECT count(*) AS n FROM changes WHERE kind LIKE 'user.%'").await,
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM erasures_pending").await,
        0
    );
    // A second pass finds nothing left to do.
    assert_eq!(
        worker::service::changes::prune::scrub_erased(&mut conn)
            .await
            .unwrap(),
        0
    );
    db.drop_db().await;
}

#[tokio::test]
async fn unknown_types_are_ignored_and_recorded() {
    let db = TestDb::create().await;
    let a = applier(&db, RoleMapping::default());
    let body = br#"{"spec_version":"1","id":"evt_u","type":"scalekit.org.create","occurred_at":"2024-10-28T05:46:02Z","environment_id":"env_1","organization_id":"org_1","object":"Organization","data":{}}"#;
    assert_eq!(apply_all(&a, &[body.to_vec()]).await, [Outcome::Ignored]);
    assert_eq!(apply_all(&a, &[body.to_vec()]).await, [Outcome::Duplicate]);
    let mut conn = db.connect().await;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use worker::service::db::schema::processed_events as p;
    let outcome: String = p::table
        .filter(p::event_id.eq("evt_u"))
        .select(p::outcome)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(outcome, "ignored");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_migrating_together_do_not_race() {
    let db = TestDb::create().await; // already migrated once
    let mut conn = db.connect().await;
    use diesel_async::RunQueryDsl;
    // Every table, whatever the migrations created.
    for sql in ["DROP SCHEMA public CASCADE", "CREATE SCHEMA public"] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
    let (a, b, c) = tokio::join!(
        worker::service::db::migrate::run(&db.url),
        worker::service::db::migrate::run(&db.url),
        worker::service::db::migrate::run(&db.url)
    );
    let runs = [a.unwrap(), b.unwrap(), c.unwrap()];
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    let applied: usize = runs.iter().map(Vec::len).sum();
    assert_eq!(applied, migrations, "every migration applied once");
    assert_eq!(
        runs.iter().filter(|r| !r.is_empty()).count(),
        1,
        "exactly one replica applied the migrations"
    );
    db.drop_db().await;
}
