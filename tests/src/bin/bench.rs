//! The benchmark: `cargo run --release -p tests --bin bench`. Prints, from one run on this
//! machine, the baselines (raw lapin publisher, direct SQL upserts) and the real binaries
//! measured against them, as ratios; writes JSON + Markdown to `bench/results/`.

use anyhow::Context;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::time::Duration;
use tests::bench::report::{Row, row, write};
use tests::bench::{baseline, load, percentile};
use tests::stack::{SECRET, Stack};

const P99_LIMIT_MS: f64 = 50.0;

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
    // `cargo run` builds only this package: build the binaries under test, same profile.
    let Ok(cargo) = std::env::var("CARGO") else {
        return Ok(());
    };
    let release = !cfg!(debug_assertions);
    let mut cmd = tokio::process::Command::new(cargo);
    cmd.args(["build", "-p", "ingest", "-p", "worker"]);
    if release {
        cmd.arg("--release");
    }
    anyhow::ensure!(
        cmd.status().await?.success(),
        "building ingest and worker failed"
    );
    Ok(())
}

async fn processed(db_url: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let Ok(mut conn) = AsyncPgConnection::establish(db_url).await else {
        return -1;
    };
    diesel::sql_query("SELECT count(*) AS n FROM processed_events")
        .get_result::<N>(&mut conn)
        .await
        .map_or(-1, |r| r.n)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    build_binaries().await?;
    let machine = machine();
    eprintln!("machine: {machine}");
    let url = shared::testkit::amqp_url();
    let secret: shared::WebhookSecret = SECRET.parse()?;
    let mut rows: Vec<Row> = Vec::new();

    eprintln!(
        "B_pub: raw lapin publisher, persistent + mandatory, 256 confirms in flight, quorum queue"
    );
    let b_pub = baseline::raw_publisher(&url, 30_000, 256)
        .await
        .context("B_pub")?;
    eprintln!(
        "  {:.0} msgs/s, confirm p50 {:.1} ms p99 {:.1} ms",
        b_pub.msgs_per_s, b_pub.confirm_p50_ms, b_pub.confirm_p99_ms
    );

    let mut stack = Stack::new("bench").await?;
    stack.start_ingest().await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(10))
        .build()?;
    eprintln!("ingest: open-loop load, 4 s a step, until p99 ≥ {P99_LIMIT_MS} ms");
    let rates = [
        500.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 8000.0, 10000.0, 12000.0,
    ];
    let steps = load::find_max_rate(
        &client,
        &stack.webhook_url(),
        &secret,
        &rates,
        Duration::from_secs(4),
        P99_LIMIT_MS,
    )
    .await;
    let best = load::max_sustained(&steps, P99_LIMIT_MS).cloned();
    let ingest_rate = best.as_ref().map_or(0.0, |s| s.accepted_per_s);

    eprintln!("B_sql: direct upserts into directory_users");
    let b_sql = baseline::sql_upserts(&stack.db_url, 50_000, 500, 2_000)
        .await
        .context("B_sql")?;
    eprintln!(
        "  batched {:.0} rows/s (500 a statement), single-row commits {:.0} rows/s",
        b_sql.batched_rows_per_s, b_sql.single_row_commits_per_s
    );

    // The apply queue now holds everything ingest accepted: drain it with one worker.
    let tap = shared::testkit::RabbitTap::connect(&url).await?;
    let queued = tap.depth(&stack.topology.apply_queue()).await?;
    eprintln!("worker: draining {queued} queued events");
    let started = std::time::Instant::now();
    stack.start_worker().await?;
    let db = stack.db_url.clone();
    load::time_until(
        i64::from(queued),
        || processed(&db),
        Duration::from_secs(900),
    )
    .await?;
    let drain = started.elapsed();
    let worker_rate = f64::from(queued) / drain.as_secs_f64();
    eprintln!("  {worker_rate:.0} events/s");

    eprintln!("end to end: ingest + worker, queue depth must stay flat");
    let mut e2e_best = 0.0;
    let mut base = 50_000_000;
    for rate in [
        250.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 8000.0,
    ] {
        let before = tap.depth(&stack.topology.apply_queue()).await?;
        let s = load::open_loop(
            &client,
            &stack.webhook_url(),
            &secret,
            rate,
            Duration::from_secs(5),
            base,
        )
        .await;
        base += 1_000_000;
        let after = tap.depth(&stack.topology.apply_queue()).await?;
        let flat = after <= before + (rate * 0.5) as u32 && s.errors == 0;
        eprintln!(
            "  e2e @ {rate:>5.0}/s: accepted {:>6.0}/s, queue {before} → {after} {}",
            s.accepted_per_s,
            if flat { "(flat)" } else { "(growing)" }
        );
        if !flat {
            break;
        }
        e2e_best = s.accepted_per_s;
    }
    // Let the queue settle, then measure 2xx → committed at half the sustained rate.
    let db = stack.db_url.clone();
    let total_now = i64::from(queued) + 1;
    let _ = load::time_until(total_now, || processed(&db), Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let half = (e2e_best / 2.0).max(50.0);
    let s = load::open_loop(
        &client,
        &stack.webhook_url(),
        &secret,
        half,
        Duration::from_secs(8),
        90_000_000,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut latencies = Vec::new();
    {
        #[derive(diesel::QueryableByName)]
        struct P {
            #[diesel(sql_type = diesel::sql_types::Text)]
            event_id: String,
            #[diesel(sql_type = diesel::sql_types::Timestamptz)]
            processed_at: chrono::DateTime<chrono::Utc>,
        }
        let mut conn = AsyncPgConnection::establish(&stack.db_url).await?;
        let rows_p: Vec<P> = diesel::sql_query("SELECT event_id, processed_at FROM processed_events WHERE event_id >= 'evt_bench_090000000'").load(&mut conn).await?;
        let at: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>> = rows_p
            .into_iter()
            .map(|p| (p.event_id, p.processed_at))
            .collect();
        for (id, t2xx) in &s.accepted_at {
            if let Some(done) = at.get(id) {
                // processed_at is the transaction's start: committed shortly after.
                latencies.push((*done - *t2xx).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let e2e_p50 = percentile(&latencies, 0.5);
    let e2e_p99 = percentile(&latencies, 0.99);
    eprintln!(
        "  at {half:.0}/s: 2xx → committed p50 {e2e_p50:.1} ms p99 {e2e_p99:.1} ms ({} of {} matched)",
        latencies.len(),
        s.accepted_at.len()
    );

    let ingest_rss = stack
        .ingest
        .as_ref()
        .and_then(|p| p.peak_rss_kib())
        .unwrap_or(0);
    let worker_rss = <[tests::procs::Proc]>::first(&stack.workers)
        .and_then(|p| p.peak_rss_kib())
        .unwrap_or(0);
    let ingest_ratio = ingest_rate / b_pub.msgs_per_s;
    let worker_ratio = worker_rate / b_sql.batched_rows_per_s;

    rows.push(row(
        "B_pub raw publisher",
        format!(
            "{:.0} msgs/s (confirm p50 {:.1} ms, p99 {:.1} ms)",
            b_pub.msgs_per_s, b_pub.confirm_p50_ms, b_pub.confirm_p99_ms
        ),
        "lapin, persistent, mandatory, 256 in flight, quorum queue",
    ));
    rows.push(row(
        "ingest max sustained (p99 < 50 ms)",
        best.as_ref().map_or("-".into(), |b| {
            format!(
                "{:.0} webhooks/s (p50 {:.1} ms, p99 {:.1} ms)",
                b.accepted_per_s, b.p50_ms, b.p99_ms
            )
        }),
        "open loop, signed ~1 KiB bodies, 202 only after confirm",
    ));
    rows.push(row(
        "ingest ÷ B_pub",
        format!("{ingest_ratio:.2}"),
        "target ≥ 0.7",
    ));
    rows.push(row(
        "B_sql batched",
        format!("{:.0} rows/s", b_sql.batched_rows_per_s),
        "500-row INSERT … ON CONFLICT per transaction",
    ));
    rows.push(row(
        "B_sql single-row commits",
        format!("{:.0} rows/s", b_sql.single_row_commits_per_s),
        "one upsert per transaction",
    ));
    rows.push(row(
        "worker apply (drain)",
        format!("{worker_rate:.0} events/s ({queued} events)"),
        "dedupe + ordering + memberships + roles + audit per event",
    ));
    rows.push(row(
        "worker ÷ B_sql batched",
        format!("{worker_ratio:.2}"),
        "target ≥ 0.7",
    ));
    rows.push(row(
        "worker ÷ B_sql single-row",
        format!("{:.2}", worker_rate / b_sql.single_row_commits_per_s),
        "",
    ));
    rows.push(row(
        "end to end sustained",
        format!("{e2e_best:.0} webhooks/s"),
        "apply queue depth flat over 5 s",
    ));
    rows.push(row(
        "2xx → committed",
        format!("p50 {e2e_p50:.1} ms, p99 {e2e_p99:.1} ms at {half:.0}/s"),
        "processed_at minus the 202's arrival",
    ));
    rows.push(row(
        "peak RSS",
        format!(
            "ingest {} MiB, worker {} MiB",
            ingest_rss / 1024,
            worker_rss / 1024
        ),
        "VmHWM",
    ));
    println!("\n| metric | value | note |\n|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {} |", r.metric, r.value, r.note);
    }
    let json = serde_json::json!({
        "machine": machine,
        "b_pub": b_pub, "ingest_steps": steps, "ingest_max_sustained": best, "ingest_ratio": ingest_ratio,
        "b_sql": b_sql, "worker_events_per_s": worker_rate, "worker_ratio_batched": worker_ratio,
        "e2e_sustained_per_s": e2e_best, "e2e_latency_ms": {"p50": e2e_p50, "p99": e2e_p99, "rate": half},
        "peak_rss_kib": {"ingest": ingest_rss, "worker": worker_rss},
    });
    let stem = std::env::var("BENCH_NAME")
        .unwrap_or_else(|_| chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string());
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    write(&dir, &stem, &machine, &json, &rows)?;
    eprintln!("written: bench/results/{stem}.json and .md");
    let _ = tap.connection.close(200, "done".into()).await;
    stack.teardown().await;
    Ok(())
}
