//! End to end over the real binaries: a generated stream of several thousand events over many
//! organizations, 10 % duplicates, shuffled, sent like Scalekit → the database ends exactly in
//! the state an independent in-order model computes, the change feed rebuilds it, and the
//! three example applications converge to it: the Rust one on the stream, the Python one on
//! the pull API, the Node one on pushed changes (each organization's in `seq` order).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;
use testkit::stack::{Delivery, Stack, send_all};
use tests::corpus::{delivery_order, generate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_stream_with_duplicates_reaches_the_modelled_end_state() {
    let corpus = generate(42, 20, 30, 3000);
    assert!(corpus.distinct_ids >= 3000);
    let mut stack = Stack::new("e2e").await.unwrap();
    stack.start_worker().await.unwrap();
    stack.start_ingest().await.unwrap();
    let apps = tests::app::start_all(&stack).await.unwrap();
    let bodies = delivery_order(&corpus.events, 0.10, 7);
    let stats = Arc::new(Delivery::default());
    send_all(
        &stack.client,
        &stack.webhook_url(),
        bodies.clone(),
        32,
        Arc::clone(&stats),
    )
    .await
    .unwrap();
    assert_eq!(
        stats.accepted.load(std::sync::atomic::Ordering::Relaxed),
        bodies.len()
    );
    stack
        .wait_processed(corpus.distinct_ids, Duration::from_secs(180))
        .await
        .unwrap();
    let mut got = stack.tables().await.unwrap();
    tests::corpus::sort(&mut got);
    assert_eq!(got.directories, corpus.expected.directories);
    assert_eq!(got.groups, corpus.expected.groups);
    assert_eq!(got.users.len(), corpus.expected.users.len());
    for (g, e) in got.users.iter().zip(&corpus.expected.users) {
        assert_eq!(g, e);
    }
    assert_eq!(got.memberships, corpus.expected.memberships);
    assert_eq!(got.roles, corpus.expected.roles);
    // No fault injected: no event may have gone to a retry tier (our own locks included).
    for w in &stack.workers {
        let m = testkit::metrics(&stack.client, &format!("http://127.0.0.1:{}", w.port))
            .await
            .unwrap();
        let retries: Vec<&str> = m
            .lines()
            .filter(|l| l.starts_with("scim_worker_retries_total{"))
            .collect();
        assert!(!retries.is_empty(), "the retries counter is exported: {m}");
        for line in retries {
            assert!(line.ends_with(" 0"), "retried under plain load: {line}");
        }
    }
    let ignored = stack
        .count("SELECT count(*) AS n FROM processed_events WHERE outcome = 'ignored'")
        .await
        .unwrap();
    assert!(ignored > 0, "unknown types are recorded as ignored");
    let validator = jsonschema::validator_for(&tests::feed_check::schema()).unwrap();
    let report =
        tests::feed_check::check_feed(&stack, |m| validator.validate(m).map_err(|e| e.to_string()))
            .await
            .unwrap();
    assert_eq!(report.republished, 0, "no fault, no re-publish");
    let kinds: std::collections::BTreeSet<&str> =
        report.changes.iter().map(|c| c.kind.as_str()).collect();
    for k in [
        "user.provisioned",
        "user.deprovisioned",
        "user.roles_changed",
        "group.deleted",
    ] {
        assert!(kinds.contains(k), "the corpus makes {k}: {kinds:?}");
    }
    for mut app in apps {
        app.converged(&stack.db).await.unwrap();
        app.stop().await.unwrap();
    }
    stack.teardown().await;
}
