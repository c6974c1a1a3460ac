//! Push delivery against a real worker and an endpoint that verifies with the reference
//! `standardwebhooks` crate: every change, signed (rotation: each secret signs), in batches of
//! one organization in `seq` order; failures retried with the same `webhook-id` and never
//! skipped; kinds filtered per endpoint; an endpoint failing too long paused; the operator's
//! pause, resume and replay; a new leader resuming from the stored positions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use support::dlq::worker_cmd;
use testkit::env::Env;
use testkit::receiver::{Mode, Receiver};
use testkit::worker::*;
use testkit::{OLD_SECRET, SECRET, wait_until};

fn user(i: usize, org: &str, active: bool) -> Vec<u8> {
    let kind = if active { "created" } else { "updated" };
    serde_json::to_vec(&json!({
        "spec_version": "1", "id": format!("evt_push_{org}_{i}_{active}"),
        "type": format!("organization.directory.user_{kind}"), "object": "DirectoryUser",
        "environment_id": "env_1", "organization_id": org,
        "occurred_at": if active { "2026-01-01T00:00:00Z" } else { "2026-01-02T00:00:00Z" },
        "data": {"id": format!("diruser_{i}"), "organization_id": org, "active": active,
                 "email": format!("u{i}@example.com"), "dp_id": format!("00u{i}")}
    }))
    .unwrap()
}

/// Each organization's `seq` of the changes of these kinds (all when empty), in order.
async fn outbox(db: &testkit::db::TestDb, kinds: &[&str]) -> BTreeMap<String, Vec<i64>> {
    let mut want: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for row in support::changes::outbox(db).await {
        if kinds.is_empty() || kinds.contains(&row.kind.as_str()) {
            want.entry(row.organization_id.clone())
                .or_default()
                .push(row.seq);
        }
    }
    want
}

async fn endpoints(db: &testkit::db::TestDb, broker: &Broker, args: &[&str]) -> (bool, String) {
    let mut all = vec!["endpoints"];
    all.extend_from_slice(args);
    all.extend(["--database-url", &db.url]);
    let out = worker_cmd(broker, &all).output().await.unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn list(db: &testkit::db::TestDb, broker: &Broker) -> Vec<Value> {
    let (ok, out) = endpoints(db, broker, &["list", "--json"]).await;
    assert!(ok, "{out}");
    serde_json::from_str(&out).unwrap()
}

/// Publishes the users' events and waits until the worker applied them.
async fn publish_users(
    db: &testkit::db::TestDb,
    broker: &Broker,
    range: std::ops::Range<usize>,
    active: bool,
) {
    let before = db.count("SELECT count(*) AS n FROM processed_events").await;
    let n = i64::try_from(range.len()).unwrap();
    for i in range {
        broker
            .publish(&user(i, &format!("org_{}", i % 4), active))
            .await;
    }
    assert!(
        wait_until(Duration::from_secs(20), || async {
            db.count("SELECT count(*) AS n FROM processed_events").await == before + n
        })
        .await
    );
}

async fn wait_delivered(r: &Receiver, db: &testkit::db::TestDb, kinds: &[&str]) -> usize {
    let done = wait_until(Duration::from_secs(40), || async {
        r.check(&outbox(db, kinds).await).is_ok()
    })
    .await;
    let again = r.check(&outbox(db, kinds).await);
    if !done {
        let status: Vec<(String, i64)> = {
            #[derive(diesel::QueryableByName)]
            struct P {
                #[diesel(sql_type = diesel::sql_types::Text)]
                organization_id: String,
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                delivered_through: i64,
            }
            let rows: Vec<P> = diesel_async::RunQueryDsl::load(
                diesel::sql_query("SELECT organization_id, delivered_through FROM change_endpoint_positions ORDER BY 1"),
                &mut db.connect().await,
            )
            .await
            .unwrap();
            rows.into_iter()
                .map(|p| (p.organization_id, p.delivered_through))
                .collect()
        };
        let floor = db
            .count("SELECT scanned_through AS n FROM change_endpoints")
            .await;
        panic!(
            "{again:?}; positions {status:?}; floor {floor}; taken {:?}",
            r.taken()
        );
    }
    again.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_reaches_the_endpoint_signed_in_order_and_failures_are_retried_not_skipped() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let app = Receiver::start(SECRET, Duration::ZERO).await;
    let audit = Receiver::start(SECRET, Duration::ZERO).await;
    let file = std::env::temp_dir().join(format!("{}-endpoints.toml", broker.prefix));
    std::fs::write(
        &file,
        format!(
            "[[endpoint]]\nname = \"audit\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\nkinds = [\"user.deprovisioned\"]\n",
            audit.url
        ),
    )
    .unwrap();
    let secrets = format!("{OLD_SECRET},{SECRET}");
    let w = spawn_worker(
        &broker.prefix,
        &db.url,
        &[
            "--changes-webhook-url",
            &app.url,
            "--changes-webhook-secret",
            &secrets,
            "--changes-webhook-batch",
            "5",
            "--changes-webhooks-file",
            file.to_str().unwrap(),
        ],
    )
    .await;
    publish_users(db, broker, 0..40, true).await;
    assert_eq!(wait_delivered(&app, db, &[]).await, 0, "nothing twice");
    let taken = app.taken();
    assert!(
        taken.iter().all(|t| t.seqs.len() <= 5),
        "batches of at most 5"
    );
    assert!(
        taken.len() >= 8,
        "40 changes in batches of 5: {}",
        taken.len()
    );
    let first = &taken[0];
    assert_eq!(
        first.webhook_id,
        format!(
            "batch_{}_{}_{}",
            first.seqs[0],
            first.seqs.last().unwrap(),
            first.organization_id
        )
    );

    // The application fails for a while: the same batch is retried (same id), nothing after it
    // is sent for that organization, and nothing is skipped once it answers again.
    app.set_mode(Mode::Fail(500));
    let attempts = app.attempts();
    publish_users(db, broker, 0..8, false).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            app.attempts() >= attempts + 8
        })
        .await,
        "retries"
    );
    let status = list(db, broker).await;
    let default = status.iter().find(|e| e["name"] == "default").unwrap();
    assert_eq!(default["last_status"], "HTTP 500", "{default}");
    assert!(default["failing_since"].is_string(), "{default}");
    assert!(default["lag_changes"].as_i64().unwrap() >= 8, "{default}");
    let ids = app.ids()[attempts..].to_vec();
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &ids {
        *per_id.entry(id).or_default() += 1;
    }
    assert!(
        per_id.len() <= 4 && per_id.values().any(|n| *n >= 2),
        "one batch per organization, retried under its id: {per_id:?}"
    );
    app.set_mode(Mode::Accept);
    wait_delivered(&app, db, &[]).await;
    // The filtered endpoint had only the deprovisionings, in order.
    wait_delivered(&audit, db, &["user.deprovisioned"]).await;
    assert_eq!(audit.distinct(), 8);
    let status = list(db, broker).await;
    let default = status.iter().find(|e| e["name"] == "default").unwrap();
    assert_eq!(default["lag_changes"], 0, "{default}");
    assert!(default["failing_since"].is_null(), "{default}");
    let text = testkit::metrics(&reqwest::Client::new(), &w.base)
        .await
        .unwrap();
    assert!(
        text.contains("scim_changes_webhook_failed_attempts_total{endpoint=\"default\"}"),
        "{text}"
    );
    assert_eq!(
        testkit::sample(
            &text,
            "scim_changes_webhook_delivered_total{endpoint=\"default\"}"
        ),
        Some(app.distinct() as f64)
    );
    w.stop().await;
    std::fs::remove_file(&file).unwrap();
    app.stop().await;
    audit.stop().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_pause_resume_and_replay_and_a_failing_endpoint_pauses_itself() {
    if std::env::var("E2E_LOG").is_ok() {
        shared::telemetry::init(shared::telemetry::LogFormat::Pretty);
    }
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let app = Receiver::start(SECRET, Duration::ZERO).await;
    let w = spawn_worker(
        &broker.prefix,
        &db.url,
        &[
            "--changes-webhook-url",
            &app.url,
            "--changes-webhook-secret",
            SECRET,
            "--changes-webhook-pause-after",
            "3s",
        ],
    )
    .await;
    publish_users(db, broker, 0..12, true).await;
    wait_delivered(&app, db, &[]).await;

    let (ok, out) = endpoints(db, broker, &["pause", "default"]).await;
    assert!(ok, "{out}");
    let (ok, out) = endpoints(db, broker, &["pause", "nope"]).await;
    assert!(!ok && out.contains("no endpoint named"), "{out}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = app.attempts();
    publish_users(db, broker, 12..16, true).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.attempts(), before, "a paused endpoint gets nothing");
    let status = list(db, broker).await;
    assert!(status[0]["paused_at"].is_string(), "{}", status[0]);
    assert_eq!(status[0]["lag_changes"], 4, "{}", status[0]);
    let (ok, text) = endpoints(db, broker, &["list"]).await;
    assert!(ok && text.contains("paused by an operator"), "{text}");
    let (ok, out) = endpoints(db, broker, &["resume", "default"]).await;
    assert!(ok, "{out}");
    assert_eq!(wait_delivered(&app, db, &[]).await, 0);

    // Replay: every change again, in order.
    let distinct = app.distinct();
    let (ok, out) = endpoints(db, broker, &["replay", "default", "--from-seq", "1"]).await;
    assert!(ok, "{out}");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            app.check(&outbox(db, &[]).await).ok() == Some(distinct)
        })
        .await,
        "every change twice: {:?}",
        app.check(&outbox(db, &[]).await)
    );
    // A replay below what retention kept is refused.
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE change_relay SET pruned_through = 3"),
        &mut db.connect().await,
    )
    .await
    .unwrap();
    let (ok, out) = endpoints(db, broker, &["replay", "default", "--from-seq", "2"]).await;
    assert!(!ok && out.contains("replay from 4"), "{out}");

    // Failing longer than the pause-after bound: paused, said in the list and the metric.
    app.set_mode(Mode::Fail(503));
    publish_users(db, broker, 0..4, false).await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            list(db, broker).await[0]["paused_at"].is_string()
        })
        .await
    );
    let status = list(db, broker).await;
    let reason = status[0]["paused_reason"].as_str().unwrap();
    assert!(
        reason.contains("HTTP 503") && reason.contains("CHANGES_WEBHOOK_PAUSE_AFTER"),
        "{reason}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || async {
            testkit::sample(
                &testkit::metrics(&reqwest::Client::new(), &w.base)
                    .await
                    .unwrap(),
                "scim_changes_webhook_paused{endpoint=\"default\"}",
            ) == Some(1.0)
        })
        .await
    );
    app.set_mode(Mode::Accept);
    let (ok, out) = endpoints(db, broker, &["resume", "default"]).await;
    assert!(ok, "{out}");
    wait_delivered(&app, db, &[]).await;
    w.stop().await;
    app.stop().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_resumes_from_the_stored_positions_and_slow_answers_are_sent_again() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let app = Receiver::start(SECRET, Duration::from_millis(20)).await;
    let args = [
        "--changes-webhook-url",
        &app.url,
        "--changes-webhook-secret",
        SECRET,
        "--changes-webhook-batch",
        "3",
        "--changes-webhook-timeout",
        "1s",
    ];
    let first = spawn_worker(&broker.prefix, &db.url, &args).await;
    let second = spawn_worker(&broker.prefix, &db.url, &args).await;
    publish_users(db, broker, 0..40, true).await;
    assert!(wait_until(Duration::from_secs(20), || async { app.distinct() >= 10 }).await);
    let leader_first = testkit::sample(
        &testkit::metrics(&reqwest::Client::new(), &first.base)
            .await
            .unwrap(),
        "scim_changes_webhook_leader",
    ) == Some(1.0);
    let (leader, other) = if leader_first {
        (first, second)
    } else {
        (second, first)
    };
    leader.stop().await;
    wait_delivered(&app, db, &[]).await;
    assert!(
        wait_until(Duration::from_secs(5), || async {
            testkit::sample(
                &testkit::metrics(&reqwest::Client::new(), &other.base)
                    .await
                    .unwrap(),
                "scim_changes_webhook_leader",
            ) == Some(1.0)
        })
        .await
    );

    // An application slower than the timeout: the batch is sent again (and taken twice),
    // nothing is skipped, order holds.
    app.set_mode(Mode::Slow(Duration::from_millis(1500)));
    publish_users(db, broker, 0..4, false).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            app.check(&outbox(db, &[]).await)
                .is_ok_and(|again| again > 0)
        })
        .await,
        "{:?}",
        app.check(&outbox(db, &[]).await)
    );
    app.set_mode(Mode::Accept);
    wait_delivered(&app, db, &[]).await;
    other.stop().await;
    app.stop().await;
    env.finish().await;
}
