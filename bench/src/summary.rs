//! One bench run's numbers, as the Markdown rows and the JSON written to `bench/results/`.

use super::baseline::PubResult;
use super::ceiling::Ceiling;
use super::cpu::CpuUse;
use super::load::RateStep;
use super::pipeline::{InlineRun, PipelineRun};
use super::relay::RelayDrain;
use super::report::{Row, row};
use super::sql_baseline::SqlResult;

pub struct Summary {
    pub b_pub: PubResult,
    pub ingest_steps: Vec<RateStep>,
    pub ingest_best: Option<RateStep>,
    /// B_min (the least actix-web + lapin ingest) under the same steps, and its best step.
    pub b_min_steps: Vec<RateStep>,
    pub b_min_best: Option<RateStep>,
    /// B_pub when each message is one of ingest's (topic exchange, headers).
    pub b_pub_ingest_messages: Option<PubResult>,
    /// The most any actix-web ingest could answer here, from CPU alone.
    pub ceiling: Option<Ceiling>,
    pub b_sql: SqlResult,
    pub worker_events: u32,
    pub worker_rate: f64,
    pub drain_cpu: CpuUse,
    pub relay: RelayDrain,
    pub pipeline: PipelineRun,
    /// B_inline: the seed's design.
    pub inline: InlineRun,
    /// Push delivery against the relay, one onboarding.
    pub push: super::push::Onboarding,
    /// The drain's onboarding: when it reached the stream and the application.
    pub drain_reach: super::push::DrainReach,
    pub ingest_rss_kib: u64,
    pub worker_rss_kib: u64,
}

impl Summary {
    pub fn ingest_rate(&self) -> f64 {
        self.ingest_best.as_ref().map_or(0.0, |s| s.accepted_per_s)
    }

    pub fn ingest_ratio(&self) -> f64 {
        self.ingest_rate() / self.b_pub.msgs_per_s
    }

    pub fn b_min_rate(&self) -> f64 {
        self.b_min_best.as_ref().map_or(0.0, |s| s.accepted_per_s)
    }

    pub fn ceiling_rate(&self) -> f64 {
        self.ceiling.as_ref().map_or(0.0, |c| c.webhooks_per_s)
    }

    /// The target ratio: the worker against the same rows written directly.
    pub fn worker_ratio(&self) -> f64 {
        self.worker_rate / self.b_sql.same_writes_events_per_s
    }

    pub fn rows(&self) -> Vec<Row> {
        let b = &self.b_pub;
        let s = &self.b_sql;
        vec![
            row(
                "B_pub raw publisher",
                format!(
                    "{:.0} msgs/s (confirm p50 {:.1} ms, p99 {:.1} ms)",
                    b.msgs_per_s, b.confirm_p50_ms, b.confirm_p99_ms
                ),
                "lapin, persistent, mandatory, 256 in flight, quorum queue; median of 3 runs",
            ),
            row("B_pub CPU per message", b.cpu.describe(), "from /proc"),
            row(
                "ingest max sustained (p99 < 50 ms)",
                self.ingest_best.as_ref().map_or("-".into(), |b| {
                    format!(
                        "{:.0} webhooks/s (p50 {:.1} ms, p99 {:.1} ms)",
                        b.accepted_per_s, b.p50_ms, b.p99_ms
                    )
                }),
                "open loop, signed ~1 KiB bodies, 202 only after confirm",
            ),
            row(
                "ingest CPU per webhook at that rate",
                self.ingest_best
                    .as_ref()
                    .map_or("-".into(), |b| b.cpu.describe()),
                "broker, ingest and the load generator share the 2 cores",
            ),
            row(
                "ingest ÷ B_pub",
                format!("{:.2}", self.ingest_ratio()),
                "target ≥ 0.7",
            ),
            row(
                "B_pub with ingest's messages",
                self.b_pub_ingest_messages.as_ref().map_or("-".into(), |p| {
                    format!("{:.0} msgs/s; cpu/msg {}", p.msgs_per_s, p.cpu.describe())
                }),
                "the raw publisher, 256 in flight, each message as ingest publishes it: topic exchange, routing key, header table",
            ),
            row(
                "ceiling: CPU bound for any actix-web ingest",
                self.ceiling.as_ref().map_or("-".into(), |c| {
                    format!(
                        "{:.0} webhooks/s = {} cores ÷ ({}); {:.0} with a generator costing nothing",
                        c.webhooks_per_s,
                        c.cores,
                        c.describe(),
                        c.without_generator_per_s
                    )
                }),
                "broker + publisher from B_pub with ingest's messages; an actix-web server that answers 202 at once and the generator, at 20k/s; every core busy on nothing else",
            ),
            row(
                "ceiling ÷ B_pub",
                format!(
                    "{:.2} ({:.2} with a generator costing nothing)",
                    self.ceiling_rate() / self.b_pub.msgs_per_s,
                    self.ceiling
                        .as_ref()
                        .map_or(0.0, |c| c.without_generator_per_s / self.b_pub.msgs_per_s)
                ),
                "what this machine allows any actix-web ingest, before any work of ingest's own",
            ),
            row(
                "ingest ÷ ceiling",
                format!("{:.2}", self.ingest_rate() / self.ceiling_rate()),
                "how much of that ingest reaches; target ≥ 0.85",
            ),
            row(
                "B_min max sustained (p99 < 50 ms)",
                self.b_min_best.as_ref().map_or("-".into(), |b| {
                    format!(
                        "{:.0} webhooks/s (p50 {:.1} ms, p99 {:.1} ms); cpu/webhook: {}",
                        b.accepted_per_s,
                        b.p50_ms,
                        b.p99_ms,
                        b.cpu.describe()
                    )
                }),
                "the least an actix-web + lapin ingest does: publish the body with a fixed header table, 202 after the confirm; no verification, parsing, metrics or coalescing; same generator and steps",
            ),
            row(
                "B_min ÷ ceiling; ingest ÷ B_min",
                format!(
                    "{:.2}; {:.2}",
                    self.b_min_rate() / self.ceiling_rate(),
                    self.ingest_rate() / self.b_min_rate()
                ),
                "what the p99 limit leaves of the ceiling to an ingest with no work of its own that publishes per request; what ingest's grouped publishes buy over that, verification and all",
            ),
            row(
                "B_sql user upserts, batched",
                format!("{:.0} rows/s", s.batched_rows_per_s),
                "500-row INSERT … ON CONFLICT per transaction, one table",
            ),
            row(
                "B_sql user upserts, single-row commits",
                format!("{:.0} rows/s", s.single_row_commits_per_s),
                "one upsert per transaction",
            ),
            row(
                "B_sql the worker's rows, batched",
                format!(
                    "{:.0} events/s; cpu/event: {}",
                    s.same_writes_events_per_s,
                    s.same_writes_cpu.describe()
                ),
                &format!(
                    "dedupe row + user upsert + audit row + the change-feed rows per event (+ membership and role for a new user), {} events per transaction, one connection",
                    s.same_writes_batch
                ),
            ),
            row(
                "worker apply (drain)",
                format!(
                    "{:.0} events/s ({} events)",
                    self.worker_rate, self.worker_events
                ),
                "locks, dedupe, reads, ordering, memberships, roles, audit, acks",
            ),
            row(
                "worker CPU per event",
                self.drain_cpu.describe(),
                "during the drain",
            ),
            row(
                "worker ÷ B_sql (the worker's rows)",
                format!("{:.2}", self.worker_ratio()),
                "target ≥ 0.9 (change feed on)",
            ),
            row(
                "worker ÷ B_sql user upserts batched",
                format!("{:.2}", self.worker_rate / s.batched_rows_per_s),
                "events/s over rows/s of one table",
            ),
            row(
                "worker ÷ B_sql single-row",
                format!("{:.2}", self.worker_rate / s.single_row_commits_per_s),
                "",
            ),
            row(
                "end to end sustained",
                self.pipeline.best.as_ref().map_or("-".into(), |b| {
                    format!("{:.0} webhooks/s; cpu/webhook: {}", b.accepted_per_s, b.cpu.describe())
                }),
                "ingest + worker + change feed, 5 s steps: every request 202, ≥ 95 % of the offer taken, apply queue no deeper than 0.1 s of the rate (min 500) at the end",
            ),
            row(
                "B_inline sustained",
                self.inline.best.as_ref().map_or("-".into(), |b| {
                    format!("{:.0} webhooks/s; cpu/webhook: {}", b.accepted_per_s, b.cpu.describe())
                }),
                "the seed's design in Rust (verify, then dedupe row + user upsert in one transaction per request, 201; one HTTP worker per core), same generator and steps",
            ),
            row(
                "end to end ÷ B_inline",
                format!("{:.2}", self.pipeline.best_rate() / self.inline.best_rate()),
                "target ≥ 3",
            ),
            row(
                "at the maximum",
                self.pipeline.at_max.describe(),
                "8 s at the end-to-end maximum; processed_at − the 202's arrival; published_at − committed_at",
            ),
            row(
                "at half the maximum",
                self.pipeline.at_half.describe(),
                "targets: both p99 ≤ 50 ms",
            ),
            row(
                "burst through the pipeline",
                self.pipeline.burst.describe(),
                "100,000 user_created for one organization, as fast as the generator can (512 connections)",
            ),
            row(
                "burst through B_inline",
                self.inline.burst.describe(),
                "the same burst",
            ),
            row(
                "burst: B_inline ÷ pipeline, time until all applied",
                format!(
                    "{:.2} (answered: {:.2})",
                    self.inline.burst.applied_s / self.pipeline.burst.applied_s,
                    self.inline.burst.answered_s / self.pipeline.burst.answered_s
                ),
                "target ≥ 3, with zero non-2xx answers from the pipeline",
            ),
            row(
                "push delivery vs. the stream (onboarding)",
                self.push.describe(),
                "committed before the worker starts; relay and delivery leader in one worker at once; endpoint answers in 5 ms; default batch 100",
            ),
            row(
                "onboarding (the drain): stream vs. application",
                self.drain_reach.describe(),
                "the drain's events are one organization's new users; both from the worker's start; the endpoint answers in 5 ms",
            ),
            row(
                "change relay during the drain",
                format!(
                    "{:.2} changes per event; {} unpublished when the drain ended, published in {:.1} s{}",
                    self.relay.changes_per_event,
                    self.relay.backlog,
                    self.relay.catch_up_seconds,
                    self.relay
                        .catch_up_cpu
                        .as_ref()
                        .map_or(String::new(), |c| format!("; cpu/change: {}", c.describe()))
                ),
                "the relay publishes while the worker applies; the catch-up is the relay alone",
            ),
            row(
                "peak RSS",
                format!(
                    "ingest {} MiB, worker {} MiB",
                    self.ingest_rss_kib / 1024,
                    self.worker_rss_kib / 1024
                ),
                "VmHWM over the whole run, the burst included; targets ≤ 64 MiB ingest, ≤ 128 MiB worker",
            ),
        ]
    }

    pub fn json(&self, machine: &str) -> serde_json::Value {
        serde_json::json!({
            "machine": machine,
            "b_pub": self.b_pub,
            "ingest_steps": self.ingest_steps,
            "ingest_max_sustained": self.ingest_best,
            "ingest_ratio": self.ingest_ratio(),
            "b_pub_ingest_messages": self.b_pub_ingest_messages,
            "ceiling": self.ceiling,
            "ceiling_ratio": self.ceiling_rate() / self.b_pub.msgs_per_s,
            "ingest_of_ceiling": self.ingest_rate() / self.ceiling_rate(),
            "b_min_steps": self.b_min_steps,
            "b_min_of_ceiling": self.b_min_rate() / self.ceiling_rate(),
            "ingest_of_b_min": self.ingest_rate() / self.b_min_rate(),
            "b_sql": self.b_sql,
            "worker_events_per_s": self.worker_rate,
            "push_onboarding": self.push,
            "drain_reach": self.drain_reach,
            "push_per_s": self.push.push_per_s(),
            "push_relay_per_s": self.push.relay_per_s(),
            "worker_cpu": self.drain_cpu,
            "worker_ratio_same_writes": self.worker_ratio(),
            "worker_ratio_user_upserts": self.worker_rate / self.b_sql.batched_rows_per_s,
            "e2e_steps": self.pipeline.steps,
            "e2e_max_sustained": self.pipeline.best,
            "e2e_at_max": self.pipeline.at_max,
            "e2e_at_half": self.pipeline.at_half,
            "e2e_burst": self.pipeline.burst,
            "inline_steps": self.inline.steps,
            "inline_max_sustained": self.inline.best,
            "inline_burst": self.inline.burst,
            "e2e_over_inline": self.pipeline.best_rate() / self.inline.best_rate(),
            "burst_applied_inline_over_e2e": self.inline.burst.applied_s / self.pipeline.burst.applied_s,
            "relay_drain": self.relay,
            "peak_rss_kib": {"ingest": self.ingest_rss_kib, "worker": self.worker_rss_kib},
        })
    }
}
