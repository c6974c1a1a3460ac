//! A sync deactivates whoever the listing did not show, so it must trust a listing only when it
//! is complete and the API behaves: each hostile or broken answer of a fake Directory API ends
//! the sync with a clear error and deactivates nobody. A complete listing afterwards does
//! deactivate (the checks can fail).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::fake_scalekit::{self, FakeScalekit, Script};
use support::syncer::syncer;
use testkit::env::Env;
use testkit::wait_until;
use testkit::worker::*;
use worker::service::sync::progress::Progress;
use worker::service::sync::{ClientError, Incomplete, SyncError};

const ORG: &str = "org_guard";
const DIR: &str = "dir_guard";
const GROUP: &str = "dirgroup_guard";

/// A hostile answer: its name, the fake's script, extra options, and the error it must end in.
type Case = (
    &'static str,
    Script,
    &'static [&'static str],
    fn(&SyncError) -> bool,
);

fn users(n: usize) -> Vec<serde_json::Value> {
    (0..n).map(|i| fake_scalekit::user(i, GROUP)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_or_hostile_listing_deactivates_nobody() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let fake = FakeScalekit::start(
        ORG,
        DIR,
        users(90),
        vec![fake_scalekit::group(GROUP, "Guarded")],
        Script::default(),
    )
    .await;
    let other = FakeScalekit::start("org_x", "dir_x", vec![], vec![], Script::default()).await;
    let w = spawn_worker(&broker.prefix, &db.url, &[]).await;
    let active = || async {
        db.count("SELECT count(*) AS n FROM directory_users WHERE active")
            .await
    };

    // Token lifetimes that are absurd: a 0 or u64::MAX `expires_in` neither panics nor fetches
    // a token per call (one token for the whole sync of 4 pages).
    for reported in [0, u64::MAX] {
        fake.set_script(Script {
            expires_in_reported: Some(reported),
            ..Script::default()
        });
        let calls_before = fake.state.lock().unwrap().token_calls;
        let (s, link) = syncer(broker, db, &fake, &[]).await;
        let summary = s.sync_org(ORG, None, &mut Progress::quiet()).await;
        let summary = summary.unwrap_or_else(|e| panic!("expires_in {reported}: {e}"));
        assert_eq!(summary.seen, 90);
        let calls = fake.state.lock().unwrap().token_calls - calls_before;
        assert_eq!(calls, 1, "expires_in {reported}: one token for the sync");
        link.close().await;
    }
    assert!(wait_until(Duration::from_secs(30), || async { active().await == 90 }).await);

    // From now on the directory lists 60 users: a sync that trusted a broken listing would
    // deactivate the other 30.
    fake.set_users(users(60));
    let cases: Vec<Case> = vec![
        (
            "an empty page with a next token",
            Script {
                empty_page_with_token_from: Some(1),
                ..Script::default()
            },
            &[],
            |e| {
                matches!(
                    e,
                    SyncError::Incomplete(Incomplete::EmptyPageWithToken { page: 2, .. })
                )
            },
        ),
        (
            "a token seen before",
            Script {
                repeat_token_from: Some(1),
                ..Script::default()
            },
            &[],
            |e| matches!(e, SyncError::Incomplete(Incomplete::RepeatedToken { .. })),
        ),
        (
            "more pages than SYNC_MAX_PAGES",
            Script::default(),
            &["--sync-max-pages", "1"],
            |e| {
                matches!(
                    e,
                    SyncError::Incomplete(Incomplete::TooManyPages { max: 1, .. })
                )
            },
        ),
        (
            "a count that disagrees with total_size",
            Script {
                total_size_delta: 1,
                ..Script::default()
            },
            &[],
            |e| {
                matches!(
                    e,
                    SyncError::Incomplete(Incomplete::CountMismatch {
                        listed: 60,
                        total: 61,
                        ..
                    })
                )
            },
        ),
        (
            "a body over the cap",
            Script {
                body_bytes_from: Some((1, 9 * 1024 * 1024)),
                ..Script::default()
            },
            &[],
            |e| matches!(e, SyncError::Client(ClientError::BodyTooLarge)),
        ),
        (
            "Retry-After: 1000000000",
            Script {
                retry_after_always: Some("1000000000"),
                ..Script::default()
            },
            &[],
            |e| matches!(e, SyncError::Client(ClientError::RetryAfterTooLong(_))),
        ),
        (
            "a 307 from /oauth/token to another host",
            Script {
                redirect_token_to: Some(format!("{}/oauth/token", other.url)),
                ..Script::default()
            },
            &[],
            |e| {
                matches!(
                    e,
                    SyncError::Client(ClientError::Redirect { status: 307, .. })
                )
            },
        ),
    ];
    for (name, script, extra, expected) in cases {
        fake.set_script(script);
        let (s, link) = syncer(broker, db, &fake, extra).await;
        let started = std::time::Instant::now();
        let err = s
            .sync_org(ORG, None, &mut Progress::quiet())
            .await
            .expect_err(name);
        assert!(expected(&err), "{name}: unexpected error {err}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name}: failed fast"
        );
        link.close().await;
    }
    assert_eq!(
        other.state.lock().unwrap().token_calls,
        0,
        "the client secret never went to the redirect target"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(active().await, 90, "nothing deactivated");
    assert_eq!(
        db.count("SELECT count(*) AS n FROM processed_events WHERE event_type = 'user_deleted'")
            .await,
        0
    );

    // A complete listing of the same 60 users: the 30 others are deactivated.
    fake.set_script(Script::default());
    let (s, link) = syncer(broker, db, &fake, &[]).await;
    let summary = s.sync_org(ORG, None, &mut Progress::quiet()).await.unwrap();
    assert_eq!((summary.seen, summary.deactivated), (60, 30));
    assert!(wait_until(Duration::from_secs(30), || async { active().await == 60 }).await);

    link.close().await;
    w.stop().await;
    fake.stop().await;
    other.stop().await;
    env.finish().await;
}

/// A sync told to stop (`worker sync` on SIGTERM, a stopping worker's scheduled sync) stops
/// before its next page, deactivates nobody and is recorded `cancelled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_sync_ends_at_the_next_page_and_deactivates_nobody() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let fake = FakeScalekit::start(ORG, DIR, users(90), vec![], Script::default()).await;
    let w = spawn_worker(&broker.prefix, &db.url, &[]).await;
    let active = || async {
        db.count("SELECT count(*) AS n FROM directory_users WHERE active")
            .await
    };
    let cancelled = || async {
        db.count("SELECT count(*) AS n FROM sync_runs WHERE outcome = 'cancelled'")
            .await
    };
    let pages = || fake.state.lock().unwrap().user_page_requests;
    let (s, link) = syncer(broker, db, &fake, &[]).await;
    s.sync_org(ORG, None, &mut Progress::quiet()).await.unwrap();
    link.close().await;
    assert!(wait_until(Duration::from_secs(30), || async { active().await == 90 }).await);
    // Now a slow listing of 60 users: finished, it would deactivate 30.
    fake.set_users(users(60));
    fake.set_script(Script {
        page_delay: Some(Duration::from_millis(800)),
        ..Script::default()
    });

    // `worker sync`: its stop token is cancelled by SIGTERM.
    let (mut s, link) = syncer(broker, db, &fake, &[]).await;
    let stop = tokio_util::sync::CancellationToken::new();
    s.stop = stop.clone();
    let before = pages();
    let sync = tokio::spawn(async move { s.sync_org(ORG, None, &mut Progress::quiet()).await });
    assert!(wait_until(Duration::from_secs(10), || async { pages() > before }).await);
    stop.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), sync)
        .await
        .expect("the sync stops without waiting for its listing")
        .unwrap();
    assert!(matches!(result, Err(SyncError::Cancelled)), "{result:?}");
    assert!(
        pages() <= before + 2,
        "stopped at the next page: {} pages read",
        pages() - before
    );
    assert_eq!(cancelled().await, 1);
    link.close().await;

    // A worker stopping while a sync it started runs (on `directory_enabled`, through the
    // scheduler that also runs the `SYNC_INTERVAL` syncs). It is the only consumer now.
    w.stop().await;
    let creds = fake.options();
    let scheduled = spawn_worker(&broker.prefix, &db.url, &creds).await;
    let before = pages();
    let enabled = serde_json::json!({
        "spec_version": "1", "id": "evt_dir_on", "type": "organization.directory_enabled",
        "occurred_at": "2025-01-01T00:00:00Z", "environment_id": "env_1", "organization_id": ORG,
        "object": "Directory", "data": {"id": DIR, "organization_id": ORG, "provider": "OKTA", "enabled": true}
    });
    broker.publish(&serde_json::to_vec(&enabled).unwrap()).await;
    assert!(wait_until(Duration::from_secs(15), || async { pages() > before }).await);
    scheduled.stop().await;
    assert!(
        pages() <= before + 2,
        "stopped at the next page: {} pages read",
        pages() - before
    );
    assert_eq!(
        cancelled().await,
        2,
        "the worker's sync is recorded cancelled"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(active().await, 90, "nothing deactivated");
    fake.stop().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_path_segments_not_paths() {
    // An organization id with a slash and a query character reaches the fake encoded: the fake
    // knows no such organization, so the call is a clean "no directory", not another endpoint.
    let env = Env::new().await;
    let fake = FakeScalekit::start(ORG, DIR, users(1), vec![], Script::default()).await;
    let (s, link) = syncer(&env.broker, &env.db, &fake, &[]).await;
    let odd = format!("{ORG}/directories/{DIR}/users?x=#");
    let err = s
        .sync_org(&odd, None, &mut Progress::quiet())
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::NoDirectory(_)), "{err}");
    assert_eq!(fake.state.lock().unwrap().directory_lookups, [odd]);
    link.close().await;
    fake.stop().await;
    env.finish().await;
}
