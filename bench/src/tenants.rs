//! Many tenants on one deployment, with the default configuration (brake on):
//! - **brake cost**: an update-heavy drain (20 organizations of 1,500 users in 0–3 of 4 groups,
//!   then 50,000 updates, deactivations and deletions) with the brake at its default against
//!   the same drain with `DEPROVISION_BRAKE_PERCENT=0`, in the same run;
//! - **deprovisioning under backlog**: 20 deprovisionings sent through ingest, spread over the
//!   first seconds of a drain of 60,000 queued events of other organizations: 2xx → committed;
//! - **fair share**: another organization's `user_created` sent through ingest while a worker
//!   drains a 100,000-event onboarding burst, routed as ingest routes one (its first
//!   `INGEST_FAIR_BURST` events to the apply queue, the rest to the bulk queue): 2xx → committed;
//! - retries under plain load (`scim_worker_retries_total`, every cause), for all of them.

use crate::baseline::{Message, pipelined};
use diesel_async::AsyncConnection;
use lapin::options::ConfirmSelectOptions;
use rand::prelude::*;
use serde_json::json;
use shared::amqp::{declare_topology, properties};
use shared::lane::{EnvelopeRoute, Lane, lane};
use shared::{MessageMeta, Source, Topology};
use std::time::{Duration, Instant};
use testkit::stack::Stack;

const GROUPS: usize = 4;

/// A user event body of `org` for user `u`.
fn user_body(
    id: &str,
    org: &str,
    u: usize,
    kind: &str,
    active: bool,
    groups: &[usize],
    v: usize,
) -> Vec<u8> {
    let groups: Vec<_> = groups
        .iter()
        .map(|g| json!({"id": format!("dirgroup_{org}_{g}"), "name": format!("Team {g}")}))
        .collect();
    serde_json::to_vec(&json!({
        "spec_version": "1", "id": id, "type": format!("organization.directory.{kind}"),
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "environment_id": "env_bench", "organization_id": org, "object": "DirectoryUser",
        "data": {"id": format!("diruser_{org}_{u:05}"), "organization_id": org, "active": active,
                 "email": format!("user{u}.{v}@{org}.example.com"), "given_name": format!("Given{v}"),
                 "family_name": format!("Family{u}"), "groups": groups,
                 "roles": [{"role_name": "member"}]}
    }))
    .unwrap_or_default()
}

fn group_body(org: &str, g: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "spec_version": "1", "id": format!("evt_{org}_g{g}"), "type": "organization.directory.group_created",
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "environment_id": "env_bench", "organization_id": org, "object": "DirectoryGroup",
        "data": {"id": format!("dirgroup_{org}_{g}"), "organization_id": org,
                 "display_name": format!("Team {g}")}
    }))
    .unwrap_or_default()
}

/// The setup (groups, then every user created) and the update phase of `orgs` organizations
/// of `users` users, on random users: `deprovisions` percent of the events deprovision (two
/// thirds deactivations, `active: false`, one third deletions), the rest are updates (groups
/// and profile change; an update of a deactivated user reactivates it).
pub fn update_heavy(
    orgs: usize,
    users: usize,
    updates: usize,
    deprovisions: u32,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut rng = StdRng::seed_from_u64(30);
    let names: Vec<String> = (0..orgs).map(|o| format!("org_t{o:03}")).collect();
    let mut setup = Vec::new();
    for org in &names {
        for g in 0..GROUPS {
            setup.push(group_body(org, g));
        }
    }
    let pick = |rng: &mut StdRng| -> Vec<usize> {
        let n = rng.random_range(0..=3);
        (0..GROUPS)
            .collect::<Vec<_>>()
            .choose_multiple(rng, n)
            .copied()
            .collect()
    };
    for org in &names {
        for u in 0..users {
            let groups = pick(&mut rng);
            let id = format!("evt_{org}_c{u:05}");
            setup.push(user_body(&id, org, u, "user_created", true, &groups, 0));
        }
    }
    let mut phase = Vec::with_capacity(updates);
    for i in 0..updates {
        let org = &names[rng.random_range(0..orgs)];
        let u = rng.random_range(0..users);
        let id = format!("evt_{org}_u{i:06}");
        let groups = pick(&mut rng);
        let roll = rng.random_range(0..300u32);
        let body = match roll {
            r if r >= deprovisions * 3 => user_body(&id, org, u, "user_updated", true, &groups, i),
            r if r >= deprovisions => user_body(&id, org, u, "user_updated", false, &groups, i),
            _ => serde_json::to_vec(&json!({
                "spec_version": "1", "id": id, "type": "organization.directory.user_deleted",
                "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                "environment_id": "env_bench", "organization_id": org, "object": "DirectoryUser",
                "data": {"id": format!("diruser_{org}_{u:05}"), "organization_id": org}
            }))
            .unwrap_or_default(),
        };
        phase.push(body);
    }
    (setup, phase)
}

/// The message ingest would publish for `body`: its exchange (the urgent one for
/// deprovisionings), routing key and headers.
fn message(topology: &Topology, body: &[u8]) -> Message {
    let Ok(env) = serde_json::from_slice::<EnvelopeRoute>(body) else {
        return (
            topology.exchange(),
            "malformed".into(),
            body.to_vec(),
            Default::default(),
        );
    };
    let meta = MessageMeta::of_envelope(&env, Source::Webhook)
        .with_webhook_id(format!("msg_{}", env.id.as_str()));
    let exchange = match lane(&env.event_type, env.data) {
        Lane::Urgent => topology.urgent_exchange(),
        Lane::Bulk => topology.bulk_exchange(),
        Lane::Apply => topology.exchange(),
    };
    (
        exchange,
        env.event_type.clone(),
        body.to_vec(),
        properties(&meta),
    )
}

/// Publishes `bodies` as ingest would (confirmed, 256 in flight).
pub async fn publish(url: &str, topology: &Topology, bodies: &[Vec<u8>]) -> anyhow::Result<()> {
    let conn = shared::amqp::connect(url, "bench-tenants").await?;
    declare_topology(&conn, topology).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    pipelined(&ch, bodies.len(), 256, |i| message(topology, &bodies[i])).await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

async fn processed(stack: &Stack) -> i64 {
    stack
        .count("SELECT count(*) AS n FROM processed_events")
        .await
        .unwrap_or(-1)
}

/// Every `scim_worker_retries_total` sample of the stack's workers, summed.
async fn retries(stack: &Stack) -> f64 {
    let mut total = 0.0;
    for w in &stack.workers {
        let base = format!("http://127.0.0.1:{}", w.port);
        if let Ok(m) = testkit::metrics(&stack.client, &base).await {
            total += m
                .lines()
                .filter(|l| l.starts_with("scim_worker_retries_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
    }
    total
}

/// One drain of the update phase.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Drain {
    pub brake: bool,
    /// Percent of the update phase that deprovisions.
    pub deprovisions: u32,
    pub events: usize,
    pub seconds: f64,
    pub retries: f64,
    pub held: i64,
}

impl Drain {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

/// The update-heavy drain with the brake at its default (`brake`) or off, `deprovisions`
/// percent of its events deprovisioning: 5 keeps every organization far from the brake's
/// threshold (about 8 % of its users in the window, against 20 %); 15 brings them to it.
pub async fn drain(brake: bool, deprovisions: u32) -> anyhow::Result<Drain> {
    let (setup, phase) = update_heavy(20, 1500, 50_000, deprovisions);
    let mut stack = Stack::new(if brake { "brakeon" } else { "brakeoff" }).await?;
    stack.brake_off = !brake;
    stack.declare_topology().await?;
    stack.start_worker().await?;
    publish(&stack.amqp, &stack.topology, &setup).await?;
    let n = i64::try_from(setup.len())?;
    crate::load::time_until(n, || processed(&stack), Duration::from_secs(600)).await?;
    if let Some(mut w) = stack.workers.pop() {
        w.terminate(Duration::from_secs(30)).await;
    }
    publish(&stack.amqp, &stack.topology, &phase).await?;
    let started = Instant::now();
    stack.start_worker().await?;
    let total = n + i64::try_from(phase.len())?;
    crate::load::time_until(total, || processed(&stack), Duration::from_secs(900)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let drain = Drain {
        brake,
        deprovisions,
        events: phase.len(),
        seconds,
        retries: retries(&stack).await,
        held: stack
            .count("SELECT count(*) AS n FROM held_events")
            .await
            .unwrap_or(-1),
    };
    stack.teardown().await;
    Ok(drain)
}

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
        let mut req = stack.client.post(stack.webhook_url()).body(body.clone());
        for (k, v) in testkit::signed_headers(secret, &format!("msg_{id}"), &body) {
            req = req.header(k, v);
        }
        let answer = req.send().await?;
        anyhow::ensure!(answer.status().is_success(), "{}", answer.status());
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

/// Waits until every id is in `processed_events`, polling every 20 ms: when each was first
/// seen.
async fn seen_at(
    db_url: String,
    ids: Vec<String>,
) -> anyhow::Result<std::collections::HashMap<String, Instant>> {
    let mut seen: std::collections::HashMap<String, Instant> = Default::default();
    let mut conn = diesel_async::AsyncPgConnection::establish(&db_url).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen.len() < ids.len() {
        anyhow::ensure!(Instant::now() < deadline, "events not applied in 300 s");
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::Text)]
            event_id: String,
        }
        let rows: Vec<Id> = diesel_async::RunQueryDsl::load(
            diesel::sql_query("SELECT event_id FROM processed_events WHERE event_id = ANY($1)")
                .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&ids),
            &mut conn,
        )
        .await?;
        let now = Instant::now();
        for r in rows {
            seen.entry(r.event_id).or_insert(now);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(seen)
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
    let mut bulk = stack.topology.clone();
    let conn = shared::amqp::connect(&stack.amqp, "bench-fair").await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let rest = &bodies[allowance..];
    pipelined(&ch, rest.len(), 256, |i| {
        let (_, key, body, props) = message(&bulk, &rest[i]);
        (bulk.bulk_exchange(), key, body, props)
    })
    .await?;
    let _ = conn.close(200, "done".into()).await;
    bulk = stack.topology.clone();
    let tap = testkit::RabbitTap::connect(&stack.amqp).await?;
    stack.start_worker().await?;
    let ids: Vec<String> = (0..5).map(|k| format!("evt_other_{k}")).collect();
    let poller = tokio::spawn(seen_at(stack.db.url.clone(), ids.clone()));
    let mut sent = Vec::new();
    let mut queued = u32::MAX;
    for (k, id) in ids.iter().enumerate() {
        let org = format!("org_other{k}");
        let body = user_body(id, &org, k, "user_created", true, &[], 0);
        let mut req = stack.client.post(stack.webhook_url()).body(body.clone());
        for (h, v) in testkit::signed_headers(secret, &format!("msg_{id}"), &body) {
            req = req.header(h, v);
        }
        let answer = req.send().await?;
        anyhow::ensure!(answer.status().is_success(), "{}", answer.status());
        sent.push((id.clone(), Instant::now()));
        let depth = tap.depth(&bulk.apply_queue()).await? + tap.depth(&bulk.bulk_queue()).await?;
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
