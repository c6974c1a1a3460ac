//! Faults while a stream flows: every webhook answered 2xx has its effect exactly once, the
//! sender retries the others as Scalekit would, the end state equals the model's, the change
//! feed is complete and in commit order (re-published changes keep their id), and the example
//! application following it converges.
//! The scenarios run one at a time (they restart shared services).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use testkit::TcpProxy;
use testkit::stack::Stack;
use tests::corpus::generate;
use tests::scenario::{Sender, send};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

async fn wait_progress(stack: &Stack, at_least: i64) {
    tests::scenario::wait_progress(stack, at_least)
        .await
        .unwrap();
}

async fn finish(
    stack: Stack,
    corpus: &tests::corpus::Corpus,
    sender: Sender,
    apps: Vec<tests::app::RunningApp>,
) {
    tests::scenario::finish(stack, corpus, sender, apps)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_9_mid_stream_then_restarted() {
    let _serial = SERIAL.lock().await;
    let corpus = generate(1, 10, 30, 2000);
    let mut stack = Stack::new("kill9").await.unwrap();
    stack.start_worker().await.unwrap();
    stack.start_ingest().await.unwrap();
    let apps = tests::app::start_all(&stack).await.unwrap();
    let sender = send(&stack, &corpus, 1);
    wait_progress(&stack, 500).await;
    stack.workers[0].kill9().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.start_worker().await.unwrap();
    finish(stack, &corpus, sender, apps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restarted_mid_stream() {
    let _serial = SERIAL.lock().await;
    let corpus = generate(2, 10, 30, 2000);
    let mut stack = Stack::new("rmq").await.unwrap();
    stack.start_worker().await.unwrap();
    stack.start_ingest().await.unwrap();
    let apps = tests::app::start_all(&stack).await.unwrap();
    let sender = send(&stack, &corpus, 2);
    wait_progress(&stack, 400).await;
    let stop = tokio::process::Command::new("rabbitmqctl")
        .arg("stop_app")
        .output()
        .await
        .unwrap();
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = tokio::process::Command::new("rabbitmqctl")
        .arg("start_app")
        .output()
        .await
        .unwrap();
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    let _ = tokio::process::Command::new("rabbitmqctl")
        .args(["await_startup", "--timeout", "60"])
        .output()
        .await;
    // Every application is live again within 15 s, and the stream reader never needed its
    // silence check to replace a subscription (`finish`).
    let mut apps = apps;
    for app in &mut apps {
        app.converge_within = Duration::from_secs(15);
    }
    finish(stack, &corpus, sender, apps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_for_seconds_mid_stream() {
    let _serial = SERIAL.lock().await;
    let corpus = generate(3, 10, 30, 2000);
    let mut stack = Stack::new("pgdown").await.unwrap();
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap())
        .await
        .unwrap();
    stack.worker_db_url = format!(
        "postgres://postgres@127.0.0.1:{}/{}",
        proxy.port(),
        stack.db.name
    );
    stack.start_worker().await.unwrap();
    stack.start_ingest().await.unwrap();
    let apps = tests::app::start_all(&stack).await.unwrap();
    let sender = send(&stack, &corpus, 3);
    wait_progress(&stack, 400).await;
    proxy.cut().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.restore().await.unwrap();
    // The relay pauses while the database is away and resumes after: the stream reader's
    // silence check must not take the resumed deliveries for a silent subscription (it once
    // did: `docs/consuming.md`, "Stream, any other language"). `finish` requires none.
    finish(stack, &corpus, sender, apps).await;
    let _ = proxy;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_sigterm_under_load_then_restarted() {
    let _serial = SERIAL.lock().await;
    let corpus = generate(4, 10, 30, 2000);
    let mut stack = Stack::new("term").await.unwrap();
    stack.start_worker().await.unwrap();
    stack.start_ingest().await.unwrap();
    let apps = tests::app::start_all(&stack).await.unwrap();
    let sender = send(&stack, &corpus, 4);
    wait_progress(&stack, 400).await;
    let code = stack
        .ingest
        .as_mut()
        .unwrap()
        .terminate(Duration::from_secs(20))
        .await;
    assert_eq!(code, Some(0), "ingest exits 0 on SIGTERM after draining");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.start_ingest().await.unwrap();
    finish(stack, &corpus, sender, apps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_consuming_at_once() {
    let _serial = SERIAL.lock().await;
    let corpus = generate(5, 10, 30, 2000);
    let mut stack = Stack::new("two").await.unwrap();
    stack.start_worker().await.unwrap();
    stack.start_worker().await.unwrap();
    stack.start_ingest().await.unwrap();
    let apps = tests::app::start_all(&stack).await.unwrap();
    let sender = send(&stack, &corpus, 5);
    wait_progress(&stack, 200).await;
    let mut leaders = 0.0;
    for w in &stack.workers {
        leaders += gauge(&stack, w, "scim_changes_relay_leader").await;
    }
    assert_eq!(
        leaders, 1.0,
        "exactly one of the two workers relays the changes"
    );
    finish(stack, &corpus, sender, apps).await;
}

/// A worker's gauge, read from its `/metrics` (0 when absent).
async fn gauge(stack: &Stack, worker: &testkit::procs::Proc, name: &str) -> f64 {
    let base = format!("http://127.0.0.1:{}", worker.port);
    let text = testkit::metrics(&stack.client, &base).await.unwrap();
    testkit::sample(&text, name).unwrap_or(0.0)
}

/// Sets RabbitMQ's memory high watermark; the guard puts the previous one back, even when the
/// test fails.
struct MemoryAlarm(String);

impl MemoryAlarm {
    fn raise() -> Self {
        let env = std::process::Command::new("rabbitmqctl")
            .args([
                "-q",
                "eval",
                "vm_memory_monitor:get_vm_memory_high_watermark().",
            ])
            .output()
            .unwrap();
        let previous = String::from_utf8_lossy(&env.stdout).trim().to_owned();
        let previous = if previous.parse::<f64>().is_ok() {
            previous
        } else {
            "0.4".to_owned()
        };
        let set = std::process::Command::new("rabbitmqctl")
            .args(["-q", "set_vm_memory_high_watermark", "0.000001"])
            .status()
            .unwrap();
        assert!(set.success());
        Self(previous)
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "set_vm_memory_high_watermark", &self.0])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_alarm_blocks_publishing_but_applied_events_are_still_acked() {
    let _serial = SERIAL.lock().await;
    let corpus = generate(5, 10, 30, 3000);
    let mut stack = Stack::new("alarm").await.unwrap();
    stack.start_ingest().await.unwrap();
    send(&stack, &corpus, 5).task.await.unwrap().unwrap();
    // Everything is queued; now the broker blocks every connection that publishes.
    let alarm = MemoryAlarm::raise();
    stack.start_worker().await.unwrap();
    // More than the prefetch (2000) must be acked: on one connection, the change relay's first
    // blocked publish would stop the broker reading that connection's acks too.
    stack
        .wait_processed(corpus.distinct_ids, Duration::from_secs(120))
        .await
        .unwrap();
    let tap = testkit::RabbitTap::connect(&stack.amqp).await.unwrap();
    assert_eq!(
        tap.depth(&stack.topology.apply_queue()).await.unwrap(),
        0,
        "acked while publishing is blocked"
    );
    assert!(
        stack
            .count("SELECT count(*) AS n FROM changes WHERE published_at IS NULL")
            .await
            .unwrap()
            > 0,
        "the relay could not publish during the alarm"
    );
    // The relay's gauges keep moving while it cannot publish: it still leads, and its lag
    // grows with the oldest unpublished change, so the lagging alert can fire.
    let worker = &stack.workers[0];
    let first_lag = gauge(&stack, worker, "scim_changes_relay_lag_seconds").await;
    let grew = testkit::wait_until(Duration::from_secs(30), || async {
        gauge(&stack, worker, "scim_changes_relay_lag_seconds").await >= first_lag + 5.0
    })
    .await;
    assert!(
        grew,
        "the relay's lag stayed at {first_lag} s during the alarm"
    );
    let leads = testkit::wait_until(Duration::from_secs(10), || async {
        gauge(&stack, worker, "scim_changes_relay_leader").await == 1.0
    })
    .await;
    assert!(leads, "the relay does not lead during the alarm");
    drop(alarm);
    let done = Sender {
        task: tokio::spawn(async { Ok(()) }),
        stats: Default::default(),
    };
    finish(stack, &corpus, done, Vec::new()).await;
}
