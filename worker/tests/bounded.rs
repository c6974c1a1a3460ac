//! Bounded waiting: a lock held by someone else (here a psql-like session holding a user's row)
//! makes that user's event fail with `lock_timeout` and go to a retry tier; the other users'
//! events flow meanwhile, and the held one is applied once the lock is gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel_async::{AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, TransactionManager};
use serde_json::json;
use std::time::Duration;
use testkit::env::Env;
use testkit::wait_until;
use testkit::worker::*;

fn user(i: usize, name: &str, at: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": format!("evt_{name}_{i:02}"), "type": "organization.directory.user_updated",
        "object": "DirectoryUser", "spec_version": "1", "environment_id": "env_1",
        "organization_id": "org_l", "occurred_at": at,
        "data": {"id": format!("diruser_{i:02}"), "organization_id": "org_l", "active": true,
                 "email": format!("u{i}@example.com"), "given_name": name}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_row_retries_its_event_while_others_flow() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let w = spawn_worker(
        &broker.prefix,
        &db.url,
        &["--database-lock-timeout", "300ms"],
    )
    .await;
    let named = |name: &'static str| async move {
        db.count(&format!(
            "SELECT count(*) AS n FROM directory_users WHERE given_name = '{name}'"
        ))
        .await
    };
    for i in 0..21 {
        broker
            .publish(&user(i, "First", "2026-01-01T10:00:00Z"))
            .await;
    }
    assert!(
        wait_until(Duration::from_secs(20), || async {
            named("First").await == 21
        })
        .await
    );

    // Another session holds user 00's row.
    let mut holder: AsyncPgConnection = db.connect().await;
    AnsiTransactionManager::begin_transaction(&mut holder)
        .await
        .unwrap();
    diesel::sql_query(
        "SELECT 1 FROM directory_users WHERE directory_user_id = 'diruser_00' FOR UPDATE",
    )
    .execute(&mut holder)
    .await
    .unwrap();

    for i in 0..21 {
        broker
            .publish(&user(i, "Second", "2026-01-01T11:00:00Z"))
            .await;
    }
    assert!(
        wait_until(Duration::from_secs(20), || async {
            named("Second").await == 20
        })
        .await,
        "the other 20 users flow while one row is locked"
    );
    assert!(
        wait_until(Duration::from_secs(10), || async {
            w.metrics
                .render()
                .lines()
                .any(|l| l.contains("outcome=\"retried\"") && !l.ends_with(" 0"))
        })
        .await,
        "the locked user's event went to a retry tier"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM directory_users WHERE directory_user_id = 'diruser_00' AND given_name = 'First'"
        )
        .await,
        1
    );

    // The lock goes: the retried event is applied.
    AnsiTransactionManager::rollback_transaction(&mut holder)
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            named("Second").await == 21
        })
        .await
    );
    assert_eq!(broker.dead_depth().await, 0, "nothing dead-lettered");

    w.stop().await;
    env.finish().await;
}

/// `scim_worker_events_total{outcome="retried"}`, summed.
fn retried(w: &TestWorker) -> u64 {
    w.metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("scim_worker_events_total{") && l.contains("outcome=\"retried\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_away_a_batch_goes_to_its_retry_tier_as_a_whole() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let proxy = testkit::TcpProxy::start("127.0.0.1:5432".parse().unwrap())
        .await
        .unwrap();
    let url = db
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port()));
    assert_ne!(url, db.url, "the worker goes through the proxy");
    // Batches of 200 (a byte budget that lets each lane hold them): 400 events are 2 batches.
    let w = spawn_worker(
        &broker.prefix,
        &url,
        &["--batch-size", "200", "--max-inflight-bytes", "4294967296"],
    )
    .await;
    for i in 0..20 {
        broker
            .publish(&user(i, "First", "2026-01-01T10:00:00Z"))
            .await;
    }
    let users = || async { db.count("SELECT count(*) AS n FROM directory_users").await };
    assert!(wait_until(Duration::from_secs(20), || async { users().await == 20 }).await);

    proxy.cut().await;
    for i in 20..420 {
        broker
            .publish(&user(i, "First", "2026-01-01T10:00:00Z"))
            .await;
    }
    // Event by event, each waiting out the pool's 5 s connect timeout, 400 events would take
    // minutes; as whole batches they reach the first retry tier within seconds.
    assert!(
        wait_until(Duration::from_secs(25), || async { retried(&w) >= 400 }).await,
        "retried {} of 400",
        retried(&w)
    );
    proxy.restore().await.unwrap();
    assert!(wait_until(Duration::from_secs(60), || async { users().await == 420 }).await);
    assert_eq!(broker.dead_depth().await, 0, "nothing dead-lettered");
    w.stop().await;
    env.finish().await;
}
