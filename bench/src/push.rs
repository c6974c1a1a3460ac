//! Push delivery against the stream: an onboarding's changes (one organization, three changes a
//! user: provisioned, roles changed, groups changed) committed before a worker starts; its
//! relay publishes them to the stream while its delivery leader pushes them to an endpoint that
//! answers in 5 ms, in the same process at the same time, with the defaults (batch 100). The
//! row is each one's changes/s and their ratio.

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use serde::Serialize;
use std::time::{Duration, Instant};
use testkit::receiver::Receiver;
use testkit::stack::{SECRET, Stack};

#[derive(Debug, Clone, Serialize, Default)]
pub struct Onboarding {
    pub users: usize,
    pub changes: i64,
    pub endpoint_latency_ms: f64,
    pub relay_seconds: f64,
    pub push_seconds: f64,
    /// B_http: one client posting signed batches of 100 such changes back to back to the same
    /// kind of endpoint (what one organization's strictly sequential delivery could reach).
    pub b_http_per_s: f64,
}

impl Onboarding {
    pub fn relay_per_s(&self) -> f64 {
        self.changes as f64 / self.relay_seconds.max(1e-9)
    }
    pub fn push_per_s(&self) -> f64 {
        self.changes as f64 / self.push_seconds.max(1e-9)
    }
    pub fn describe(&self) -> String {
        format!(
            "{} changes ({} users, one organization): pushed {:.0}/s in {:.1} s, relay {:.0}/s in {:.1} s; push ÷ relay = {:.2}; push ÷ B_http ({:.0}/s) = {:.2}",
            self.changes,
            self.users,
            self.push_per_s(),
            self.push_seconds,
            self.relay_per_s(),
            self.relay_seconds,
            self.push_per_s() / self.relay_per_s(),
            self.b_http_per_s,
            self.push_per_s() / self.b_http_per_s.max(1e-9)
        )
    }
}

/// The outbox rows of `users` users onboarding into one organization, as the worker writes them.
fn onboarding_sql(users: usize) -> String {
    format!(
        "INSERT INTO changes (kind, organization_id, cause_event_id, occurred_at, payload) \
         SELECT k.kind, 'org_onboarding', 'evt_onb_' || u, now(), \
           jsonb_build_object('user', jsonb_build_object('directory_user_id', 'diruser_' || u, \
             'email', 'user' || u || '@example.com', 'given_name', 'Given', 'family_name', 'Family ' || u, \
             'display_name', NULL, 'external_id', '00u' || u, 'active', true, \
             'roles', jsonb_build_array('member'), 'groups', jsonb_build_array('dirgroup_all'))) \
           || CASE k.kind WHEN 'user.roles_changed' THEN '{{\"granted\": [\"member\"], \"revoked\": []}}'::jsonb \
                          WHEN 'user.groups_changed' THEN '{{\"joined\": [\"dirgroup_all\"], \"left\": []}}'::jsonb \
                          ELSE '{{}}'::jsonb END \
         FROM generate_series(1, {users}) u, \
              (VALUES (1, 'user.provisioned'), (2, 'user.groups_changed'), (3, 'user.roles_changed')) k(n, kind) \
         ORDER BY u, k.n"
    )
}

/// B_http: signed batches of 100 changes posted back to back (one in flight) to an endpoint
/// answering after `latency`; changes per second.
pub async fn b_http(latency: Duration, requests: usize) -> anyhow::Result<f64> {
    let receiver = Receiver::start(SECRET, latency).await;
    let secret: shared::WebhookSecret = SECRET.parse()?;
    let change = serde_json::json!({"id": "chg_0123456789abcdef0123456789abcdef", "seq": 1,
        "kind": "user.roles_changed", "organization_id": "org_onboarding",
        "cause_event_id": "evt_onb_1", "occurred_at": "2026-12-06T00:00:00Z",
        "committed_at": "2026-12-06T00:00:00.001Z",
        "user": {"directory_user_id": "diruser_1", "email": "user1@example.com", "given_name": "Given",
                 "family_name": "Family 1", "display_name": null, "external_id": "00u1", "active": true,
                 "roles": ["member"], "groups": ["dirgroup_all"]},
        "granted": ["member"], "revoked": []});
    let changes: Vec<serde_json::Value> = (1..=100)
        .map(|i| {
            let mut c = change.clone();
            c["seq"] = i.into();
            c
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "changes": changes }))?;
    let client = reqwest::Client::new();
    let started = Instant::now();
    for i in 0..requests {
        let id = format!("batch_{i}");
        let now = chrono::Utc::now().timestamp();
        let r = client
            .post(&receiver.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", shared::sign(&secret, &id, now, &body))
            .body(body.clone())
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "B_http: {}", r.status());
    }
    let rate = (requests * 100) as f64 / started.elapsed().as_secs_f64();
    receiver.stop().await;
    Ok(rate)
}

pub async fn onboarding(users: usize, latency: Duration) -> anyhow::Result<Onboarding> {
    let b_http_per_s = b_http(latency, 500).await?;
    let mut stack = Stack::new("benchpush").await?;
    // The default configuration: the deprovisioning brake on.
    stack.brake_off = false;
    let receiver = Receiver::start_on(stack.push_port, SECRET, latency).await;
    let mut conn = AsyncPgConnection::establish(&stack.db.url).await?;
    conn.batch_execute(&onboarding_sql(users)).await?;
    conn.batch_execute("ANALYZE changes").await?;
    let changes = super::count(&mut conn, "SELECT count(*) AS n FROM changes").await?;
    let started = Instant::now();
    // With the defaults; `CHANGES_WEBHOOK_BATCH=300 cargo run …` tries another batch.
    stack.start_worker().await?;
    let (mut relay, mut push) = (None, None);
    while relay.is_none() || push.is_none() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "not delivered within 900 s (relay {relay:?}, push {push:?})"
        );
        if relay.is_none()
            && super::count(
                &mut conn,
                "SELECT COALESCE((SELECT published_through FROM change_relay), 0) AS n",
            )
            .await?
                >= changes
        {
            relay = Some(started.elapsed());
        }
        if push.is_none() && i64::try_from(receiver.changes_taken()).unwrap_or(i64::MAX) >= changes
        {
            push = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let order = receiver.check(
        &[(
            "org_onboarding".to_owned(),
            (1..=changes).collect::<Vec<i64>>(),
        )]
        .into_iter()
        .collect(),
    );
    anyhow::ensure!(order.is_ok(), "push delivery: {order:?}");
    receiver.stop().await;
    stack.teardown().await;
    Ok(Onboarding {
        users,
        changes,
        endpoint_latency_ms: latency.as_secs_f64() * 1000.0,
        relay_seconds: relay.map_or(0.0, |d| d.as_secs_f64()),
        push_seconds: push.map_or(0.0, |d| d.as_secs_f64()),
        b_http_per_s,
    })
}

/// The drain as an onboarding (its events are one organization's new users): when its last
/// change reached the stream and when it reached the application (an endpoint answering in
/// 5 ms), both from the worker's start.
#[derive(Debug, Clone, Serialize, Default)]
pub struct DrainReach {
    pub changes: i64,
    pub stream_seconds: f64,
    pub app_seconds: f64,
}

impl DrainReach {
    pub fn describe(&self) -> String {
        format!(
            "{} changes: on the stream after {:.1} s, at the application after {:.1} s (application ÷ stream = {:.2})",
            self.changes,
            self.stream_seconds,
            self.app_seconds,
            self.app_seconds / self.stream_seconds.max(1e-9)
        )
    }
}

/// Waits until `receiver` took `changes` changes; seconds since `started`.
pub async fn wait_taken(
    receiver: &Receiver,
    changes: i64,
    started: Instant,
) -> anyhow::Result<f64> {
    while i64::try_from(receiver.changes_taken()).unwrap_or(i64::MAX) < changes {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1200),
            "push delivery did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed().as_secs_f64())
}
