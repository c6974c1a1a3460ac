//! A sync never deactivates a user it could not have seen: a user created in the directory
//! while the listing runs (its `user_created` applied mid-listing, absent from the pages
//! already read) stays active, because reconciliation stamps its deactivations with the time
//! the listing started and the newer `user_created` wins.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::fake_scalekit::{self, FakeScalekit, Script};
use support::syncer::syncer;
use testkit::env::Env;
use testkit::wait_until;
use testkit::worker::*;
use worker::service::sync::progress::Progress;

const ORG: &str = "org_midlist";
const DIR: &str = "dir_midlist";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_mid_listing_is_not_deactivated_by_the_sync() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    // 150 users in pages of 30, each page taking 1 s: the listing runs about 6 s.
    let users = (0..150)
        .map(|i| fake_scalekit::user(i, "dirgroup_eng"))
        .collect();
    let fake = FakeScalekit::start(
        ORG,
        DIR,
        users,
        vec![],
        Script {
            page_delay: Some(Duration::from_secs(1)),
            ..Script::default()
        },
    )
    .await;
    let creds = fake.options();
    let w = spawn_worker(&broker.prefix, &db.url, &creds).await;
    let (s, link) = syncer(broker, db, &fake, &[]).await;
    let sync = tokio::spawn(async move {
        let summary = s.sync_org(ORG, Some(DIR), &mut Progress::quiet()).await;
        (summary, s)
    });
    // Mid-listing: the directory gets a new user; its webhook arrives and is applied.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let created = serde_json::json!({
        "spec_version": "1", "id": "evt_new_user", "type": "organization.directory.user_created",
        "occurred_at": chrono::Utc::now().to_rfc3339(), "environment_id": "env_1",
        "organization_id": ORG, "object": "DirectoryUser",
        "data": {"id": "diruser_new", "organization_id": ORG, "directory_id": DIR,
                 "email": "new@example.com", "active": true}
    });
    broker.publish(&serde_json::to_vec(&created).unwrap()).await;
    let new_active = "SELECT count(*) AS n FROM directory_users WHERE directory_user_id = 'diruser_new' AND active";
    assert!(
        wait_until(Duration::from_secs(10), || async {
            db.count(new_active).await == 1
        })
        .await,
        "the new user's webhook is applied"
    );
    assert!(
        !sync.is_finished(),
        "the user_created must land while the listing still runs"
    );
    let (summary, _s) = sync.await.unwrap();
    let summary = summary.unwrap();
    assert_eq!(summary.seen, 150);
    assert_eq!(
        summary.deactivated, 1,
        "the new user was stored active and not listed: the sync sends its deactivation"
    );
    // The deactivation is applied (as stale: older than the user's creation).
    assert!(
        wait_until(Duration::from_secs(20), || async {
            db.count(
                "SELECT count(*) AS n FROM processed_events \
                 WHERE source = 'sync' AND event_type = 'organization.directory.user_deleted'",
            )
            .await
                == 1
        })
        .await,
        "the sync's deactivation was handled"
    );
    assert_eq!(
        db.count(new_active).await,
        1,
        "a user created mid-listing stays active"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM processed_events \
             WHERE source = 'sync' AND event_type = 'organization.directory.user_deleted' AND outcome = 'stale'"
        )
        .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM directory_users WHERE active")
            .await,
        151
    );
    link.close().await;
    w.stop().await;
    fake.stop().await;
    env.finish().await;
}
