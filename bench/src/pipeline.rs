//! The whole pipeline per event, against the seed's inline design on the same box: the
//! sustained rate of each (stepped under the same generator, CPU per webhook for every
//! process), freshness at the pipeline's maximum and at half of it (2xx → committed, commit →
//! published), and the same 100,000-webhook burst offered to each.

use super::burst::{self, Burst};
use super::cpu::{self, Watched};
use super::e2e::{self, Stepped};
use super::half_load::{self, Freshness};
use super::inline::Inline;
use super::load::RateStep;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use std::net::SocketAddr;
use std::time::Duration;
use testkit::RabbitTap;
use testkit::stack::Stack;

/// Webhooks in each burst.
pub const BURST: usize = 100_000;
/// Ids of the burst's events (`evt_bench_200000000` …).
const BURST_BASE: usize = 200_000_000;
const BURST_FROM: &str = "evt_bench_200000000";
const BURST_TO: &str = "evt_bench_300000000";

pub struct PipelineRun {
    pub steps: Vec<RateStep>,
    pub best: Option<RateStep>,
    pub at_max: Freshness,
    pub at_half: Freshness,
    pub burst: Burst,
}

pub struct InlineRun {
    pub steps: Vec<RateStep>,
    pub best: Option<RateStep>,
    pub burst: Burst,
}

impl PipelineRun {
    pub fn best_rate(&self) -> f64 {
        self.best.as_ref().map_or(0.0, |b| b.accepted_per_s)
    }
}

impl InlineRun {
    pub fn best_rate(&self) -> f64 {
        self.best.as_ref().map_or(0.0, |b| b.accepted_per_s)
    }
}

/// A kept connection for polling during a burst.
type Db = std::sync::Arc<tokio::sync::Mutex<AsyncPgConnection>>;

async fn kept(url: &str) -> anyhow::Result<Db> {
    Ok(std::sync::Arc::new(tokio::sync::Mutex::new(
        AsyncPgConnection::establish(url).await?,
    )))
}

async fn count(db: &Db, sql: &str) -> anyhow::Result<i64> {
    super::count(&mut *db.lock().await, sql).await
}

async fn unpublished(db: &Db) -> anyhow::Result<i64> {
    super::unpublished(&mut *db.lock().await).await
}

fn burst_applied() -> String {
    format!(
        "SELECT count(*) AS n FROM processed_events WHERE event_id >= '{BURST_FROM}' AND event_id < '{BURST_TO}'"
    )
}

/// Waits until the apply queue is empty and every change is published, then 3 s more.
async fn settle(stack: &Stack, tap: &RabbitTap) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    while tap.queued(&stack.topology).await? > 0 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the worker did not drain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let backlog = super::relay::wait_published(&stack.db.url, Duration::from_secs(300)).await?;
    eprintln!(
        "  settled in {:.1} s ({backlog} changes were unpublished)",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}

/// ingest + worker (started here) on `stack`, whose worker has drained its queue.
pub async fn measure(
    stack: &mut Stack,
    tap: &RabbitTap,
    secret: &shared::WebhookSecret,
    broker: Option<u32>,
) -> anyhow::Result<PipelineRun> {
    if stack.ingest.is_none() {
        stack.start_ingest().await?;
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], stack.ingest_port));
    let worker = <[testkit::procs::Proc]>::first(&stack.workers).and_then(|p| p.pid());
    let watch = || {
        Watched::new()
            .with("broker", broker)
            .with("ingest", stack.ingest.as_ref().and_then(|p| p.pid()))
            .with("worker", worker)
            .with_all("postgres", &cpu::find_processes("postgres"))
            .with("generator", Some(std::process::id()))
    };
    eprintln!(
        "end to end: ingest + worker + change feed; the queued events (apply, urgent and bulk queues) must stay flat"
    );
    let Stepped { steps, best } = e2e::step_up(
        "e2e",
        &watch,
        addr,
        ingest::WEBHOOK_PATH,
        secret,
        50_000_000,
        || async { Ok(Some(tap.queued(&stack.topology).await?)) },
    )
    .await?;
    let max = best.as_ref().map_or(250.0, |b| b.accepted_per_s);
    settle(stack, tap).await?;
    let at_max = half_load::measure(
        &watch(),
        addr,
        secret,
        &stack.db.url,
        max,
        Duration::from_secs(8),
        half_load::ID_BASE,
    )
    .await?;
    eprintln!("  at the maximum {}", at_max.describe());
    settle(stack, tap).await?;
    let at_half = half_load::measure(
        &watch(),
        addr,
        secret,
        &stack.db.url,
        (max / 2.0).max(50.0),
        Duration::from_secs(8),
        half_load::ID_BASE + 5_000_000,
    )
    .await?;
    eprintln!("  at half {}", at_half.describe());
    settle(stack, tap).await?;
    eprintln!(
        "burst: {BURST} user_created webhooks for one organization, as fast as the generator can"
    );
    let db = kept(&stack.db.url).await?;
    let applied_sql = burst_applied();
    let burst = burst::run(
        &watch(),
        addr,
        ingest::WEBHOOK_PATH,
        secret,
        BURST,
        BURST_BASE,
        || count(&db, &applied_sql),
        Some(|| unpublished(&db)),
    )
    .await?;
    eprintln!("  pipeline: {}", burst.describe());
    Ok(PipelineRun {
        steps,
        best,
        at_max,
        at_half,
        burst,
    })
}

/// B_inline on a database of its own: stepped, then the same burst.
pub async fn measure_inline(
    stack: &Stack,
    secret: &shared::WebhookSecret,
) -> anyhow::Result<InlineRun> {
    eprintln!("B_inline: the seed's design (verify, dedupe row + user upsert per request, 201)");
    let inline = Inline::start(&stack.client, &stack.prefix.to_lowercase()).await?;
    let watch = || {
        Watched::new()
            .with("inline", inline.proc.pid())
            .with_all("postgres", &cpu::find_processes("postgres"))
            .with("generator", Some(std::process::id()))
    };
    let run = async {
        let Stepped { steps, best } = e2e::step_up(
            "B_inline",
            &watch,
            inline.addr(),
            ingest::WEBHOOK_PATH,
            secret,
            60_000_000,
            || async { Ok(None) },
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let db = kept(&inline.db.url).await?;
        let applied_sql = burst_applied();
        let burst = burst::run(
            &watch(),
            inline.addr(),
            ingest::WEBHOOK_PATH,
            secret,
            BURST,
            BURST_BASE,
            || count(&db, &applied_sql),
            None::<fn() -> std::future::Ready<anyhow::Result<i64>>>,
        )
        .await?;
        eprintln!("  B_inline: {}", burst.describe());
        anyhow::Ok(InlineRun { steps, best, burst })
    }
    .await;
    inline.stop().await;
    run
}
