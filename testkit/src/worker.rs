//! The real worker (its library, in-process, health server on port 0) against the real broker,
//! and a test's broker side: its topology, a publisher that publishes as ingest does, a tap.

use crate::{RabbitTap, amqp_url, delete_topology, unique_prefix};
use lapin::options::ConfirmSelectOptions;
use shared::amqp::{declare_topology, properties, publish_confirmed};
use shared::{MessageMeta, Source, Topology, WebhookEvent};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use worker::Worker;
use worker::cli::{Cli, Command};
use worker::service::config::RunArgs;

pub struct TestWorker {
    pub base: String,
    /// The pull API's base URL, when the worker was started with `--changes-api-listen`.
    pub api: Option<String>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
    pub metrics: std::sync::Arc<worker::service::metrics::Metrics>,
}

impl TestWorker {
    pub async fn stop(self) {
        self.stop.cancel();
        // A stopping worker bounds each step: its lanes by the shutdown timeout (8 s), the
        // relay's last round (4 s), then closing; the pods' grace period is 30 s.
        tokio::time::timeout(Duration::from_secs(25), self.task)
            .await
            .expect("worker stops within 25 s")
            .unwrap()
            .unwrap();
    }
}

/// The retry tiers of in-process test workers: short, so retries happen within a test.
pub const RETRY_TIERS: &str = "1s,2s,4s,8s";

/// The options of `worker run` for a test: its prefix and database, short retry tiers.
pub fn cli(prefix: &str, database_url: &str, extra: &[&str]) -> RunArgs {
    let mut args: Vec<String> = [
        "worker",
        "--amqp-url",
        &amqp_url(),
        "--amqp-prefix",
        prefix,
        "--database-url",
        database_url,
        "--listen",
        "127.0.0.1:0",
        "--retry-tiers",
        RETRY_TIERS,
        "--log-format",
        "pretty",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // The deprovisioning brake is off unless a test turns it on: the suites' corpora deactivate
    // more than 20 % of an organization on purpose (worker/tests/brake.rs tests the brake).
    if !extra.contains(&"--deprovision-brake-percent") {
        args.extend(["--deprovision-brake-percent".to_owned(), "0".to_owned()]);
    }
    if extra.contains(&"--retry-tiers") {
        let i = args.iter().position(|a| a == "--retry-tiers").unwrap();
        args.drain(i..i + 2);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    match shared::cli::parse_without_env::<Cli>(args)
        .unwrap()
        .into_command()
    {
        Command::Run(run) => run,
        other => panic!("not `worker run`: {other:?}"),
    }
}

pub async fn spawn_worker(prefix: &str, database_url: &str, extra: &[&str]) -> TestWorker {
    let cli = cli(prefix, database_url, extra);
    let w = Worker::build(cli).unwrap();
    assert!(w.link().wait_ready(Duration::from_secs(20)).await);
    assert!(w.publish_link().wait_ready(Duration::from_secs(20)).await);
    let base = format!("http://{}", w.addr());
    let api = w.changes_api_addr().map(|a| format!("http://{a}"));
    let stop = w.stop_token();
    let metrics = w.metrics();
    let task = tokio::spawn(w.run_until_stopped());
    TestWorker {
        base,
        api,
        stop,
        task,
        metrics,
    }
}

/// A test's broker side: topology, a publisher and a tap.
pub struct Broker {
    pub prefix: String,
    pub topology: Topology,
    pub tap: RabbitTap,
    channel: lapin::Channel,
}

impl Broker {
    pub async fn new() -> Self {
        let prefix = unique_prefix("worker");
        let topology = Topology::new(prefix.clone())
            .with_tiers(cli(&prefix, "postgres://x", &[]).broker.retry_tiers.0);
        let tap = RabbitTap::connect(&amqp_url()).await.unwrap();
        declare_topology(&tap.connection, &topology).await.unwrap();
        let channel = tap.connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        Self {
            prefix,
            topology,
            tap,
            channel,
        }
    }

    /// Publishes an event body as ingest would.
    pub async fn publish(&self, body: &[u8]) {
        let (routing_key, meta) = match WebhookEvent::parse(body) {
            Ok(e) => (
                e.envelope.event_type.clone(),
                MessageMeta::of_envelope(&e.envelope, Source::Webhook)
                    .with_webhook_id(format!("msg_{}", e.envelope.id)),
            ),
            Err(_) => (
                "organization.directory.user_created".to_owned(),
                MessageMeta::event(
                    "poison",
                    "organization.directory.user_created",
                    None,
                    Source::Webhook,
                ),
            ),
        };
        publish_confirmed(
            &self.channel,
            &self.topology.exchange(),
            &routing_key,
            body,
            properties(&meta),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    }

    /// Messages ready in the apply queue.
    pub async fn apply_depth(&self) -> u32 {
        self.tap.depth(&self.topology.apply_queue()).await.unwrap()
    }

    /// Messages ready in the dead-letter queue.
    pub async fn dead_depth(&self) -> u32 {
        self.tap.depth(&self.topology.dead_queue()).await.unwrap()
    }

    pub async fn cleanup(self) {
        let _ = self.tap.connection.close(200, "done".into()).await;
        delete_topology(&amqp_url(), &self.topology, &[])
            .await
            .unwrap();
    }
}
