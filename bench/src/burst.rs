//! The burst: `n` `user_created` webhooks for one organization offered as fast as the
//! generator can (512 connections, no pacing) — a directory connected with all its users at
//! once. Measured: time until every request is answered, non-2xx answers, answers slower than
//! Scalekit's 10 s timeout, the service-time percentiles (from a connection taking a request
//! to its answer), and the time until every event is applied and every change published.

use super::cpu::{CpuUse, Watched};
use super::{created_body, load, percentile};
use serde::Serialize;
use shared::WebhookSecret;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Scalekit gives up on an answer after about this long.
pub const SENDER_TIMEOUT_MS: f64 = 10_000.0;

#[derive(Debug, Clone, Serialize)]
pub struct Burst {
    pub webhooks: usize,
    /// Seconds until the last answer.
    pub answered_s: f64,
    pub non_2xx: usize,
    /// 2xx answers that took longer than `SENDER_TIMEOUT_MS` (Scalekit would have given up).
    pub over_timeout: usize,
    pub service_p50_ms: f64,
    pub service_p99_ms: f64,
    /// Seconds until every accepted event was applied.
    pub applied_s: f64,
    /// Seconds until every change was published (designs with a change feed).
    pub published_s: Option<f64>,
    /// From the first request to the last publish, per webhook.
    pub cpu: CpuUse,
}

/// Offers the burst to `addr` and waits for `applied()` to reach the accepted count, then
/// (when given) for `unpublished()` to reach 0.
#[allow(clippy::too_many_arguments)]
pub async fn run<A, AF, U, UF>(
    watched: &Watched,
    addr: SocketAddr,
    path: &str,
    secret: &WebhookSecret,
    n: usize,
    id_base: usize,
    mut applied: A,
    unpublished: Option<U>,
) -> anyhow::Result<Burst>
where
    A: FnMut() -> AF,
    AF: Future<Output = anyhow::Result<i64>>,
    U: FnMut() -> UF,
    UF: Future<Output = anyhow::Result<i64>>,
{
    let cpu = watched.start();
    let started = Instant::now();
    let (step, service) = load::offer(
        &Watched::new(),
        addr,
        path,
        secret,
        1_000_000.0,
        n,
        id_base,
        |i| created_body(i, "org_burst"),
    )
    .await;
    let answered_s = started.elapsed().as_secs_f64();
    let accepted = i64::try_from(n - step.errors).unwrap_or(i64::MAX);
    let deadline = Duration::from_secs(900);
    loop {
        let done = applied().await?;
        if done >= accepted {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < deadline,
            "only {done} of {accepted} applied"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let applied_s = started.elapsed().as_secs_f64();
    let published_s = match unpublished {
        None => None,
        Some(mut left) => {
            while left().await? > 0 {
                anyhow::ensure!(started.elapsed() < deadline, "changes left unpublished");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some(started.elapsed().as_secs_f64())
        }
    };
    Ok(Burst {
        webhooks: n,
        answered_s,
        non_2xx: step.errors,
        over_timeout: service.iter().filter(|ms| **ms > SENDER_TIMEOUT_MS).count(),
        service_p50_ms: percentile(&service, 0.5),
        service_p99_ms: percentile(&service, 0.99),
        applied_s,
        published_s,
        cpu: cpu.finish(n),
    })
}

impl Burst {
    pub fn describe(&self) -> String {
        format!(
            "{} webhooks answered in {:.1} s ({} non-2xx, {} over 10 s; service p50 {:.0} ms, p99 {:.0} ms), applied in {:.1} s{}; cpu/webhook: {}",
            self.webhooks,
            self.answered_s,
            self.non_2xx,
            self.over_timeout,
            self.service_p50_ms,
            self.service_p99_ms,
            self.applied_s,
            self.published_s
                .map_or(String::new(), |p| format!(", published in {p:.1} s")),
            self.cpu.describe()
        )
    }
}
