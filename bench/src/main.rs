//! The benchmark: `cargo run --release -p tests --bin bench`. Prints, from one run on this
//! machine, the baselines (raw lapin publisher, direct SQL upserts) and the real binaries
//! measured against them, as ratios; writes JSON + Markdown to `bench/results/`.

use anyhow::Context;
use bench::report::write;
use bench::summary::Summary;
use bench::{baseline, cpu, load, prefill, sql_baseline};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use std::time::Duration;
use testkit::stack::{SECRET, Stack};

const P99_LIMIT_MS: f64 = 50.0;
/// Events the worker drains (published into its queue beforehand by a raw publisher).
const DRAIN_EVENTS: usize = 100_000;
/// Events per transaction the worker takes with its defaults (4 lanes, the in-flight byte
/// budget of 256 MiB over 1 MiB messages: `docs/worker.md`, "Memory"); B_sql writes the same batches.
const WORKER_BATCH: usize = 63;

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024 / 1024);
    format!(
        "{cores} cores ({cpu}), {mem} GiB; RabbitMQ, PostgreSQL, the load generator and the binaries all on this machine"
    )
}

async fn build_binaries() -> anyhow::Result<()> {
    // `cargo run` builds only this package: build the binaries under test, same profile. Naming
    // this package too keeps cargo's feature unification the same as `cargo run -p tests`, so the
    // shared dependencies are not rebuilt with other features on every run.
    let Ok(cargo) = std::env::var("CARGO") else {
        return Ok(());
    };
    let release = !cfg!(debug_assertions);
    let mut cmd = tokio::process::Command::new(cargo);
    cmd.args([
        "build", "-p", "bench", "-p", "ingest", "-p", "worker", "--bins",
    ]);
    if release {
        cmd.arg("--release");
    }
    // `cargo run` hands its package's CARGO_* variables to the bench; build scripts that watch
    // them would see a change and rebuild. Pass on only cargo's own configuration.
    const KEEP: [&str; 9] = [
        "CARGO_HOME",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_",
        "CARGO_NET_",
        "CARGO_TERM_",
        "CARGO_REGISTRIES_",
        "CARGO_PROFILE_",
        "CARGO_INCREMENTAL",
        "CARGO_HTTP_",
    ];
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CARGO_") && !KEEP.iter().any(|p| k.starts_with(p)) {
            cmd.env_remove(&key);
        }
    }
    anyhow::ensure!(
        cmd.status().await?.success(),
        "building ingest and worker failed"
    );
    Ok(())
}

/// Rows in `processed_events`, over one kept connection (a new connection per poll would cost
/// the database a backend start each time, inside the measurement).
type Db = std::sync::Arc<tokio::sync::Mutex<AsyncPgConnection>>;

async fn processed(db: Db) -> i64 {
    let mut conn = db.lock().await;
    bench::count(&mut conn, "SELECT count(*) AS n FROM processed_events")
        .await
        .unwrap_or(-1)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    build_binaries().await?;
    let autovacuum =
        bench::server::autovacuum_on(&format!("{}/postgres", testkit::postgres_base_url())).await?;
    let result = run().await;
    autovacuum.restore().await;
    result
}

async fn run() -> anyhow::Result<()> {
    let machine = machine();
    eprintln!("machine: {machine}");
    let url = testkit::amqp_url();
    let secret: shared::WebhookSecret = SECRET.parse()?;
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only == "feed" {
        return feed_only(&secret).await;
    }
    if only == "push" {
        let o = onboarding().await?;
        println!("push delivery (endpoint answers in 5 ms): {}", o.describe());
        return Ok(());
    }
    if only == "e2e" {
        return bench::defaults::e2e_only(&secret).await;
    }
    if bench::tenants::only(&only, &secret).await? {
        return Ok(());
    }

    eprintln!(
        "B_pub: raw lapin publisher, persistent + mandatory, 256 confirms in flight, quorum queue (median of 3)"
    );
    let broker = cpu::find_process("beam.smp");
    if broker.is_none() {
        eprintln!("  (RabbitMQ's beam.smp is not visible here: its CPU is not accounted)");
    }
    let me = Some(std::process::id());
    let pub_watch = cpu::Watched::new()
        .with("broker", broker)
        .with("publisher", me);
    let b_pub =
        baseline::median_of_three(|| baseline::raw_publisher(&pub_watch, &url, 30_000, 256))
            .await
            .context("B_pub")?;
    eprintln!(
        "  {:.0} msgs/s, confirm p50 {:.1} ms p99 {:.1} ms  cpu/msg: {}",
        b_pub.msgs_per_s,
        b_pub.confirm_p50_ms,
        b_pub.confirm_p99_ms,
        b_pub.cpu.describe()
    );

    if let Ok(windows) = std::env::var("BENCH_PUB_WINDOWS") {
        for w in windows
            .split(',')
            .filter_map(|w| w.trim().parse::<usize>().ok())
        {
            let r = baseline::raw_publisher(&pub_watch, &url, 20_000, w).await?;
            eprintln!(
                "  window {w:>4}: {:.0} msgs/s, confirm p50 {:.1} ms p99 {:.1} ms  cpu/msg: {}",
                r.msgs_per_s,
                r.confirm_p50_ms,
                r.confirm_p99_ms,
                r.cpu.describe()
            );
        }
    }
    let mut stack = Stack::new("bench").await?;
    // The default configuration: the deprovisioning brake on.
    stack.brake_off = false;
    // The application the stack's workers push changes to, answering in 5 ms.
    let app =
        testkit::receiver::Receiver::start_on(stack.push_port, SECRET, Duration::from_millis(5))
            .await;
    let (b_pub_ingest_messages, steps, b_min_steps, ceiling) = if only == "worker" {
        (None, Vec::new(), Vec::new(), None)
    } else {
        let h = bench::ingest_half::measure(&mut stack, broker, P99_LIMIT_MS).await?;
        (
            Some(h.b_pub_ingest_messages),
            h.steps,
            h.b_min_steps,
            Some(h.ceiling),
        )
    };
    let best = load::max_sustained(&steps, P99_LIMIT_MS).cloned();
    let ingest_rate = best.as_ref().map_or(0.0, |s| s.accepted_per_s);
    let b_min_best = load::max_sustained(&b_min_steps, P99_LIMIT_MS).cloned();
    if only == "ingest" {
        // A quick loop for ingest work: baseline and ingest only, nothing written.
        eprintln!(
            "ingest {ingest_rate:.0}/s ÷ B_pub {:.0}/s = {:.2}",
            b_pub.msgs_per_s,
            ingest_rate / b_pub.msgs_per_s
        );
        if let Some(c) = &ceiling {
            let b_min = b_min_best.as_ref().map_or(0.0, |s| s.accepted_per_s);
            eprintln!(
                "ceiling {:.0}/s ÷ B_pub = {:.2}; ingest ÷ ceiling = {:.2}; B_min {b_min:.0}/s ÷ ceiling = {:.2}; ingest ÷ B_min = {:.2}",
                c.webhooks_per_s,
                c.webhooks_per_s / b_pub.msgs_per_s,
                ingest_rate / c.webhooks_per_s,
                b_min / c.webhooks_per_s,
                ingest_rate / b_min
            );
        }
        stack.teardown().await;
        return Ok(());
    }
    eprintln!("worker: pre-filling the apply queue with {DRAIN_EVENTS} events (raw publisher)");
    prefill::prefill(&url, &stack.topology, DRAIN_EVENTS, 100_000_000).await?;

    let batch = std::env::var("WORKER_BATCH_SIZE")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(WORKER_BATCH);
    eprintln!(
        "B_sql: direct SQL (user upserts; and the worker's rows per event, {batch} a transaction)"
    );
    let b_sql = sql_baseline::sql_baselines(&stack.db.url, 50_000, 500, 2_000, 60_000, batch)
        .await
        .context("B_sql")?;
    eprintln!(
        "  users batched {:.0} rows/s (500 a statement), single-row commits {:.0} rows/s, same writes as the worker {:.0} events/s (cpu/event: {})",
        b_sql.batched_rows_per_s,
        b_sql.single_row_commits_per_s,
        b_sql.same_writes_events_per_s,
        b_sql.same_writes_cpu.describe()
    );

    let tap = testkit::RabbitTap::connect(&url).await?;
    let queued = tap.depth(&stack.topology.apply_queue()).await?;
    eprintln!("worker: draining {queued} queued events");
    let started = std::time::Instant::now();
    stack.start_worker().await?;
    let worker_watch = cpu::Watched::new()
        .with("broker", broker)
        .with(
            "worker",
            <[testkit::procs::Proc]>::first(&stack.workers).and_then(|p| p.pid()),
        )
        .with_all("postgres", &cpu::find_processes("postgres"));
    let drain_cpu = worker_watch.start();
    let db: Db = std::sync::Arc::new(tokio::sync::Mutex::new(
        AsyncPgConnection::establish(&stack.db.url).await?,
    ));
    // Until the queue has handed every event out, its depth (a passive declare, nothing for
    // the database) tells the drain is not done; then the rows are counted. Counting all the
    // while cost PostgreSQL about 14 ms a poll over the growing table, inside the measurement.
    let apply_queue = stack.topology.apply_queue();
    let taken = testkit::wait_until(Duration::from_secs(900), || async {
        tap.depth(&apply_queue).await.is_ok_and(|ready| ready == 0)
    })
    .await;
    anyhow::ensure!(taken, "the worker did not take every event within 900 s");
    load::time_until(
        i64::from(queued),
        || processed(db.clone()),
        Duration::from_secs(900),
    )
    .await?;
    let drain = started.elapsed();
    let drain_cpu = drain_cpu.finish(usize::try_from(queued).unwrap_or(usize::MAX));
    let worker_rate = f64::from(queued) / drain.as_secs_f64();
    let worker_ratio_same = worker_rate / b_sql.same_writes_events_per_s;
    eprintln!(
        "  {worker_rate:.0} events/s = {worker_ratio_same:.2} × B_sql same writes  cpu/event: {}",
        drain_cpu.describe()
    );
    let relay = bench::relay::after_drain(&stack.db.url, &worker_watch, queued).await?;
    let stream_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "  relay: {:.2} changes per event, {} unpublished at the end of the drain, published in {:.1} s",
        relay.changes_per_event, relay.backlog, relay.catch_up_seconds
    );
    let written = {
        let mut conn = db.lock().await;
        bench::count(&mut conn, "SELECT count(*) AS n FROM changes").await?
    };
    let drain_reach = bench::push::DrainReach {
        changes: written,
        stream_seconds,
        app_seconds: bench::push::wait_taken(&app, written, started).await?,
    };
    eprintln!("  onboarding: {}", drain_reach.describe());
    if only == "worker" {
        stack.teardown().await;
        return Ok(());
    }
    let pipeline = bench::pipeline::measure(&mut stack, &tap, &secret, broker).await?;
    let inline = bench::pipeline::measure_inline(&stack, &secret).await?;
    let push = onboarding().await?;
    eprintln!("  push delivery: {}", push.describe());

    let ingest_rss = stack
        .ingest
        .as_ref()
        .and_then(|p| p.peak_rss_kib())
        .unwrap_or(0);
    let worker_rss = <[testkit::procs::Proc]>::first(&stack.workers)
        .and_then(|p| p.peak_rss_kib())
        .unwrap_or(0);
    let summary = Summary {
        b_pub,
        ingest_steps: steps,
        ingest_best: best,
        b_min_steps,
        b_min_best,
        b_pub_ingest_messages,
        ceiling,
        b_sql,
        worker_events: queued,
        worker_rate,
        drain_cpu,
        relay,
        pipeline,
        inline,
        push,
        drain_reach,
        ingest_rss_kib: ingest_rss,
        worker_rss_kib: worker_rss,
    };
    let mut rows = summary.rows();
    rows.extend(bench::tenants::rows(&secret).await?);
    println!("\n| metric | value | note |\n|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {} |", r.metric, r.value, r.note);
    }
    let json = summary.json(&machine);
    let stem = std::env::var("BENCH_NAME")
        .unwrap_or_else(|_| chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string());
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    write(&dir, &stem, &machine, &json, &rows)?;
    eprintln!("written: bench/results/{stem}.json and .md");
    let _ = tap.connection.close(200, "done".into()).await;
    stack.teardown().await;
    Ok(())
}

/// The onboarding row: `BENCH_PUSH_USERS` users (default 100,000: about 300,000 changes) to
/// an endpoint answering in 5 ms, against the relay in the same run.
async fn onboarding() -> anyhow::Result<bench::push::Onboarding> {
    let users = std::env::var("BENCH_PUSH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    eprintln!("push delivery: {users} users onboarding, endpoint answering in 5 ms");
    bench::push::onboarding(users, Duration::from_millis(5)).await
}

/// `BENCH_ONLY=feed`: the pipeline at one steady rate (`BENCH_FEED_RATE`, default 500/s) for
/// `BENCH_FEED_SECONDS` (default 8), reporting only freshness: a quick loop for relay work.
async fn feed_only(secret: &shared::WebhookSecret) -> anyhow::Result<()> {
    let var = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(default)
    };
    let rate = var("BENCH_FEED_RATE", 500.0);
    let seconds = var("BENCH_FEED_SECONDS", 8.0);
    let mut stack = Stack::new("bench").await?;
    // The default configuration: the deprovisioning brake on.
    stack.brake_off = false;
    stack.start_ingest().await?;
    stack.start_worker().await?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], stack.ingest_port));
    let watch = cpu::Watched::new()
        .with("broker", cpu::find_process("beam.smp"))
        .with("ingest", stack.ingest.as_ref().and_then(|p| p.pid()))
        .with(
            "worker",
            <[testkit::procs::Proc]>::first(&stack.workers).and_then(|p| p.pid()),
        );
    let fresh = bench::half_load::measure(
        &watch,
        addr,
        secret,
        &stack.db.url,
        rate,
        Duration::from_secs_f64(seconds),
        bench::half_load::ID_BASE,
    )
    .await;
    stack.teardown().await;
    eprintln!("{}", fresh?.describe());
    Ok(())
}
