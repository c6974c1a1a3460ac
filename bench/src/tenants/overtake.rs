//! Deprovisionings through ingest while other organizations' events are queued.

use super::corpus::user_body;
use super::{post_signed, processed, publish, retries, seen_at};
use serde_json::json;
use std::time::{Duration, Instant};
use testkit::stack::Stack;

/// Deprovisionings sent through ingest while other organizations' events are queued.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Overtake {
    pub backlog: usize,
    /// The apply queue's depth when each deprovisioning was answered 2xx (least of them).
    pub least_queued: u32,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub retries: f64,
}

impl Overtake {
    pub fn describe(&self) -> String {
        format!(
            "{} deprovisionings with ≥ {} events of other organizations queued: 2xx → committed p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {} retries",
            DEPROVISIONINGS, self.least_queued, self.p50_ms, self.p99_ms, self.max_ms, self.retries
        )
    }
}

const DEPROVISIONINGS: usize = 20;

/// 20 deprovisionings of one organization's users through ingest, one every 150 ms, while a
/// worker drains `backlog` queued `user_created` events of 19 other organizations.
pub async fn overtake(secret: &shared::WebhookSecret, backlog: usize) -> anyhow::Result<Overtake> {
    let mut stack = Stack::new("overtake").await?;
    stack.brake_off = false;
    stack.declare_topology().await?;
    stack.start_worker().await?;
    stack.start_ingest().await?;
    let org = "org_offboard";
    let setup: Vec<Vec<u8>> = (0..200)
        .map(|u| {
            user_body(
                &format!("evt_off_c{u}"),
                org,
                u,
                "user_created",
                true,
                &[],
                0,
            )
        })
        .collect();
    publish(&stack.amqp, &stack.topology, &setup).await?;
    crate::load::time_until(200, || processed(&stack), Duration::from_secs(120)).await?;
    if let Some(mut w) = stack.workers.pop() {
        w.terminate(Duration::from_secs(30)).await;
    }
    let others: Vec<Vec<u8>> = (0..backlog)
        .map(|i| {
            let org = format!("org_bulk{:02}", i % 19);
            user_body(
                &format!("evt_bulk_{i:07}"),
                &org,
                i,
                "user_created",
                true,
                &[],
                0,
            )
        })
        .collect();
    publish(&stack.amqp, &stack.topology, &others).await?;
    let tap = testkit::RabbitTap::connect(&stack.amqp).await?;
    stack.start_worker().await?;
    // Committed = seen by a poll every 20 ms (one query for all still pending).
    let ids: Vec<String> = (0..DEPROVISIONINGS)
        .map(|u| format!("evt_off_d{u}"))
        .collect();
    let poller = tokio::spawn(seen_at(stack.db.url.clone(), ids.clone()));
    let mut sent = Vec::new();
    let mut least_queued = u32::MAX;
    for (u, id) in ids.iter().enumerate() {
        let body = serde_json::to_vec(&json!({
            "spec_version": "1", "id": id, "type": "organization.directory.user_deleted",
            "occurred_at": chrono::Utc::now().to_rfc3339(), "environment_id": "env_bench",
            "organization_id": org, "object": "DirectoryUser",
            "data": {"id": format!("diruser_{org}_{u:05}"), "organization_id": org}
        }))?;
        post_signed(&stack, secret, id, body).await?;
        sent.push((id.clone(), Instant::now()));
        least_queued = least_queued.min(tap.depth(&stack.topology.apply_queue()).await?);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let seen = poller.await??;
    let mut ms: Vec<f64> = sent
        .iter()
        .filter_map(|(id, at)| {
            let t = seen.get(id)?;
            Some(t.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let result = Overtake {
        backlog,
        least_queued,
        p50_ms: crate::percentile(&ms, 0.50),
        p99_ms: crate::percentile(&ms, 0.99),
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
        retries: retries(&stack).await,
    };
    stack.teardown().await;
    Ok(result)
}
