//! The change feed: the outbox rows an event writes (and does not), and the relay publishing
//! them in order to the stream, with one leader among several workers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::apply::{applier, apply_all};
use support::changes::outbox;
use support::*;
use testkit::db::TestDb;
use testkit::env::Env;
use testkit::feed::{check_against_tables, check_order, read_stream, wait_published};
use testkit::wait_until;
use testkit::worker::*;
use worker::service::apply::Outcome;
use worker::service::role_mapping::RoleMapping;

#[tokio::test]
async fn each_event_writes_its_net_changes_once_and_nothing_else() {
    let db = TestDb::create().await;
    let a = applier(&db, RoleMapping::default());
    let bodies: Vec<_> = FIXTURES.iter().map(|f| fixture(f)).collect();
    apply_all(&a, &bodies).await;
    let rows = outbox(&db).await;
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "directory.enabled",
            "group.created",
            "user.provisioned",
            "user.roles_changed",
            "user.groups_changed",
            "user.updated",
            "user.roles_changed",
            "user.groups_changed",
            "group.updated",
            "user.deprovisioned",
            "user.roles_changed",
            "user.groups_changed",
            "group.deleted",
            "directory.disabled",
        ],
        "{rows:?}"
    );
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
    // Payloads are stored as JSON objects PostgreSQL can query, not as strings of JSON.
    assert_eq!(rows[2].keys, ["user"]);
    assert_eq!(rows[3].keys, ["granted", "revoked", "user"]);
    assert_eq!(rows[4].keys, ["joined", "left", "user"]);
    // The cause of each change is the event that made it, in the fixtures' order.
    let causes: Vec<&str> = rows.iter().map(|r| r.cause_event_id.as_str()).collect();
    let mut sorted = causes.clone();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        8,
        "every fixture changed something: {causes:?}"
    );
    // Duplicates and stale events add nothing.
    let again = apply_all(&a, &bodies).await;
    assert!(again.iter().all(|o| *o == Outcome::Duplicate));
    let mut stale: serde_json::Value =
        serde_json::from_slice(&fixture("04_user_updated.json")).unwrap();
    stale["id"] = "evt_stale_update".into();
    stale["occurred_at"] = "2000-01-01T00:00:00Z".into();
    assert_eq!(
        apply_all(&a, &[serde_json::to_vec(&stale).unwrap()]).await,
        [Outcome::Stale]
    );
    assert_eq!(outbox(&db).await.len(), rows.len());
    db.drop_db().await;
}

fn user_event(i: usize, kind: &str, second: u32, email: &str) -> Vec<u8> {
    let file = if kind == "user_created" {
        "03_user_created.json"
    } else {
        "04_user_updated.json"
    };
    let mut v: serde_json::Value = serde_json::from_slice(&fixture(file)).unwrap();
    v["id"] = format!("evt_{kind}_{i}").into();
    v["occurred_at"] = format!("2025-03-01T00:00:{second:02}Z").into();
    v["data"]["id"] = format!("diruser_{i}").into();
    v["data"]["email"] = email.into();
    serde_json::to_vec(&v).unwrap()
}

async fn leaders(workers: &[&TestWorker]) -> i64 {
    workers.iter().map(|w| w.metrics.relay_leader.get()).sum()
}

/// Once everything is published, the relay's stored floor is the newest row (rounds raise it
/// with their marks; the next leader starts there), and no index names `published_at`, so the
/// marks are heap-only updates.
async fn assert_floor_at_top(db: &TestDb) {
    let top = db.count("SELECT max(seq) AS n FROM changes").await;
    assert!(
        wait_until(Duration::from_secs(5), || async {
            db.count("SELECT published_through AS n FROM change_relay")
                .await
                == top
        })
        .await,
        "the stored floor reaches the newest change ({top})"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM pg_indexes WHERE tablename = 'changes' \
             AND indexdef LIKE '%published_at%'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_publishes_in_order_and_another_takes_over() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let a = spawn_worker(&broker.prefix, &db.url, &[]).await;
    let b = spawn_worker(&broker.prefix, &db.url, &[]).await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            leaders(&[&a, &b]).await == 1
        })
        .await,
        "exactly one of two workers leads the relay"
    );
    for i in 0..100 {
        broker
            .publish(&user_event(
                i,
                "user_created",
                1,
                &format!("u{i}@example.com"),
            ))
            .await;
    }
    assert!(
        wait_until(Duration::from_secs(30), || async {
            db.count("SELECT count(*) AS n FROM processed_events").await == 100
        })
        .await
    );
    wait_published(db, Duration::from_secs(20)).await.unwrap();
    assert_eq!(leaders(&[&a, &b]).await, 1, "still exactly one leader");
    assert_floor_at_top(db).await;
    // The leader stops; the other takes over and publishes what comes next.
    let (leader, follower) = if a.metrics.relay_leader.get() == 1 {
        (a, b)
    } else {
        (b, a)
    };
    leader.stop().await;
    for i in 0..100 {
        broker
            .publish(&user_event(
                i,
                "user_updated",
                2,
                &format!("v{i}@example.com"),
            ))
            .await;
    }
    assert!(
        wait_until(Duration::from_secs(30), || async {
            db.count("SELECT count(*) AS n FROM processed_events").await == 200
        })
        .await
    );
    wait_published(db, Duration::from_secs(20)).await.unwrap();
    assert_eq!(follower.metrics.relay_leader.get(), 1, "took over");
    assert_floor_at_top(db).await;
    let messages = read_stream(&testkit::amqp_url(), &broker.topology)
        .await
        .unwrap();
    let report = check_order(&messages).unwrap();
    check_against_tables(db, &report).await.unwrap();
    let provisioned = report
        .changes
        .iter()
        .filter(|c| c.kind.as_str() == "user.provisioned")
        .count();
    let updated = report
        .changes
        .iter()
        .filter(|c| c.kind.as_str() == "user.updated")
        .count();
    assert_eq!((provisioned, updated), (100, 100));
    assert!(
        report
            .changes
            .iter()
            .all(|c| c.cause_event_id.starts_with("evt_user_"))
    );
    assert!(
        follower.metrics.changes_published.get() >= 100,
        "the follower published the second half"
    );
    assert_eq!(follower.metrics.outbox_depth.get(), 0);
    // The operator's view: `worker changes tail` from a seq, one kind.
    let out = support::succeeded(support::dlq::worker_cmd(
        broker,
        &[
            "changes",
            "tail",
            "--from-seq",
            "1",
            "--kind",
            "user.provisioned",
            "--idle",
            "2s",
        ],
    ))
    .await;
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 100, "one provisioning per user");
    assert!(lines.iter().all(|l| l["kind"] == "user.provisioned"));
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()),
        "in seq order"
    );
    follower.stop().await;
    env.finish().await;
}

#[tokio::test]
async fn retention_prunes_only_what_is_old_enough() {
    use diesel_async::RunQueryDsl;
    let db = TestDb::create().await;
    let mut conn = db.connect().await;
    diesel::sql_query(
        "INSERT INTO changes (kind, organization_id, cause_event_id, occurred_at, committed_at, payload, published_at) VALUES \
         ('user.updated', 'org_1', 'evt_old', now(), now() - interval '40 days', '{}', now() - interval '40 days'), \
         ('user.updated', 'org_1', 'evt_new', now(), now(), '{}', now()), \
         ('user.updated', 'org_1', 'evt_unpublished', now(), now() - interval '40 days', '{}', NULL)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO processed_events (event_id, event_type, source, outcome, processed_at) VALUES \
         ('evt_old', 't', 'webhook', 'applied', now() - interval '40 days'), \
         ('evt_new', 't', 'webhook', 'applied', now() - interval '10 days')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let retention = worker::service::changes::prune::Retention {
        changes: Duration::from_secs(30 * 86_400),
        processed_events: Duration::from_secs(35 * 86_400),
    };
    let deleted = worker::service::changes::prune::run(&mut conn, &retention)
        .await
        .unwrap();
    assert_eq!(deleted, 2, "one old published change, one old dedupe row");
    assert_eq!(
        db.count("SELECT count(*) AS n FROM changes WHERE cause_event_id IN ('evt_new', 'evt_unpublished')")
            .await,
        2,
        "recent and unpublished changes stay"
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM processed_events WHERE event_id = 'evt_new'")
            .await,
        1
    );
    // The pruned change's seq (the first row's) is recorded: a cursor below it has a gap.
    assert_eq!(
        db.count("SELECT pruned_through AS n FROM change_relay")
            .await,
        db.count("SELECT min(seq) - 1 AS n FROM changes").await,
    );
    assert!(
        db.count("SELECT pruned_through AS n FROM change_relay")
            .await
            >= 1
    );
    db.drop_db().await;
}

/// Idle workers that do not lead the relay wait for the leader lock on one kept connection
/// each: five workers open (almost) no database sessions once started. Before, every follower
/// opened a connection for each try, twice a second (4 followers: ~480 a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_followers_open_no_connection_per_try() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let mut workers = Vec::new();
    for _ in 0..5 {
        workers.push(spawn_worker(&broker.prefix, &db.url, &[]).await);
    }
    let all: Vec<&TestWorker> = workers.iter().collect();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            leaders(&all).await == 1
        })
        .await,
        "one leader among five"
    );
    // Every follower has tried at least once (and kept its connection) by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let sessions = || async {
        db.count(&format!(
            "SELECT sessions AS n FROM pg_stat_database WHERE datname = '{name}'"
        ))
        .await
    };
    let before = sessions().await;
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    // Each reading opens one session itself.
    let opened = sessions().await - before - 1;
    eprintln!(
        "5 idle workers opened {opened} database sessions in {window:?} (~{} a minute)",
        opened * 6
    );
    assert!(
        opened <= 2,
        "{opened} sessions opened by idle workers in {window:?}"
    );
    assert_eq!(leaders(&all).await, 1, "still one leader");
    for w in workers {
        w.stop().await;
    }
}

/// The relay's connection never plans parallel workers: on a `changes` table without
/// statistics, PostgreSQL estimates a third of the table for the sample's `seq > floor` and
/// plans a parallel scan on an ordinary connection (started every second, ~15 ms apiece).
#[tokio::test]
async fn the_relay_samples_its_backlog_without_parallel_workers() {
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    #[derive(diesel::QueryableByName)]
    struct Plan {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let db = TestDb::create().await;
    let mut plain = db.connect().await;
    plain
        .batch_execute(
            "ALTER TABLE changes SET (autovacuum_enabled = false); \
             INSERT INTO changes (kind, organization_id, cause_event_id, occurred_at, payload, published_at) \
             SELECT 'user.updated', 'org_1', 'evt_' || g, now(), \
                    jsonb_build_object('user', jsonb_build_object('id', 'u' || g, 'pad', repeat('x', 600))), \
                    CASE WHEN g <= 199900 THEN now() END \
             FROM generate_series(1, 200000) g",
        )
        .await
        .unwrap();
    let explain = format!(
        "EXPLAIN {}",
        worker::service::changes::relay::BACKLOG_SQL.replace("$1::bigint", "199800")
    );
    let plan = async |conn: &mut diesel_async::AsyncPgConnection| -> String {
        diesel::sql_query(&explain)
            .load::<Plan>(conn)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.line)
            .collect::<Vec<_>>()
            .join("\n")
    };
    // What an ordinary connection plans here: the case the relay's session rules out.
    let plain_plan = plan(&mut plain).await;
    assert!(plain_plan.contains("Gather"), "precondition: {plain_plan}");
    let settings = worker::service::changes::relay::RelaySettings {
        database_url: db.url.clone(),
        timeouts: worker::service::db::Timeouts::default(),
        batch: 100,
        poll: Duration::from_secs(1),
        confirm_timeout: Duration::from_secs(5),
        retention: worker::service::changes::prune::Retention {
            changes: Duration::from_secs(3600),
            processed_events: Duration::from_secs(3600),
        },
    };
    let mut relay = worker::service::changes::relay::connect(&settings)
        .await
        .unwrap();
    let relay_plan = plan(&mut relay).await;
    assert!(!relay_plan.contains("Gather"), "{relay_plan}");
    assert!(relay_plan.contains("changes_pkey"), "{relay_plan}");
    drop((plain, relay));
    db.drop_db().await;
}
