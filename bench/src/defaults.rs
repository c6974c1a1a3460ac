//! What the default configuration costs the end-to-end row (`BENCH_ONLY=e2e`): the pipeline
//! measured twice in one run, first as users run it (the deprovisioning brake on, fair share,
//! push delivery to an endpoint answering in 5 ms, the urgent and bulk lanes), then with those
//! features off as far as configuration turns them off (brake at 0 %, every event on the apply
//! queue, no push endpoint). The ratio of the two is what the features cost; the lanes the
//! worker opens (apply, bulk, urgent, sharing one byte budget) are the same in both.

use super::cpu;
use super::pipeline::{self, PipelineRun};
use std::time::Duration;
use testkit::stack::{SECRET, Stack};

/// An ingest fair-share burst no run reaches: every event goes to the apply queue.
const FAIR_OFF: &str = "4000000000";

async fn one(
    name: &str,
    defaults: bool,
    secret: &shared::WebhookSecret,
) -> anyhow::Result<PipelineRun> {
    let mut stack = Stack::new(name).await?;
    stack.brake_off = !defaults;
    stack.push_off = !defaults;
    if !defaults {
        stack
            .env
            .push(("INGEST_FAIR_BURST".to_owned(), FAIR_OFF.to_owned()));
    }
    let app = if defaults {
        Some(
            testkit::receiver::Receiver::start_on(
                stack.push_port,
                SECRET,
                Duration::from_millis(5),
            )
            .await,
        )
    } else {
        None
    };
    stack.declare_topology().await?;
    stack.start_worker().await?;
    let tap = testkit::RabbitTap::connect(&testkit::amqp_url()).await?;
    let run = pipeline::measure(&mut stack, &tap, secret, cpu::find_process("beam.smp")).await;
    if let Some(app) = app {
        app.stop().await;
    }
    stack.teardown().await;
    run
}

/// Runs the end-to-end row with the defaults and with the features off; prints both and the
/// ratios.
pub async fn e2e_only(secret: &shared::WebhookSecret) -> anyhow::Result<()> {
    eprintln!("== the default configuration");
    let on = one("benche2e", true, secret).await?;
    eprintln!("== brake 0 %, fair share off (every event on the apply queue), no push endpoint");
    let off = one("benche2eoff", false, secret).await?;
    println!(
        "end to end sustained: default configuration {:.0} webhooks/s, features off {:.0} webhooks/s (default ÷ off = {:.2})",
        on.best_rate(),
        off.best_rate(),
        on.best_rate() / off.best_rate().max(1e-9)
    );
    println!("burst, default configuration: {}", on.burst.describe());
    println!("burst, features off: {}", off.burst.describe());
    println!(
        "burst applied: off ÷ default = {:.2}",
        off.burst.applied_s / on.burst.applied_s.max(1e-9)
    );
    Ok(())
}
