//! Many tenants on one deployment, with the default configuration (brake on):
//! - **brake cost**: an update-heavy drain (20 organizations of 1,500 users in 0–3 of 4 groups,
//!   then 50,000 updates, deactivations and deletions) with the brake at its default against
//!   the same drain with `DEPROVISION_BRAKE_PERCENT=0`, in the same run;
//! - **deprovisioning under backlog**: 20 deprovisionings sent through ingest, spread over the
//!   first seconds of a drain of 80,000 queued events of other organizations: 2xx → committed;
//! - **fair share**: another organization's `user_created` sent through ingest while a worker
//!   drains a 100,000-event onboarding burst, routed as ingest routes one (its first
//!   `INGEST_FAIR_BURST` events to the apply queue, the rest to the bulk queue): 2xx → committed;
//! - retries under plain load (`scim_worker_retries_total`, every cause), for all of them.

mod corpus;
mod drain;
mod fair;
mod overtake;

pub use corpus::{publish, update_heavy};
pub use drain::{Drain, drain};
pub use fair::{Fair, fair};
pub use overtake::{Overtake, overtake};

use diesel_async::AsyncConnection;
use std::time::{Duration, Instant};
use testkit::stack::Stack;

/// Events of other organizations queued before the deprovisionings: enough that at least
/// 50,000 are still queued when the last of them is sent (60,000 left 44,022 once PostgreSQL
/// ran with autovacuum, the drain being faster).
const BACKLOG: usize = 80_000;

pub(super) async fn processed(stack: &Stack) -> i64 {
    stack
        .count("SELECT count(*) AS n FROM processed_events")
        .await
        .unwrap_or(-1)
}

/// Every `scim_worker_retries_total` sample of the stack's workers, summed.
pub(super) async fn retries(stack: &Stack) -> f64 {
    stack.worker_retries().await
}

/// Sends `body` to the stack's ingest, signed as Scalekit signs, and requires a 2xx.
pub(super) async fn post_signed(
    stack: &Stack,
    secret: &shared::WebhookSecret,
    id: &str,
    body: Vec<u8>,
) -> anyhow::Result<()> {
    let mut req = stack.client.post(stack.webhook_url()).body(body.clone());
    for (k, v) in testkit::signed_headers(secret, &format!("msg_{id}"), &body) {
        req = req.header(k, v);
    }
    let answer = req.send().await?;
    anyhow::ensure!(answer.status().is_success(), "{}", answer.status());
    Ok(())
}

/// Waits until every id is in `processed_events`, polling every 20 ms: when each was first
/// seen.
pub(super) async fn seen_at(
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

/// The tenants rows: the brake's cost on an update-heavy drain (on ÷ off, same run, far from and
/// at the threshold), deprovisionings overtaking 80,000 queued events of other organizations,
/// and provisioning during another organization's 100,000-event burst.
pub async fn rows(secret: &shared::WebhookSecret) -> anyhow::Result<Vec<crate::report::Row>> {
    use crate::report::row;
    eprintln!("tenants: update-heavy drain (5 % deprovisioning), brake at its default, then off");
    let on = drain(true, 5).await?;
    eprintln!(
        "  brake on: {:.0} events/s, {} held, {} retries",
        on.rate(),
        on.held,
        on.retries
    );
    let off = drain(false, 5).await?;
    eprintln!(
        "  brake off: {:.0} events/s, {} retries",
        off.rate(),
        off.retries
    );
    eprintln!("tenants: the same at 15 % deprovisioning (organizations at the brake's threshold)");
    let near_on = drain(true, 15).await?;
    let near_off = drain(false, 15).await?;
    eprintln!(
        "  brake on: {:.0} events/s ({} held), off: {:.0} events/s",
        near_on.rate(),
        near_on.held,
        near_off.rate()
    );
    eprintln!("tenants: deprovisionings behind 80,000 queued events of other organizations");
    let overtake = overtake(secret, BACKLOG).await?;
    eprintln!("  {}", overtake.describe());
    eprintln!("tenants: other organizations' provisioning during a 100,000-event burst");
    let fair = fair(secret, 100_000).await?;
    eprintln!("  {}", fair.describe());
    let retries = [&on, &off, &near_on, &near_off]
        .iter()
        .map(|d| d.retries)
        .sum::<f64>()
        + overtake.retries
        + fair.retries;
    anyhow::ensure!(
        retries == 0.0,
        "{retries} events went to a retry tier under plain load (scim_worker_retries_total)"
    );
    Ok(vec![
        row(
            "update-heavy drain, brake on ÷ off",
            format!(
                "{:.2} ({:.0} ÷ {:.0} events/s)",
                on.rate() / off.rate(),
                on.rate(),
                off.rate()
            ),
            "20 organizations × 1,500 users, then 50,000 updates, 5 % of them deprovisioning (far from the threshold); target ≥ 0.9",
        ),
        row(
            "the same, organizations at the brake's threshold",
            format!(
                "{:.2} ({:.0} ÷ {:.0} events/s, {} held)",
                near_on.rate() / near_off.rate(),
                near_on.rate(),
                near_off.rate(),
                near_on.held
            ),
            "15 % deprovisioning: batches near the threshold count under the lock, one after the other (by design)",
        ),
        row(
            "retries under plain load",
            format!(
                "{} (brake on), {} (off), {} (overtake)",
                on.retries, off.retries, overtake.retries
            ),
            "scim_worker_retries_total, every cause; target 0",
        ),
        row(
            "deprovisioning 2xx → committed, behind a backlog",
            format!(
                "p50 {:.0} ms, p99 {:.0} ms (≥ {} queued)",
                overtake.p50_ms, overtake.p99_ms, overtake.least_queued
            ),
            "20 user_deleted through ingest while 80,000 events of 19 other organizations drain; target p99 ≤ 1 s",
        ),
        row(
            "provisioning during another organization's burst, 2xx → committed",
            format!(
                "p50 {:.0} ms, max {:.0} ms (≥ {} of {} queued)",
                fair.p50_ms, fair.max_ms, fair.queued, fair.burst
            ),
            "5 user_created of other organizations through ingest while a 100,000-event onboarding (routed as ingest routes it) drains",
        ),
    ])
}

/// `BENCH_ONLY=brake` (the four drains), `fair` (the burst and backlog rows) or `tenants` (all
/// of the rows): runs it and returns `true`; any other mode, `false`.
pub async fn only(mode: &str, secret: &shared::WebhookSecret) -> anyhow::Result<bool> {
    match mode {
        "brake" => {
            for deprovisions in [5, 15] {
                for brake in [true, false] {
                    let d = drain(brake, deprovisions).await?;
                    println!(
                        "{deprovisions} % deprovisioning, brake {}: {:.0} events/s, {} held, {} retries",
                        if brake { "on" } else { "off" },
                        d.rate(),
                        d.held,
                        d.retries
                    );
                }
            }
        }
        "fair" => {
            println!("{}", fair(secret, 100_000).await?.describe());
            println!("{}", overtake(secret, BACKLOG).await?.describe());
        }
        "tenants" => {
            for r in rows(secret).await? {
                println!("| {} | {} | {} |", r.metric, r.value, r.note);
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}
