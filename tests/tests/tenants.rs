//! Tenants sharing a deployment, over the real binaries (one scenario at a time):
//! - the urgent path: a deprovisioning signed and sent to ingest while 20,000 events of another
//!   organization wait in the apply queue is applied long before that backlog (most of it is
//!   still queued when it commits), exactly once; one that cannot be applied is dead-lettered;
//! - fair share: an organization's onboarding burst sent through ingest goes past its share to
//!   the bulk queue, and another organization's provisioning sent after the burst is applied
//!   before most of it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared::amqp::{Outgoing, properties, start_all};
use shared::{MessageMeta, Source};
use std::sync::Arc;
use std::time::Duration;
use testkit::RabbitTap;
use testkit::stack::{Delivery, Stack, send_all};

const BACKLOG: usize = 20_000;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn user_event(id: &str, org: Option<&str>, kind: &str, data: serde_json::Value) -> Vec<u8> {
    let mut body = json!({
        "spec_version": "1", "id": id, "type": format!("organization.directory.{kind}"),
        "occurred_at": chrono::Utc::now().to_rfc3339(), "environment_id": "env_1",
        "object": "DirectoryUser", "data": data
    });
    if let Some(org) = org {
        body["organization_id"] = org.into();
    }
    serde_json::to_vec(&body).unwrap()
}

/// Waits until `sql` counts 1 (the event's effect is committed), then asserts that fewer than
/// half of `org`'s `total` events were applied by then: the event overtook them.
async fn overtook(stack: &Stack, sql: &str, what: &str, org: &str, total: usize) {
    assert!(
        testkit::wait_until(Duration::from_secs(60), || async {
            stack.count(sql).await.unwrap_or(0) == 1
        })
        .await,
        "{what}"
    );
    let done = stack
        .count(&format!(
            "SELECT count(*) AS n FROM processed_events WHERE organization_id = '{org}'"
        ))
        .await
        .unwrap();
    eprintln!("{what}: {done} of {org}'s {total} events applied by then");
    assert!(
        (done as usize) < total / 2,
        "{what} only after {done} of {org}'s {total} events"
    );
}

/// Organization B's user `diruser_b1`, created.
fn b_created() -> Vec<u8> {
    user_event(
        "evt_b_created",
        Some("org_b"),
        "user_created",
        json!({"id": "diruser_b1", "organization_id": "org_b", "email": "b1@example.com", "active": true}),
    )
}

async fn send(stack: &Stack, bodies: Vec<Vec<u8>>) {
    send_all(
        &stack.client,
        &stack.webhook_url(),
        bodies,
        32,
        Arc::new(Delivery::default()),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deprovisioning_overtakes_another_organizations_backlog() {
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::new("urgent").await.unwrap();
    stack.start_worker().await.unwrap();
    stack.start_ingest().await.unwrap();
    send(&stack, vec![b_created()]).await;
    stack
        .wait_processed(1, Duration::from_secs(30))
        .await
        .unwrap();

    // The worker away, 20,000 events of organization A queue up (published as ingest does).
    let mut old = stack.workers.pop().unwrap();
    old.terminate(Duration::from_secs(10)).await;
    let tap = RabbitTap::connect(&stack.amqp).await.unwrap();
    tap.channel
        .confirm_select(Default::default())
        .await
        .unwrap();
    let exchange = stack.topology.exchange();
    let backlog: Vec<(Vec<u8>, MessageMeta)> = (0..BACKLOG)
        .map(|i| {
            let id = format!("evt_a_{i:05}");
            let body = user_event(
                &id,
                Some("org_a"),
                "user_created",
                json!({"id": format!("diruser_a{i:05}"), "organization_id": "org_a",
                       "email": format!("a{i}@example.com"), "active": true}),
            );
            let meta = MessageMeta::event(
                id,
                "organization.directory.user_created",
                Some("org_a".into()),
                Source::Webhook,
            );
            (body, meta)
        })
        .collect();
    for chunk in backlog.chunks(2000) {
        let confirms = start_all(
            &tap.channel,
            chunk.iter().map(|(body, meta)| Outgoing {
                exchange: &exchange,
                routing_key: "organization.directory.user_created",
                body,
                properties: properties(meta),
            }),
        )
        .await;
        for c in confirms {
            c.unwrap().await.unwrap();
        }
    }
    let apply = stack.topology.apply_queue();
    assert_eq!(tap.depth(&apply).await.unwrap() as usize, BACKLOG);

    // A worker again, and at once organization B offboards its user (and sends one
    // deprovisioning that cannot be applied: no organization).
    stack.start_worker().await.unwrap();
    let deleted = user_event(
        "evt_b_deleted",
        Some("org_b"),
        "user_deleted",
        json!({"id": "diruser_b1", "organization_id": "org_b"}),
    );
    let orphan = user_event(
        "evt_orphan_deleted",
        None,
        "user_deleted",
        json!({"id": "diruser_x"}),
    );
    send(&stack, vec![deleted, orphan]).await;
    let inactive = "SELECT count(*) AS n FROM directory_users WHERE directory_user_id = 'diruser_b1' AND NOT active";
    overtook(
        &stack,
        inactive,
        "the deprovisioning is applied",
        "org_a",
        BACKLOG,
    )
    .await;

    // Everything else still arrives, each event once; the orphan is dead-lettered.
    stack
        .wait_processed(BACKLOG + 2, Duration::from_secs(180))
        .await
        .unwrap();
    assert!(
        tap.wait_depth(&stack.topology.dead_queue(), 1, Duration::from_secs(30))
            .await
            .unwrap()
            >= 1,
        "the deprovisioning that cannot be applied is dead-lettered"
    );
    assert_eq!(
        stack
            .count("SELECT count(*) AS n FROM processed_events WHERE event_id = 'evt_b_deleted' AND outcome = 'applied'")
            .await
            .unwrap(),
        1
    );
    assert_eq!(tap.depth(&stack.topology.urgent_queue()).await.unwrap(), 0);
    let m = testkit::metrics(
        &stack.client,
        &format!("http://127.0.0.1:{}", stack.ingest_port),
    )
    .await
    .unwrap();
    assert_eq!(testkit::sample(&m, "scim_ingest_urgent_total"), Some(2.0));
    drop(old);
    stack.teardown().await;
}

const BURST: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organizations_provisioning_overtakes_an_onboarding_burst() {
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::new("fair").await.unwrap();
    stack.start_worker().await.unwrap();
    stack.start_ingest().await.unwrap();
    // The worker away, organization A's directory is connected: 10,000 user_created at once.
    let mut old = stack.workers.pop().unwrap();
    old.terminate(Duration::from_secs(10)).await;
    let burst: Vec<Vec<u8>> = (0..BURST)
        .map(|i| {
            user_event(
                &format!("evt_a_{i:05}"),
                Some("org_a"),
                "user_created",
                json!({"id": format!("diruser_a{i:05}"), "organization_id": "org_a",
                       "email": format!("a{i}@example.com"), "active": true}),
            )
        })
        .collect();
    send(&stack, burst).await;
    let m = testkit::metrics(
        &stack.client,
        &format!("http://127.0.0.1:{}", stack.ingest_port),
    )
    .await
    .unwrap();
    let bulk = testkit::sample(&m, "scim_ingest_bulk_total").unwrap_or(0.0);
    eprintln!("organization A's burst: {bulk} of {BURST} past its share (bulk queue)");
    assert!(
        bulk >= (BURST / 2) as f64,
        "most of the burst goes to the bulk queue: {bulk}"
    );
    // A worker again, and organization B provisions a user.
    stack.start_worker().await.unwrap();
    send(&stack, vec![b_created()]).await;
    let active = "SELECT count(*) AS n FROM directory_users WHERE directory_user_id = 'diruser_b1' AND active";
    overtook(&stack, active, "B's user is provisioned", "org_a", BURST).await;
    // The burst still arrives whole, each event once.
    stack
        .wait_processed(BURST + 1, Duration::from_secs(180))
        .await
        .unwrap();
    drop(old);
    stack.teardown().await;
}
