//! Through the broker: exactly-once under duplicates, poison messages, database outage,
//! graceful stop with work in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use shared::amqp::header_str;
use std::time::Duration;
use testkit::env::Env;
use testkit::fixture;
use testkit::wait_until;
use testkit::worker::*;

fn user_created(i: usize) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("03_user_created.json")).unwrap();
    v["id"] = format!("evt_user_{i}").into();
    v["data"]["id"] = format!("diruser_{i}").into();
    v["data"]["email"] = format!("user{i}@example.com").into();
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_applied_once() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let n = 200;
    let mut bodies: Vec<Vec<u8>> = (0..n).map(user_created).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..n / 5 {
        let dup = bodies[rng.random_range(0..n)].clone();
        bodies.push(dup);
    }
    bodies.shuffle(&mut rng);
    for b in &bodies {
        broker.publish(b).await;
    }
    let w = spawn_worker(&broker.prefix, &db.url, &[]).await;
    let done = wait_until(Duration::from_secs(30), || async {
        db.count("SELECT count(*) AS n FROM processed_events").await == n as i64
            && broker.apply_depth().await == 0
    })
    .await;
    assert!(done, "all events processed");
    assert_eq!(
        db.count("SELECT count(*) AS n FROM directory_users WHERE active")
            .await,
        n as i64
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_log WHERE entity_type = 'user'")
            .await,
        n as i64,
        "each user changed exactly once"
    );
    let metrics = testkit::metrics(&reqwest::Client::new(), &w.base)
        .await
        .unwrap();
    assert!(metrics.contains(r#"scim_worker_events_total{type="organization.directory.user_created",outcome="applied"} 200"#), "{metrics}");
    assert!(metrics.contains(r#"outcome="duplicate"} 40"#), "{metrics}");
    let ready = reqwest::get(format!("{}/readyz", w.base)).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        reqwest::get(format!("{}/healthz", w.base))
            .await
            .unwrap()
            .status(),
        200
    );
    w.stop().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_and_others_flow() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let w = spawn_worker(&broker.prefix, &db.url, &[]).await;
    broker.publish(b"{not json").await;
    // Valid envelope, but a user event without a user id.
    let mut invalid: serde_json::Value =
        serde_json::from_slice(&fixture("03_user_created.json")).unwrap();
    invalid["id"] = "evt_invalid".into();
    invalid["data"].as_object_mut().unwrap().remove("id");
    broker.publish(&serde_json::to_vec(&invalid).unwrap()).await;
    for i in 0..10 {
        broker.publish(&user_created(i)).await;
    }
    let dead_q = broker.topology.dead_queue();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            db.count("SELECT count(*) AS n FROM processed_events").await == 10
        })
        .await
    );
    let first = broker
        .tap
        .get(&dead_q, Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    let second = broker
        .tap
        .get(&dead_q, Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    let mut reasons = vec![
        header_str(&first.delivery.properties, "x-dead-reason")
            .unwrap()
            .to_owned(),
        header_str(&second.delivery.properties, "x-dead-reason")
            .unwrap()
            .to_owned(),
    ];
    reasons.sort();
    assert_eq!(reasons, ["invalid", "malformed"]);
    assert!(header_str(&first.delivery.properties, "x-dead-error").is_some_and(|e| !e.is_empty()));
    assert!(first.delivery.data == b"{not json" || second.delivery.data == b"{not json");
    w.stop().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_goes_to_retry_tiers_then_applies() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let proxy = testkit::TcpProxy::start("127.0.0.1:5432".parse().unwrap())
        .await
        .unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port(), db.name);
    let w = spawn_worker(&broker.prefix, &url, &["--database-pool-size", "2"]).await;
    for i in 0..5 {
        broker.publish(&user_created(i)).await;
    }
    assert!(
        wait_until(Duration::from_secs(20), || async {
            db.count("SELECT count(*) AS n FROM processed_events").await == 5
        })
        .await
    );
    proxy.cut().await;
    for i in 5..25 {
        broker.publish(&user_created(i)).await;
    }
    // While the database is away, messages wait in the retry tiers, never in the DLQ.
    assert!(
        wait_until(Duration::from_secs(30), || async {
            w.metrics.render().contains(r#"outcome="retried""#)
        })
        .await,
        "{}",
        w.metrics.render()
    );
    assert_eq!(broker.dead_depth().await, 0);
    let ready = reqwest::get(format!("{}/readyz", w.base)).await.unwrap();
    assert_eq!(ready.status(), 503, "not ready without the database");
    proxy.restore().await.unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || async {
            db.count("SELECT count(*) AS n FROM processed_events").await == 25
        })
        .await,
        "everything applied once the database is back"
    );
    assert_eq!(broker.dead_depth().await, 0);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM directory_users").await,
        25
    );
    w.stop().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_work_in_flight_loses_nothing_and_applies_once() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let n = 600;
    for i in 0..n {
        broker.publish(&user_created(i)).await;
    }
    // Small batches, so a stop lands mid-stream with batches in flight.
    let w = spawn_worker(
        &broker.prefix,
        &db.url,
        &[
            "--concurrency",
            "4",
            "--batch-size",
            "4",
            "--prefetch",
            "32",
        ],
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            db.count("SELECT count(*) AS n FROM processed_events").await >= 30
        })
        .await
    );
    w.stop().await; // what SIGTERM does
    let after_stop = db.count("SELECT count(*) AS n FROM processed_events").await;
    assert!(after_stop < n as i64, "stopped mid-stream ({after_stop})");
    let w = spawn_worker(&broker.prefix, &db.url, &[]).await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            db.count("SELECT count(*) AS n FROM processed_events").await == n as i64
        })
        .await
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_log").await,
        n as i64,
        "no double apply"
    );
    assert_eq!(broker.apply_depth().await, 0);
    w.stop().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_never_back_means_retries_exhausted() {
    let broker = Broker::new().await;
    // Nothing listens here: every apply fails transiently.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("postgres://postgres@{unused}/none");
    let w = spawn_worker(&broker.prefix, &url, &["--retry-tiers", "1s,2s"]).await;
    broker.publish(&user_created(1)).await;
    let dead = broker
        .tap
        .get(&broker.topology.dead_queue(), Duration::from_secs(90))
        .await
        .unwrap();
    let dead = dead.expect("dead-lettered after the last tier");
    let p = &dead.delivery.properties;
    assert_eq!(header_str(p, "x-dead-reason"), Some("retries_exhausted"));
    assert_eq!(shared::amqp::header_u32(p, "x-retry-count"), 2);
    assert_eq!(dead.delivery.data, user_created(1));
    w.stop().await;
    broker.cleanup().await;
}
