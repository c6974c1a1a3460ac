//! The ingest half of the bench: B_pub with ingest's own messages, ingest under open-loop load,
//! and the ceiling (the same load against a do-nothing HTTP server while a raw publisher feeds
//! the broker the same messages), each stepped up to the highest rate with p99 under the limit.

use super::baseline::PubResult;
use super::ceiling;
use super::cpu::Watched;
use super::load::{self, RateStep};
use crate::procs::{Proc, free_port};
use crate::stack::{SECRET, Stack};
use std::net::SocketAddr;
use std::time::Duration;

/// Offered rates, per second, each held for [`STEP`].
pub const RATES: [f64; 14] = [
    500.0, 1000.0, 2000.0, 4000.0, 6000.0, 8000.0, 10000.0, 12000.0, 13000.0, 14000.0, 15000.0,
    16000.0, 18000.0, 20000.0,
];
pub const STEP: Duration = Duration::from_secs(4);

pub struct IngestHalf {
    /// B_pub with ingest's messages (median of three runs).
    pub b_pub_ingest_messages: PubResult,
    pub steps: Vec<RateStep>,
    pub ceiling_steps: Vec<RateStep>,
}

/// Runs the three measurements against `stack` (ingest started here).
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
    let tap = shared::testkit::RabbitTap::connect(&url).await?;
    let publisher = ceiling::publisher(&url, &topology).await?;
    let empty = |tap: &shared::testkit::RabbitTap| {
        let q = apply_queue.clone();
        let ch = tap.channel.clone();
        async move {
            let _ = ch
                .queue_purge(
                    q.as_str().into(),
                    lapin::options::QueuePurgeOptions::default(),
                )
                .await;
        }
    };

    eprintln!("B_pub with ingest's messages (topic exchange, headers; 256 in flight; median of 3)");
    let pub_watch = Watched::new().with("broker", broker).with("publisher", me);
    let mut runs = Vec::new();
    for _ in 0..3 {
        let r =
            ceiling::b_pub_ingest_messages(&pub_watch, &publisher, &topology, 30_000, 256).await?;
        empty(&tap).await;
        eprintln!("  run: {:.0} msgs/s", r.msgs_per_s);
        runs.push(r);
    }
    runs.sort_by(|a, b| a.msgs_per_s.total_cmp(&b.msgs_per_s));
    let b_pub_ingest_messages = runs.swap_remove(1);
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

    eprintln!(
        "ceiling: the same load against a do-nothing actix-web server + a paced raw publisher"
    );
    let port = free_port();
    let workers = std::env::var("INGEST_HTTP_WORKERS").unwrap_or_else(|_| "2".to_owned());
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
        .with("broker", broker)
        .with("noop http", noop.pid())
        .with("generator + publisher", me);
    let paced_ch = publisher.create_channel().await?;
    paced_ch
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await?;
    let (w, t, ch) = (&watch, &topology, &paced_ch);
    let ceiling_steps = load::find_max_rate(
        "ceiling",
        &RATES,
        p99_limit_ms,
        (&tap, &apply_queue),
        |rate, base| async move {
            let wanted = (rate * STEP.as_secs_f64()) as usize;
            let messages = (0..wanted)
                .map(|i| super::ingest_message(t, base + i))
                .collect();
            let (mut step, published) = tokio::join!(
                load::open_loop(w, noop_addr, "/webhooks", s, rate, STEP, base),
                ceiling::paced(ch, messages, rate)
            );
            // A message the broker did not confirm counts as a failed request.
            step.errors += wanted.saturating_sub(published.unwrap_or(0));
            step
        },
    )
    .await;
    drop(noop);
    let _ = publisher.close(200, "done".into()).await;
    let _ = tap.connection.close(200, "done".into()).await;
    Ok(IngestHalf {
        b_pub_ingest_messages,
        steps,
        ceiling_steps,
    })
}
