//! Directory sync against a fake Scalekit API, end to end through the broker and the worker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};
use support::fake_scalekit::{self, FakeScalekit, Script};
use support::syncer::syncer;
use testkit::db::TestDb;
use testkit::env::Env;
use testkit::wait_until;
use testkit::worker::*;
use worker::service::sync::SyncError;
use worker::service::sync::progress::Progress;

const ORG: &str = "org_sync";
const DIR: &str = "dir_sync";
const GROUP: &str = "dirgroup_eng";

fn users(n: usize) -> Vec<serde_json::Value> {
    (0..n).map(|i| fake_scalekit::user(i, GROUP)).collect()
}

async fn active(db: &TestDb) -> i64 {
    db.count("SELECT count(*) AS n FROM directory_users WHERE active")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_creates_reconciles_and_a_failed_listing_deactivates_nothing() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let script = Script {
        unauthorized_once_at_page: Some(2),
        throttle_once_at_page: Some(3),
        error_once_at_page: Some(4),
        ..Script::default()
    };
    let fake = FakeScalekit::start(
        ORG,
        DIR,
        users(200),
        vec![fake_scalekit::group(GROUP, "Engineering")],
        script,
    )
    .await;
    let w = spawn_worker(&broker.prefix, &db.url, &[]).await;
    let (s, link) = syncer(broker, db, &fake, &["--scalekit-max-retries", "3"]).await;

    // 200 users in 7 pages of 30, through a 401, a 429 (Retry-After: 1) and a 500.
    let started = Instant::now();
    let summary = s.sync_org(ORG, None, &mut Progress::quiet()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(
        (
            summary.seen,
            summary.created,
            summary.deactivated,
            summary.pages
        ),
        (200, 200, 0, 8)
    );
    {
        let st = fake.state.lock().unwrap();
        assert_eq!(st.fired, ["401", "429", "500"]);
        assert_eq!(
            st.token_requests, 2,
            "one token, refreshed once after the 401"
        );
    }
    assert!(
        wait_until(Duration::from_secs(30), || async {
            active(db).await == 200
        })
        .await
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM directory_users WHERE directory_id = 'dir_sync'")
            .await,
        200
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM directory_group_memberships")
            .await,
        200
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM processed_events WHERE source = 'sync'")
            .await,
        201
    );

    // Three users removed from the directory: exactly those three are deactivated.
    let mut remaining = users(200);
    let removed: Vec<String> = [
        remaining.remove(150),
        remaining.remove(70),
        remaining.remove(5),
    ]
    .iter()
    .map(|u| u["id"].as_str().unwrap().to_owned())
    .collect();
    fake.set_users(remaining.clone());
    fake.set_script(Script::default());
    let summary = s
        .sync_org(ORG, Some(DIR), &mut Progress::quiet())
        .await
        .unwrap();
    assert_eq!(
        (summary.seen, summary.unchanged, summary.deactivated),
        (197, 197, 3)
    );
    assert!(
        wait_until(Duration::from_secs(30), || async {
            active(db).await == 197
        })
        .await
    );
    let inactive = db.count(&format!(
            "SELECT count(*) AS n FROM directory_users WHERE NOT active AND directory_user_id IN ('{}')",
            removed.join("','")
        ),
    )
    .await;
    assert_eq!(inactive, 3);

    // A listing that fails part-way deactivates nothing.
    fake.set_users(remaining[..60].to_vec());
    fake.set_script(Script {
        fail_forever_from_page: Some(1),
        ..Script::default()
    });
    let err = s
        .sync_org(ORG, None, &mut Progress::quiet())
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Client(_)), "{err}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(active(db).await, 197, "nothing deactivated");

    // Each run is on record for `worker status`: two that listed and changed users, then the
    // failed one, which the status shows as the directory's last sync.
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM sync_runs WHERE organization_id = 'org_sync' AND directory_id = 'dir_sync' \
             AND ((outcome = 'ok' AND users_listed = 200 AND users_changed = 200) \
               OR (outcome = 'ok' AND users_listed = 197 AND users_changed = 3) \
               OR (outcome = 'failed' AND users_listed IS NULL AND detail LIKE 'Directory API:%'))"
        )
        .await,
        3
    );
    let out = support::succeeded(
        support::dlq::worker_cmd(broker, &["status", "--json"]).env("DATABASE_URL", &db.url),
    )
    .await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let last = &status["syncs"][0];
    assert_eq!(
        (
            &last["organization_id"],
            &last["directory_id"],
            &last["outcome"]
        ),
        (&ORG.into(), &DIR.into(), &"failed".into()),
        "{status}"
    );
    let out = support::dlq::worker_cmd(broker, &["status"])
        .env("DATABASE_URL", &db.url)
        .output()
        .await
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("org_sync/dir_sync: ") && screen.contains("ago) — failed: Directory API:"),
        "{screen}"
    );

    link.close().await;
    w.stop().await;
    fake.stop().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_webhook_wins_over_snapshot_and_directory_enabled_triggers_a_sync() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let fake = FakeScalekit::start(
        ORG,
        DIR,
        users(40),
        vec![],
        Script {
            token_ttl: 2,
            ..Script::default()
        },
    )
    .await;
    let creds = fake.options();
    let w = spawn_worker(&broker.prefix, &db.url, &creds).await;

    // directory_enabled → the worker syncs the directory by itself.
    let enabled = serde_json::json!({
        "spec_version": "1", "id": "evt_dir_on", "type": "organization.directory_enabled",
        "occurred_at": "2025-01-01T00:00:00Z", "environment_id": "env_1", "organization_id": ORG,
        "object": "Directory", "data": {"id": DIR, "organization_id": ORG, "provider": "OKTA", "enabled": true}
    });
    broker.publish(&serde_json::to_vec(&enabled).unwrap()).await;
    assert!(
        wait_until(Duration::from_secs(30), || async { active(db).await == 40 }).await,
        "synced on directory_enabled"
    );

    // A webhook newer than the next snapshot changes user 5's email.
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let update = serde_json::json!({
        "spec_version": "1", "id": "evt_newer", "type": "organization.directory.user_updated",
        "occurred_at": future, "environment_id": "env_1", "organization_id": ORG, "object": "DirectoryUser",
        "data": {"id": "diruser_00005", "organization_id": ORG, "email": "renamed@example.com", "active": true}
    });
    broker.publish(&serde_json::to_vec(&update).unwrap()).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            db.count(
                "SELECT count(*) AS n FROM directory_users WHERE email = 'renamed@example.com'",
            )
            .await
                == 1
        })
        .await
    );
    // Tokens live 2 s here: the client refreshes ahead of expiry instead of failing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The directory changed user 5 too (a new snapshot, not a duplicate of the first one).
    let mut changed = users(40);
    changed[5]["given_name"] = "Changed".into();
    fake.set_users(changed);
    let (s, link) = syncer(broker, db, &fake, &[]).await;
    let summary = s.sync_org(ORG, None, &mut Progress::quiet()).await.unwrap();
    assert_eq!(summary.seen, 40);
    assert!(wait_until(Duration::from_secs(20), || async {
        db.count("SELECT count(*) AS n FROM processed_events WHERE source = 'sync' AND outcome = 'stale'").await >= 1
    })
    .await);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM directory_users WHERE email = 'renamed@example.com'")
            .await,
        1,
        "the newer webhook is not overwritten by the snapshot"
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM directory_users WHERE given_name = 'Changed'")
            .await,
        0
    );
    assert!(
        fake.state.lock().unwrap().token_requests >= 2,
        "token refreshed ahead of expiry"
    );
    let metrics = w.metrics.render();
    assert!(metrics.contains("scim_sync_users_total 40"), "{metrics}");
    link.close().await;
    w.stop().await;
    fake.stop().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_surface_the_scalekit_error() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let fake = FakeScalekit::start(ORG, DIR, users(1), vec![], Script::default()).await;
    let run = cli(
        &broker.prefix,
        &db.url,
        &[
            "--scalekit-environment-url",
            fake.url.as_str(),
            "--scalekit-client-id",
            "wrong",
            "--scalekit-client-secret",
            "wrong",
        ],
    );
    let client =
        worker::service::sync::ScalekitClient::new(run.scalekit.client_config().unwrap()).unwrap();
    let err = shared::Chain(&client.list_directories(ORG).await.unwrap_err()).to_string();
    assert!(err.contains("invalid client credentials"), "{err}");
    assert!(err.contains("16"), "{err}");
    fake.stop().await;
    env.finish().await;
}

/// Not part of the suite (run with `--ignored`): 100,000 users, reports users/s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load test: cargo test -p worker --release --test sync -- --ignored --nocapture"]
async fn sync_of_100k_users() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let fake = FakeScalekit::start(
        ORG,
        DIR,
        users(100_000),
        vec![fake_scalekit::group(GROUP, "Engineering")],
        Script::default(),
    )
    .await;
    let (s, link) = syncer(broker, db, &fake, &[]).await;
    let started = Instant::now();
    let summary = s.sync_org(ORG, None, &mut Progress::quiet()).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sync of {} users in {:.1} s: {:.0} users/s ({} pages)",
        summary.seen,
        secs,
        summary.seen as f64 / secs,
        summary.pages
    );
    assert_eq!(summary.seen, 100_000);
    assert_eq!(broker.apply_depth().await, 100_001);
    link.close().await;
    fake.stop().await;
    env.finish().await;
}
