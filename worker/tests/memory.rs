//! In-flight deliveries are bounded in bytes, not only in count: with a queue full of messages
//! of the largest size, the worker's resident memory grows by at most a small multiple of
//! `WORKER_MAX_INFLIGHT_BYTES`; with the byte budget lifted, the same queue makes it hold far
//! more (which shows the load can reveal an unbounded worker).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::options::ConfirmSelectOptions;
use serde_json::json;
use shared::amqp::{Outgoing, declare_topology, properties, settled, start_all};
use shared::{MessageMeta, Source};
use std::time::Duration;
use testkit::RabbitTap;
use testkit::stack::Stack;

const MIB: u64 = 1024 * 1024;
/// Messages in the queue, each with a body just under the largest size.
const MESSAGES: usize = 200;

/// A body of about 1 MiB: an event type the worker does not know (ignored, recorded), so the
/// test measures deliveries rather than what applying them writes.
fn big_event(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "spec_version": "1", "id": format!("evt_big_{i:04}"),
        "type": "organization.directory.memory_probe", "object": "Probe",
        "environment_id": "env_1", "organization_id": "org_m",
        "occurred_at": "2026-01-01T10:00:00Z",
        "data": {"padding": "x".repeat(1_000_000)}
    }))
    .unwrap()
}

async fn prefill(stack: &Stack) {
    let tap = RabbitTap::connect(&stack.amqp).await.unwrap();
    declare_topology(&tap.connection, &stack.topology)
        .await
        .unwrap();
    let ch = tap.connection.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let exchange = stack.topology.exchange();
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(20) {
        let bodies: Vec<(Vec<u8>, MessageMeta)> = chunk
            .iter()
            .map(|&i| {
                let meta = MessageMeta::event(
                    format!("evt_big_{i:04}"),
                    "organization.directory.memory_probe",
                    Some("org_m".to_owned()),
                    Source::Webhook,
                );
                (big_event(i), meta)
            })
            .collect();
        let outgoing = bodies.iter().map(|(body, meta)| Outgoing {
            exchange: &exchange,
            routing_key: "organization.directory.memory_probe",
            body,
            properties: properties(meta),
        });
        for confirm in start_all(&ch, outgoing).await {
            settled(confirm.unwrap()).await.unwrap();
        }
    }
    let _ = tap.connection.close(200, "done".into()).await;
}

/// How much a worker's peak resident memory (MiB) exceeds an idle worker's when it drains the
/// queue of large messages under these settings.
async fn peak_growth_mib(settings: &[(&str, &str)]) -> u64 {
    let mut stack = Stack::new("memory").await.unwrap();
    // An idle worker with the same settings: its peak is the baseline.
    stack.start_worker_with(settings).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = stack.workers[0].peak_rss_kib().unwrap();
    stack.workers[0].terminate(Duration::from_secs(15)).await;
    stack.workers.clear();

    prefill(&stack).await;
    stack.start_worker_with(settings).await.unwrap();
    stack
        .wait_processed(MESSAGES, Duration::from_secs(120))
        .await
        .unwrap();
    let peak = stack.workers[0].peak_rss_kib().unwrap();
    stack.teardown().await;
    peak.saturating_sub(idle) / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_the_largest_messages_stays_within_the_byte_budget() {
    let budget = 16 * MIB;
    let bounded = peak_growth_mib(&[
        ("WORKER_MAX_INFLIGHT_BYTES", &budget.to_string()),
        ("WORKER_MAX_MESSAGE_BYTES", &MIB.to_string()),
    ])
    .await;
    // Lifted: the count prefetch alone (2000) lets the broker hand over the whole queue. How
    // much of it is in the worker at once depends on how far the broker outruns it, which
    // varies from run to run (48 to 159 MiB on this machine): the largest of up to three runs.
    let mut lifted = 0;
    for _ in 0..3 {
        lifted = lifted.max(
            peak_growth_mib(&[
                (
                    "WORKER_MAX_INFLIGHT_BYTES",
                    &(1024 * 1024 * MIB).to_string(),
                ),
                ("WORKER_MAX_MESSAGE_BYTES", &MIB.to_string()),
            ])
            .await,
        );
        if lifted > 3 * budget / MIB {
            break;
        }
    }
    eprintln!("peak growth: {bounded} MiB with a 16 MiB budget, {lifted} MiB without");
    // Deliveries within the budget, plus what parsing a batch copies of them (the envelope's
    // data and the unknown event's raw copy): at most three times the budget.
    assert!(
        bounded <= 3 * budget / MIB,
        "grew {bounded} MiB over a {} MiB budget",
        budget / MIB
    );
    // The same load without the budget must break the bound, or the test could not tell.
    // (159 MiB alone, 89 MiB beside the rest of the suite: the broker outruns the worker less.)
    assert!(
        lifted > 3 * budget / MIB,
        "without the budget the worker grew only {lifted} MiB: the load cannot tell"
    );
}
