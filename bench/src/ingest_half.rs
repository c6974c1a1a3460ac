//! The ingest half of the bench: B_pub with ingest's own messages, ingest under open-loop load
//! stepped up to the highest rate with p99 under the limit, B_min (`src/bin/min_ingest.rs`, the
//! least an actix-web + lapin ingest does) under the same steps, and the ceiling (see
//! `ceiling`).

use super::baseline::{self, PubResult};
use super::ceiling;
use super::cpu::Watched;
use super::load::{self, RateStep};
use lapin::options::QueuePurgeOptions;
use std::net::SocketAddr;
use std::time::Duration;
use testkit::procs::{Proc, free_port};
use testkit::stack::{SECRET, Stack};

/// Offered rates, per second, each held for [`STEP`].
pub const RATES: [f64; 14] = [
    500.0, 1000.0, 2000.0, 4000.0, 6000.0, 8000.0, 10000.0, 12000.0, 13000.0, 14000.0, 15000.0,
    16000.0, 18000.0, 20000.0,
];
pub const STEP: Duration = Duration::from_secs(4);
/// The rate the do-nothing server is measured at: high, where the cost per request is lowest.
pub const NOOP_RATE: f64 = 20_000.0;

pub struct IngestHalf {
    /// B_pub with ingest's messages (median of three runs).
    pub b_pub_ingest_messages: PubResult,
    pub steps: Vec<RateStep>,
    /// B_min under the same steps: what the p99 limit leaves of the ceiling to any ingest.
    pub b_min_steps: Vec<RateStep>,
    pub ceiling: ceiling::Ceiling,
}

/// Runs the four measurements against `stack` (ingest started here).
pub async fn measure(
    stack: &mut Stack,
    broker: Option<u32>,
    p99_limit_ms: f64,
) -> anyhow::Result<IngestHalf> {
    let me = Some(std::process::id());
    let url = stack.amqp.clone();
    let secret: shared::WebhookSecret = SECRET.parse()?;
    let topology = stack.topology.clone();
    let apply_queue = topology.apply_queue();
    let tap = testkit::RabbitTap::connect(&url).await?;
    let publisher = ceiling::publisher(&url, &topology).await?;

    eprintln!("B_pub with ingest's messages (topic exchange, headers; 256 in flight; median of 3)");
    let pub_watch = Watched::new().with("broker", broker).with("publisher", me);
    let (w, conn, t, tp, q) = (&pub_watch, &publisher, &topology, &tap, &apply_queue);
    let b_pub_ingest_messages = baseline::median_of_three(|| async move {
        let r = ceiling::b_pub_ingest_messages(w, conn, t, 30_000, 256).await;
        // Each run, like B_pub's, starts from an empty queue.
        let _ = tp
            .channel
            .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
            .await;
        r
    })
    .await?;
    eprintln!(
        "  {:.0} msgs/s  cpu/msg: {}",
        b_pub_ingest_messages.msgs_per_s,
        b_pub_ingest_messages.cpu.describe()
    );

    stack.start_ingest().await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], stack.ingest_port));
    let watch = Watched::new()
        .with("broker", broker)
        .with("ingest", stack.ingest.as_ref().and_then(|p| p.pid()))
        .with("generator", me);
    eprintln!("ingest: open-loop load, 4 s a step, until p99 ≥ {p99_limit_ms} ms");
    let (w, s) = (&watch, &secret);
    let steps = load::find_max_rate(
        "ingest",
        &RATES,
        p99_limit_ms,
        (&tap, &apply_queue),
        |rate, base| load::open_loop(w, addr, ingest::WEBHOOK_PATH, s, rate, STEP, base),
    )
    .await;

    let workers = super::stand_in_workers().to_string();
    eprintln!("B_min: the least actix-web + lapin ingest (publish, confirm, 202), the same steps");
    let port = free_port();
    let exchange = topology.exchange();
    let b_min = Proc::spawn(
        "min_ingest",
        "min_ingest",
        &[&port.to_string(), &url, &exchange, super::EVENT_TYPE],
        &[("INGEST_HTTP_WORKERS".to_owned(), workers.clone())],
        port,
    )?;
    b_min
        .wait_ready(&stack.client, Duration::from_secs(30))
        .await?;
    let min_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let watch = Watched::new()
        .with("broker", broker)
        .with("B_min", b_min.pid())
        .with("generator", me);
    let w = &watch;
    let b_min_steps = load::find_max_rate(
        "B_min",
        &RATES,
        p99_limit_ms,
        (&tap, &apply_queue),
        |rate, base| load::open_loop(w, min_addr, ingest::WEBHOOK_PATH, s, rate, STEP, base),
    )
    .await;
    drop(b_min);

    eprintln!("ceiling: a do-nothing actix-web server under the same generator at {NOOP_RATE}/s");
    let port = free_port();
    let noop = Proc::spawn(
        "noop_http",
        "noop_http",
        &[&port.to_string()],
        &[("INGEST_HTTP_WORKERS".to_owned(), workers)],
        port,
    )?;
    noop.wait_ready(&stack.client, Duration::from_secs(30))
        .await?;
    let noop_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let watch = Watched::new()
        .with("noop http", noop.pid())
        .with("generator", me);
    let noop_step = load::open_loop(
        &watch,
        noop_addr,
        "/webhooks",
        s,
        NOOP_RATE,
        STEP,
        900_000_000,
    )
    .await;
    eprintln!(
        "  noop @ {NOOP_RATE}/s: accepted {:.0}/s  p99 {:.1} ms  errors {}  cpu/msg: {}",
        noop_step.accepted_per_s,
        noop_step.p99_ms,
        noop_step.errors,
        noop_step.cpu.describe()
    );
    drop(noop);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ceiling = ceiling::ceiling(cores, &b_pub_ingest_messages, noop_step);
    eprintln!(
        "  ceiling: {cores} cores ÷ ({}) = {:.0} webhooks/s ({:.0} without the generator)",
        ceiling.describe(),
        ceiling.webhooks_per_s,
        ceiling.without_generator_per_s
    );
    let _ = publisher.close(200, "done".into()).await;
    let _ = tap.connection.close(200, "done".into()).await;
    Ok(IngestHalf {
        b_pub_ingest_messages,
        steps,
        b_min_steps,
        ceiling,
    })
}
