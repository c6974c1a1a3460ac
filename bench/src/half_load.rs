//! Freshness under a steady load: webhooks offered at a fixed rate through the real ingest while
//! the worker applies and the relay publishes; then, per event, 2xx → committed (from
//! `processed_events`) and, per change, commit → published (from the outbox).

use super::cpu::Watched;
use super::{load, percentile, relay};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::net::SocketAddr;
use std::time::Duration;

/// Event ids of the steady-load steps start here (`evt_bench_090000000` …), apart from the
/// stepped runs before them; each step takes `id_base` + a range of its own.
pub const ID_BASE: usize = 90_000_000;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Freshness {
    pub rate: f64,
    /// 2xx → committed (p50, p99) in ms, and how many events matched.
    pub commit_p50_ms: f64,
    pub commit_p99_ms: f64,
    pub matched: usize,
    /// Commit → published (p50 ms, p99 ms, changes).
    pub relay: (f64, f64, usize),
}

/// Offers `rate` webhooks/s for `duration`, waits for the pipeline to settle, and reads both
/// latencies from the database.
pub async fn measure(
    watched: &Watched,
    addr: SocketAddr,
    secret: &shared::WebhookSecret,
    db_url: &str,
    rate: f64,
    duration: Duration,
    id_base: usize,
) -> anyhow::Result<Freshness> {
    let step = load::open_loop(
        watched,
        addr,
        ingest::WEBHOOK_PATH,
        secret,
        rate,
        duration,
        id_base,
    )
    .await;
    let n = (rate * duration.as_secs_f64()) as usize;
    let from = format!("evt_bench_{id_base:09}");
    let to = format!("evt_bench_{:09}", id_base + n);
    tokio::time::sleep(Duration::from_secs(3)).await;
    #[derive(diesel::QueryableByName)]
    struct P {
        #[diesel(sql_type = diesel::sql_types::Text)]
        event_id: String,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        processed_at: chrono::DateTime<chrono::Utc>,
    }
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    let rows: Vec<P> = diesel::sql_query(
        "SELECT event_id, processed_at FROM processed_events WHERE event_id >= $1 AND event_id < $2",
    )
    .bind::<diesel::sql_types::Text, _>(&from)
    .bind::<diesel::sql_types::Text, _>(&to)
    .load(&mut conn)
    .await?;
    let at: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>> = rows
        .into_iter()
        .map(|p| (p.event_id, p.processed_at))
        .collect();
    // processed_at is the transaction's start: committed shortly after.
    let mut ms: Vec<f64> = step
        .accepted_at
        .iter()
        .filter_map(|(id, t2xx)| at.get(id).map(|done| *done - *t2xx))
        .map(|d| d.num_microseconds().unwrap_or(0) as f64 / 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    Ok(Freshness {
        rate,
        commit_p50_ms: percentile(&ms, 0.5),
        commit_p99_ms: percentile(&ms, 0.99),
        matched: ms.len(),
        relay: relay::latency(db_url, &from, &to).await?,
    })
}

impl Freshness {
    pub fn describe(&self) -> String {
        format!(
            "at {:.0}/s: 2xx → committed p50 {:.1} ms p99 {:.1} ms ({} events); commit → published p50 {:.1} ms p99 {:.1} ms ({} changes)",
            self.rate,
            self.commit_p50_ms,
            self.commit_p99_ms,
            self.matched,
            self.relay.0,
            self.relay.1,
            self.relay.2
        )
    }
}
