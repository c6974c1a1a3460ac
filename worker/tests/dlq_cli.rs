//! Dead-letter operations through the real `worker dlq` binary: crash safety and output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::dlq::*;
use testkit::wait_until;
use testkit::worker::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_killed_midway_loses_and_duplicates_nothing_beyond_one_and_rerun_finishes() {
    let broker = Broker::new().await;
    let t = &broker.topology;
    let items: Vec<Dead> = (0..200).map(mixed).collect();
    dead_letter(&broker, &items).await;
    let mut child = worker_cmd(&broker, &["dlq", "replay", "--rate", "100/s"])
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            broker.tap.depth(&t.apply_queue()).await.unwrap() >= 40
        })
        .await
    );
    child.kill().await.unwrap(); // SIGKILL
    let _ = child.wait().await;
    // The killed connection's held messages return to the DLQ.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            let dead = broker.tap.depth(&t.dead_queue()).await.unwrap();
            let applied = broker.tap.depth(&t.apply_queue()).await.unwrap();
            dead + applied >= 200
        })
        .await
    );
    let dead = broker.tap.depth(&t.dead_queue()).await.unwrap();
    let replayed = broker.tap.depth(&t.apply_queue()).await.unwrap();
    assert!(
        dead < 200 && replayed < 200,
        "killed mid-way ({replayed} replayed)"
    );
    assert!(
        dead + replayed <= 201,
        "at most the one in flight is duplicated ({dead} + {replayed})"
    );

    support::succeeded(worker_cmd(&broker, &["dlq", "replay"])).await;
    assert_eq!(broker.tap.depth(&t.dead_queue()).await.unwrap(), 0);
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    while let Some(m) = broker
        .tap
        .get(&t.apply_queue(), Duration::from_millis(500))
        .await
        .unwrap()
    {
        total += 1;
        seen.insert(
            m.delivery
                .properties
                .message_id()
                .clone()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen.len(), 200, "every message replayed");
    assert!(total <= 201, "{total}");
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_list_show_and_guarded_purge() {
    let broker = Broker::new().await;
    let items: Vec<Dead> = (0..6).map(mixed).collect();
    dead_letter(&broker, &items).await;
    let out = worker_cmd(&broker, &["dlq", "list", "--reason", "invalid"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("EVENT ID")
            && text.contains("evt_dead_0000")
            && text.contains("evt_dead_0003"),
        "{text}"
    );
    assert!(!text.contains("evt_dead_0001"), "{text}");
    assert!(
        text.contains("2 matching of 6") && text.contains("by reason: invalid 2"),
        "{text}"
    );
    let out = worker_cmd(&broker, &["dlq", "list", "--json"])
        .output()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["matching"], 6);
    assert_eq!(json["by_reason"]["malformed"], 2);
    let out = worker_cmd(&broker, &["dlq", "show", "evt_dead_0004"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("reason:          malformed") && text.contains("\"id\": \"evt_dead_0004\""),
        "{text}"
    );
    let out = worker_cmd(&broker, &["dlq", "purge", "--org", "org_1"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "purge refuses without --yes");
    assert!(String::from_utf8_lossy(&out.stdout).contains("would delete evt_dead_0001"));
    assert_eq!(broker.dead_depth().await, 6);
    let out = worker_cmd(&broker, &["dlq", "purge", "--org", "org_1", "--yes"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(broker.dead_depth().await, 5);
    broker.cleanup().await;
}
