//! Open-loop load against the real ingest, and the worker draining a pre-filled queue.

use super::{event_body, percentile};
use serde::Serialize;
use shared::WebhookSecret;
use shared::testkit::signed_headers;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct RateStep {
    pub offered_per_s: f64,
    pub accepted_per_s: f64,
    pub errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Event id and wall-clock time of each 202 (for 2xx → committed latency).
    #[serde(skip)]
    pub accepted_at: Vec<(String, chrono::DateTime<chrono::Utc>)>,
}

/// (event id, body, signed headers)
type Prepared = (String, Vec<u8>, Vec<(String, String)>);

/// Offers `rate` signed webhooks per second for `duration`, whatever the answers (open loop):
/// latency is measured from each request's scheduled start, so queueing shows.
pub async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    secret: &WebhookSecret,
    rate: f64,
    duration: Duration,
    id_base: usize,
) -> RateStep {
    let n = (rate * duration.as_secs_f64()) as usize;
    // Bodies and signatures are prepared before the clock starts: the generator shares the
    // machine with what it measures, so it should spend its time sending.
    let prepared: Vec<Prepared> = (0..n)
        .map(|i| {
            let body = event_body(id_base + i, "org_bench");
            let headers = signed_headers(secret, &format!("msg_bench_{}", id_base + i), &body);
            (format!("evt_bench_{:09}", id_base + i), body, headers)
        })
        .collect();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (id, body, headers)) in prepared.into_iter().enumerate() {
        let at = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        tokio::time::sleep_until(at).await;
        let mut req = client.post(url).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        tasks.spawn(async move {
            let ok = matches!(req.send().await, Ok(r) if r.status().as_u16() == 202);
            (
                ok,
                at.elapsed().as_secs_f64() * 1000.0,
                id,
                chrono::Utc::now(),
            )
        });
    }
    let mut ms = Vec::with_capacity(n);
    let mut accepted_at = Vec::with_capacity(n);
    let mut errors = 0;
    while let Some(Ok((ok, l, id, when))) = tasks.join_next().await {
        if ok {
            ms.push(l);
            accepted_at.push((id, when));
        } else {
            errors += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    ms.sort_by(f64::total_cmp);
    RateStep {
        offered_per_s: rate,
        accepted_per_s: ms.len() as f64 / elapsed,
        errors,
        p50_ms: percentile(&ms, 0.5),
        p99_ms: percentile(&ms, 0.99),
        accepted_at,
    }
}

/// Steps the offered rate up until p99 ≥ `p99_limit_ms` or errors appear; returns all steps.
pub async fn find_max_rate(
    client: &reqwest::Client,
    url: &str,
    secret: &WebhookSecret,
    rates: &[f64],
    step: Duration,
    p99_limit_ms: f64,
) -> Vec<RateStep> {
    let mut out = Vec::new();
    let mut base = 1_000_000;
    for &rate in rates {
        let s = open_loop(client, url, secret, rate, step, base).await;
        base += 1_000_000;
        eprintln!(
            "  ingest @ {rate:>6.0}/s: accepted {:>7.0}/s  p50 {:>6.1} ms  p99 {:>6.1} ms  errors {}",
            s.accepted_per_s, s.p50_ms, s.p99_ms, s.errors
        );
        let over = s.p99_ms >= p99_limit_ms || s.errors > 0;
        out.push(s);
        if over {
            break;
        }
    }
    out
}

/// The highest offered rate whose p99 stayed under the limit with no errors.
pub fn max_sustained(steps: &[RateStep], p99_limit_ms: f64) -> Option<&RateStep> {
    steps
        .iter()
        .filter(|s| s.p99_ms < p99_limit_ms && s.errors == 0)
        .max_by(|a, b| a.accepted_per_s.total_cmp(&b.accepted_per_s))
}

/// Waits until `done()` reports `n` and returns the elapsed time.
pub async fn time_until<F, Fut>(n: i64, mut done: F, timeout: Duration) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let started = Instant::now();
    loop {
        let got = done().await;
        if got >= n {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "only {got} of {n} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
