//! The one test-support crate (a dev-dependency of `ingest`, `worker` and `tests`, and what the
//! bench builds on). Each test is isolated: its own queue prefix and its own database.
//!
//! - [`db`]: a fresh migrated database, dropped at the end; [`tables`] reads its provisioned state;
//! - [`env`]: a database and a broker topology created and finished together;
//! - [`worker`] / [`ingest`]: the real binaries' libraries started in-process on port 0;
//! - [`procs`] / [`stack`]: the real binaries as processes, a whole deployment per test;
//! - [`node`] / [`cluster`]: RabbitMQ nodes of a test's own; [`pg_pair`]: a PostgreSQL primary
//!   and standby of a test's own;
//! - here: service URLs, unique prefixes, signed webhook headers, the sample events,
//!   [`wait_until`], [`metrics`] / [`sample`]; [`TcpProxy`] to cut connections; [`RabbitTap`]
//!   to watch a test's exchange; [`receiver`] an application's endpoint for pushed changes.
//!
//! Must never talk to anything but services on this machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
pub mod db;
pub mod env;
pub mod feed;
pub mod ingest;
pub mod node;
pub mod pg_pair;
pub mod procs;
mod proxy;
mod rabbit;
pub mod receiver;
pub mod stack;
pub mod tables;
pub mod tls;
pub mod worker;

pub use proxy::TcpProxy;
pub use rabbit::{RabbitTap, delete_topology};

use shared::{WebhookSecret, sign};
use std::time::Duration;

/// The webhook secret every test signs with, and an older one still accepted (rotation).
pub const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const OLD_SECRET: &str = "whsec_dGVzdHNlY3JldA==";

/// Polls `check` every 100 ms until it holds or `timeout` passes; whether it held.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The broker URL for tests: `TEST_AMQP_URL` or the local default.
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL").unwrap_or_else(|_| AMQP_URL.to_owned())
}

/// A prefix no other test uses, e.g. `t_3f9a1c…`.
pub fn unique_prefix(tag: &str) -> String {
    format!("t_{tag}_{:016x}", rand::random::<u64>())
}

/// The headers Scalekit would send for `body`, signed now.
pub fn signed_headers(
    secret: &WebhookSecret,
    webhook_id: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    signed_headers_at(secret, webhook_id, body, chrono::Utc::now().timestamp())
}

/// The headers for `body` signed at `timestamp`.
pub fn signed_headers_at(
    secret: &WebhookSecret,
    webhook_id: &str,
    body: &[u8],
    timestamp: i64,
) -> Vec<(String, String)> {
    vec![
        ("webhook-id".to_owned(), webhook_id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp.to_string()),
        (
            "webhook-signature".to_owned(),
            sign(secret, webhook_id, timestamp, body),
        ),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]
}

/// The PostgreSQL server for tests: `TEST_DATABASE_URL` (without a database name) or local.
pub fn postgres_base_url() -> String {
    std::env::var("TEST_DATABASE_BASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// The sample event bodies of `fixtures/events`, in `occurred_at` order.
pub const FIXTURES: [&str; 8] = [
    "01_directory_enabled.json",
    "02_group_created.json",
    "03_user_created.json",
    "04_user_updated.json",
    "05_group_updated.json",
    "06_user_deleted.json",
    "07_group_deleted.json",
    "08_directory_disabled.json",
];

/// The bytes of one sample body (`fixtures/events/NAME` in the repository).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/events")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `/metrics` exposition of a binary served at `base` (`http://127.0.0.1:PORT`).
pub async fn metrics(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    Ok(client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?)
}

/// The value of the unlabelled sample `name` in an exposition, when there is one.
pub fn sample(exposition: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name} ");
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}
