//! Other organizations' provisioning while one organization's onboarding burst drains.

use super::corpus::{message, user_body};
use super::{post_signed, publish, retries, seen_at};
use crate::baseline::pipelined;
use lapin::options::ConfirmSelectOptions;
use std::time::{Duration, Instant};
use testkit::stack::Stack;

/// Another organization's provisioning during a burst.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fair {
    pub burst: usize,
    /// The burst's events still queued (apply + bulk) when the provisioning was answered.
    pub queued: u32,
    pub p50_ms: f64,
    pub max_ms: f64,
    pub burst_done_at_commit: i64,
    pub retries: f64,
}

impl Fair {
    pub fn describe(&self) -> String {
        format!(
            "5 user_created of other organizations with {} of a {}-event burst queued: 2xx → committed p50 {:.0} ms, max {:.0} ms ({} of the burst applied by the last); {} retries",
            self.queued,
            self.burst,
            self.p50_ms,
            self.max_ms,
            self.burst_done_at_commit,
            self.retries
        )
    }
}

/// 5 `user_created` of 5 other organizations through ingest, one every 200 ms, while a worker
/// drains a `burst`-event onboarding of one organization queued as ingest queues one.
pub async fn fair(secret: &shared::WebhookSecret, burst: usize) -> anyhow::Result<Fair> {
    let mut stack = Stack::new("fair").await?;
    stack.brake_off = false;
    stack.declare_topology().await?;
    stack.start_ingest().await?;
    let bodies: Vec<Vec<u8>> = (0..burst)
        .map(|i| {
            user_body(
                &format!("evt_burst_{i:07}"),
                "org_onboarding",
                i,
                "user_created",
                true,
                &[],
                0,
            )
        })
        .collect();
    // As ingest routes a burst: the organization's allowance to the apply queue, the rest bulk.
    let allowance = 500.min(burst);
    publish(&stack.amqp, &stack.topology, &bodies[..allowance]).await?;
    let topology = stack.topology.clone();
    let conn = shared::amqp::connect(&stack.amqp, "bench-fair").await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let rest = &bodies[allowance..];
    pipelined(&ch, rest.len(), 256, |i| {
        let (_, key, body, props) = message(&topology, &rest[i]);
        (topology.bulk_exchange(), key, body, props)
    })
    .await?;
    let _ = conn.close(200, "done".into()).await;
    let tap = testkit::RabbitTap::connect(&stack.amqp).await?;
    stack.start_worker().await?;
    let ids: Vec<String> = (0..5).map(|k| format!("evt_other_{k}")).collect();
    let poller = tokio::spawn(seen_at(stack.db.url.clone(), ids.clone()));
    let mut sent = Vec::new();
    let mut queued = u32::MAX;
    for (k, id) in ids.iter().enumerate() {
        let org = format!("org_other{k}");
        let body = user_body(id, &org, k, "user_created", true, &[], 0);
        post_signed(&stack, secret, id, body).await?;
        sent.push((id.clone(), Instant::now()));
        let depth =
            tap.depth(&topology.apply_queue()).await? + tap.depth(&topology.bulk_queue()).await?;
        queued = queued.min(depth);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = poller.await??;
    let burst_done_at_commit = stack
        .count(
            "SELECT count(*) AS n FROM processed_events WHERE organization_id = 'org_onboarding'",
        )
        .await
        .unwrap_or(-1);
    let mut ms: Vec<f64> = sent
        .iter()
        .filter_map(|(id, at)| {
            Some(seen.get(id)?.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let result = Fair {
        burst,
        queued,
        p50_ms: crate::percentile(&ms, 0.5),
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
        burst_done_at_commit,
        retries: retries(&stack).await,
    };
    stack.teardown().await;
    Ok(result)
}
