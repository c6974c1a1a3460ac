//! The ceiling: the most webhooks per second any ingest built on actix-web could answer on this
//! machine, from CPU alone. Whatever ingest does, each webhook costs at least the broker's work
//! for one of ingest's messages at its best batching and a raw publisher's work for it (both from
//! B_pub with ingest's messages), plus what a do-nothing actix-web server and the load generator
//! spend per request (measured together under the same generator at a high rate). With every
//! core busy on nothing else the rate would be cores ÷ that sum; no scheduler gets there with a
//! p99 under 50 ms, so it bounds ingest from above.

use super::baseline::PubResult;
use super::cpu::CpuUse;
use super::ingest_message;
use super::load::RateStep;
use lapin::options::ConfirmSelectOptions;
use serde::Serialize;
use shared::Topology;
use shared::amqp::declare_topology;

/// A connection with `topology` declared, for [`b_pub_ingest_messages`].
pub async fn publisher(url: &str, topology: &Topology) -> anyhow::Result<lapin::Connection> {
    let conn = shared::amqp::connect(url, "bench-ingest-messages").await?;
    declare_topology(&conn, topology).await?;
    Ok(conn)
}

/// B_pub with ingest's messages: the raw publisher (`window` confirms in flight) when each
/// message is one of ingest's — topic exchange, routing key, header table — rather than a bare
/// body to a queue. What the broker needs per message of ours at its best batching. The messages
/// land in `topology`'s apply queue: the caller empties it.
pub async fn b_pub_ingest_messages(
    watched: &super::cpu::Watched,
    conn: &lapin::Connection,
    topology: &Topology,
    n: usize,
    window: usize,
) -> anyhow::Result<PubResult> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    // Built before the clock starts: the publisher's CPU is then publishing, as in B_pub.
    let messages: Vec<_> = (0..n)
        .map(|i| ingest_message(topology, 200_000_000 + i))
        .collect();
    let result = super::baseline::measured(watched, &ch, n, window, |i| messages[i].clone()).await;
    let _ = ch.close(200, "done".into()).await;
    result
}

/// The ceiling and what it is made of.
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    /// Microseconds of CPU per webhook that no ingest can avoid, by part.
    pub parts_us: Vec<(String, f64)>,
    pub cores: usize,
    /// cores ÷ the sum of the parts.
    pub webhooks_per_s: f64,
    /// The same with a load generator that cost nothing (one on another machine).
    pub without_generator_per_s: f64,
    /// The do-nothing server's load step the HTTP parts come from.
    pub noop_step: RateStep,
}

/// Microseconds per message that `role` used, if it was watched.
fn role_us(cpu: &CpuUse, role: &str) -> Option<f64> {
    cpu.us_per_msg
        .iter()
        .find(|(r, _)| r == role)
        .map(|(_, us)| *us)
}

/// Puts the ceiling together from B_pub with ingest's messages (roles `broker`, `publisher`) and
/// the do-nothing server's step (roles `noop http`, `generator`). A part that was not measured
/// is left out, which only raises the ceiling.
pub fn ceiling(cores: usize, ingest_messages: &PubResult, noop_step: RateStep) -> Ceiling {
    let mut parts_us = Vec::new();
    for (label, cpu, role) in [
        ("broker", &ingest_messages.cpu, "broker"),
        ("publisher", &ingest_messages.cpu, "publisher"),
        ("http server", &noop_step.cpu, "noop http"),
        ("generator", &noop_step.cpu, "generator"),
    ] {
        if let Some(us) = role_us(cpu, role) {
            parts_us.push((label.to_owned(), us));
        }
    }
    let served: Vec<(String, f64)> = parts_us
        .iter()
        .filter(|(p, _)| p != "generator")
        .cloned()
        .collect();
    Ceiling {
        webhooks_per_s: cpu_bound(cores, &parts_us),
        without_generator_per_s: cpu_bound(cores, &served),
        parts_us,
        cores,
        noop_step,
    }
}

/// Messages per second that `cores` fully busy CPUs allow when each costs the sum of `parts_us`.
pub fn cpu_bound(cores: usize, parts_us: &[(String, f64)]) -> f64 {
    let per_msg: f64 = parts_us.iter().map(|(_, us)| us).sum();
    if per_msg > 0.0 {
        cores as f64 * 1e6 / per_msg
    } else {
        f64::INFINITY
    }
}

impl Ceiling {
    /// `broker 51 + publisher 11 + … = 104 µs` for the report.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .parts_us
            .iter()
            .map(|(p, us)| format!("{p} {us:.0}"))
            .collect();
        let total: f64 = self.parts_us.iter().map(|(_, us)| us).sum();
        format!("{} = {total:.0} µs per webhook", parts.join(" + "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(roles: &[(&str, f64)]) -> CpuUse {
        CpuUse {
            cores: roles.iter().map(|(r, _)| ((*r).to_owned(), 0.5)).collect(),
            us_per_msg: roles.iter().map(|(r, us)| ((*r).to_owned(), *us)).collect(),
        }
    }

    #[test]
    fn two_cores_at_100_us_a_webhook_allow_20k_per_second() {
        let ingest_messages = PubResult {
            messages: 1000,
            msgs_per_s: 26_000.0,
            confirm_p50_ms: 5.0,
            confirm_p99_ms: 9.0,
            cpu: cpu(&[("broker", 50.0), ("publisher", 10.0)]),
        };
        let noop = RateStep {
            offered_per_s: 20_000.0,
            accepted_per_s: 20_000.0,
            errors: 0,
            p50_ms: 1.0,
            p99_ms: 2.0,
            cpu: cpu(&[("noop http", 18.0), ("generator", 22.0)]),
            accepted_at: Vec::new(),
        };
        let c = ceiling(2, &ingest_messages, noop);
        assert_eq!(c.parts_us.len(), 4);
        assert!(
            (c.webhooks_per_s - 20_000.0).abs() < 1e-6,
            "{}",
            c.webhooks_per_s
        );
        assert_eq!(
            c.describe(),
            "broker 50 + publisher 10 + http server 18 + generator 22 = 100 µs per webhook"
        );
    }

    #[test]
    fn nothing_measured_bounds_nothing() {
        assert!(cpu_bound(2, &[]).is_infinite());
        assert!((cpu_bound(1, &[("x".into(), 250.0)]) - 4000.0).abs() < 1e-9);
    }
}
