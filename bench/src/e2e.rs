//! Sustained rate of a whole design under the same generator: the pipeline (ingest → broker →
//! worker → change feed) or B_inline (the seed's design). The offered rate steps up, 5 s a
//! step, until a step is not sustained: every request 2xx, at least 95 % of the offer taken,
//! and — for the pipeline — the apply queue no deeper at the end than a tenth of a second's
//! worth (the worker keeps up; see `load::e2e_sustained`).

use super::cpu::Watched;
use super::load::{self, RateStep};
use shared::WebhookSecret;
use std::net::SocketAddr;
use std::time::Duration;

/// The rates tried, in order.
pub const RATES: [f64; 12] = [
    250.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 4000.0, 5000.0, 6000.0, 8000.0, 10000.0,
];

/// The steps run (the last one not sustained) and the best sustained one.
pub struct Stepped {
    pub steps: Vec<RateStep>,
    pub best: Option<RateStep>,
}

/// Steps `RATES` up against `addr`. `watched()` names the processes to account (called at each
/// step: database backends a pool opened since are counted too); `depth()` is the apply
/// queue's depth (`None` for a design without one); ids start at `id_base`, a million apart
/// per step.
#[allow(clippy::too_many_arguments)]
pub async fn step_up<W, F, Fut>(
    label: &str,
    watched: W,
    addr: SocketAddr,
    path: &str,
    secret: &WebhookSecret,
    id_base: usize,
    mut depth: F,
) -> anyhow::Result<Stepped>
where
    W: Fn() -> Watched,
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<u32>>>,
{
    let mut steps = Vec::new();
    let mut best: Option<RateStep> = None;
    let mut base = id_base;
    for rate in RATES {
        let before = depth().await?;
        let s = load::open_loop(
            &watched(),
            addr,
            path,
            secret,
            rate,
            Duration::from_secs(5),
            base,
        )
        .await;
        base += 1_000_000;
        let after = depth().await?;
        let sustained = match (before, after) {
            (Some(b), Some(a)) => load::e2e_sustained(&s, b, a),
            _ => load::e2e_sustained(&s, 0, 0),
        };
        eprintln!(
            "  {label} @ {rate:>5.0}/s: accepted {:>6.0}/s, p99 {:.1} ms, errors {}{} {}  cpu/webhook: {}",
            s.accepted_per_s,
            s.p99_ms,
            s.errors,
            match (before, after) {
                (Some(b), Some(a)) => format!(", queue {b} → {a}"),
                _ => String::new(),
            },
            if sustained {
                "(sustained)"
            } else {
                "(not sustained)"
            },
            s.cpu.describe()
        );
        steps.push(s.clone());
        if !sustained {
            break;
        }
        best = Some(s);
    }
    Ok(Stepped { steps, best })
}
