//! Open-loop load against the real ingest, and the worker draining a pre-filled queue.

use super::cpu::{CpuUse, Watched};
use super::generator::{self, Job};
use super::{event_body, percentile};
use bytes::Bytes;
use http_body_util::Full;
use serde::Serialize;
use shared::WebhookSecret;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use testkit::{RabbitTap, signed_headers};

#[derive(Debug, Clone, Serialize)]
pub struct RateStep {
    pub offered_per_s: f64,
    pub accepted_per_s: f64,
    pub errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Where the CPU went during the step.
    pub cpu: CpuUse,
    /// Event id and wall-clock time of each 202 (for 2xx → committed latency).
    #[serde(skip)]
    pub accepted_at: Vec<(String, chrono::DateTime<chrono::Utc>)>,
}

/// Keep-alive connections the generator sends over (more than the in-flight requests at the
/// highest rate it offers, so a slow answer does not hold back the next one).
pub const CONNECTIONS: usize = 512;

/// Offers `rate` signed webhooks per second for `duration` to `addr` + `path`, whatever the
/// answers (open loop): latency is measured from each request's scheduled start, so queueing shows.
pub async fn open_loop(
    watched: &Watched,
    addr: SocketAddr,
    path: &str,
    secret: &WebhookSecret,
    rate: f64,
    duration: Duration,
    id_base: usize,
) -> RateStep {
    let n = (rate * duration.as_secs_f64()) as usize;
    offer(watched, addr, path, secret, rate, n, id_base, |i| {
        event_body(i, "org_bench")
    })
    .await
    .0
}

/// Offers `n` signed webhooks (`body(i)` for ids `id_base..`) at `rate` per second; any 2xx
/// counts as accepted. Also returns each accepted request's service time (ms, sorted): from a
/// connection taking it to the answer.
#[allow(clippy::too_many_arguments)]
pub async fn offer(
    watched: &Watched,
    addr: SocketAddr,
    path: &str,
    secret: &WebhookSecret,
    rate: f64,
    n: usize,
    id_base: usize,
    body: impl Fn(usize) -> Vec<u8>,
) -> (RateStep, Vec<f64>) {
    // Bodies, signatures and requests are prepared before the clock starts: the generator
    // shares the machine with what it measures, so it should spend its time sending.
    let jobs: Vec<Job> = (0..n)
        .filter_map(|i| {
            let body = body(id_base + i);
            let headers = signed_headers(secret, &format!("msg_bench_{}", id_base + i), &body);
            let mut req = hyper::Request::post(path).header("host", addr.to_string());
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let request = req.body(Full::new(Bytes::from(body))).ok()?;
            Some(Job {
                id: format!("evt_bench_{:09}", id_base + i),
                request,
            })
        })
        .collect();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let cpu = watched.start();
    let outcomes = generator::run(addr, jobs, interval, CONNECTIONS).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut ms = Vec::with_capacity(n);
    let mut service = Vec::with_capacity(n);
    let mut accepted_at = Vec::with_capacity(n);
    let mut errors = n.saturating_sub(outcomes.len());
    for o in outcomes {
        if o.status.is_some_and(|s| (200..300).contains(&s)) {
            ms.push(o.latency_ms);
            service.push(o.service_ms);
            accepted_at.push((o.id, o.answered_at));
        } else {
            errors += 1;
        }
    }
    ms.sort_by(f64::total_cmp);
    service.sort_by(f64::total_cmp);
    let cpu = cpu.finish(ms.len());
    let step = RateStep {
        offered_per_s: rate,
        accepted_per_s: ms.len() as f64 / elapsed,
        errors,
        p50_ms: percentile(&ms, 0.5),
        p99_ms: percentile(&ms, 0.99),
        cpu,
        accepted_at,
    };
    (step, service)
}

/// Steps the offered rate up until two steps in a row have p99 ≥ `p99_limit_ms` or errors (one
/// bad step can be a pause of the broker's; two in a row is the limit); returns all steps.
/// `step(rate, id_base)` runs one step (`open_loop` against ingest, say). The queue the steps
/// fill is emptied after each (`drain`): every step starts, like B_pub, from an empty queue
/// instead of one holding every earlier step's messages.
pub async fn find_max_rate<F, Fut>(
    label: &str,
    rates: &[f64],
    p99_limit_ms: f64,
    drain: (&RabbitTap, &str),
    mut step: F,
) -> Vec<RateStep>
where
    F: FnMut(f64, usize) -> Fut,
    Fut: std::future::Future<Output = RateStep>,
{
    let mut out = Vec::new();
    let mut base = 1_000_000;
    let mut over_in_a_row = 0;
    for &rate in rates {
        let s = step(rate, base).await;
        base += 1_000_000;
        eprintln!(
            "  {label} @ {rate:>6.0}/s: accepted {:>7.0}/s  p50 {:>6.1} ms  p99 {:>6.1} ms  errors {}  cpu/msg: {}",
            s.accepted_per_s,
            s.p50_ms,
            s.p99_ms,
            s.errors,
            s.cpu.describe()
        );
        let over = s.p99_ms >= p99_limit_ms || s.errors > 0;
        out.push(s);
        let (tap, queue) = drain;
        if let Err(e) = tap
            .channel
            .queue_purge(queue.into(), lapin::options::QueuePurgeOptions::default())
            .await
        {
            eprintln!("  (could not empty {queue}: {e})");
        }
        over_in_a_row = if over { over_in_a_row + 1 } else { 0 };
        if over_in_a_row == 2 {
            break;
        }
    }
    out
}

/// Whether an end-to-end step was sustained: no errors, ingest took (nearly) all that was
/// offered, and the apply queue ended no deeper than a tenth of a second's worth (at least 500:
/// one batch may be between deliveries) above where it started.
pub fn e2e_sustained(step: &RateStep, depth_before: u32, depth_after: u32) -> bool {
    let slack = (step.offered_per_s * 0.1).max(500.0);
    step.errors == 0
        && step.accepted_per_s >= 0.95 * step.offered_per_s
        && f64::from(depth_after) <= f64::from(depth_before) + slack
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
        // Polling is not free (a count over a growing table): 200 ms keeps it out of the way
        // at the cost of up to 200 ms on a drain of many seconds.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: f64, accepted: f64, errors: usize) -> RateStep {
        RateStep {
            offered_per_s: offered,
            accepted_per_s: accepted,
            errors,
            p50_ms: 1.0,
            p99_ms: 2.0,
            cpu: CpuUse::default(),
            accepted_at: Vec::new(),
        }
    }

    #[test]
    fn sustained_needs_the_offer_taken_and_the_queue_flat() {
        assert!(e2e_sustained(&step(6000.0, 5950.0, 0), 0, 300));
        assert!(e2e_sustained(&step(8000.0, 7990.0, 0), 100, 900));
        // The queue grew by more than a tenth of a second's worth.
        assert!(!e2e_sustained(&step(8000.0, 7990.0, 0), 0, 3134));
        // Ingest fell behind the offer: not sustained, whatever the queue did.
        assert!(!e2e_sustained(&step(8000.0, 5941.0, 0), 0, 0));
        assert!(!e2e_sustained(&step(2000.0, 2000.0, 1), 0, 0));
    }
}
