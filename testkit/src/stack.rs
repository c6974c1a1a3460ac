//! A whole deployment for one test: its own prefix, its own database, ingest and worker
//! processes, and a sender that behaves like Scalekit (retries until 2xx).

use crate::db::TestDb;
use crate::procs::{Proc, free_port};
use crate::tables::Tables;
use crate::{amqp_url, delete_topology, signed_headers, unique_prefix};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use shared::{Topology, WebhookSecret};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use crate::SECRET;

pub struct Stack {
    pub prefix: String,
    pub topology: Topology,
    /// The test's own database (`db.url` is how the harness reaches it).
    pub db: TestDb,
    /// What the binaries use to reach the database (a proxy in fault tests).
    pub worker_db_url: String,
    pub amqp: String,
    /// The URL ingest connects with (by default `amqp`; a publish-only user's in the
    /// least-privilege suite).
    pub ingest_amqp: String,
    /// More variables for every binary the stack starts (e.g. `AMQP_CA_FILE`).
    pub env: Vec<(String, String)>,
    pub client: reqwest::Client,
    pub ingest: Option<Proc>,
    pub workers: Vec<Proc>,
    pub ingest_port: u16,
    /// The pull API's port: held by one live worker at a time (the next worker started after
    /// it died takes it over, as a Kubernetes Service would move to another pod).
    pub api_port: u16,
    api_holder: Option<usize>,
    /// Where the stack's workers push changes (`CHANGES_WEBHOOK_URL`): the Node example
    /// application listens there when a suite runs it; signed with [`SECRET`].
    pub push_port: u16,
    /// Workers start with the deprovisioning brake off (the default here: the suites'
    /// corpora deactivate whole organizations on purpose; the brake has suites of its own).
    /// The bench sets it to `false` to measure the default configuration.
    pub brake_off: bool,
    /// Workers started with no push endpoint (`CHANGES_WEBHOOK_URL` unset).
    pub push_off: bool,
    /// `WORKER_RETRY_TIERS` of the stack's topology and workers (short ones by default).
    retry_tiers: &'static str,
}

/// The retry tiers of the stacks, short for quick suites.
const SHORT_TIERS: &str = "1s,3s,10s";
/// The worker's default retry tiers.
const DEFAULT_TIERS: &str = "5s,30s,5m,30m";

/// The pull API token the stacks' workers accept.
pub const API_TOKEN: &str = "tok_stack_0123456789abcdefghijklmnopqrstu";

/// The harness's own `INGEST_*` / `WORKER_*` (and `CHANGES_WEBHOOK_*`) variables, passed on to
/// the binaries (after the defaults, so they win): tuning knobs for benchmark runs, e.g.
/// `INGEST_PUBLISH_CHANNELS=1`, `CHANGES_WEBHOOK_BATCH=300`.
fn tuning_env(prefix: &str) -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with(prefix)
                && !matches!(
                    k.as_str(),
                    "INGEST_LISTEN"
                        | "WORKER_LISTEN"
                        | "CHANGES_WEBHOOK_URL"
                        | "CHANGES_WEBHOOK_SECRET"
                )
        })
        .collect()
}

impl Stack {
    /// Creates the database (migrated) and names; starts nothing yet.
    pub async fn new(tag: &str) -> anyhow::Result<Self> {
        let prefix = unique_prefix(tag);
        let db = TestDb::named(&prefix.to_lowercase()).await?;
        Self::with_db(prefix, db)
    }

    /// A stack whose database lives on a PostgreSQL pair of the test's own: the harness and the
    /// binaries reach whichever server is read-write; the binaries with `worker_url_params`
    /// added to their `DATABASE_URL` (e.g. `sslmode=require`).
    pub async fn on_pair(
        tag: &str,
        pair: &crate::pg_pair::PgPair,
        worker_url_params: &str,
    ) -> anyhow::Result<Self> {
        let prefix = unique_prefix(tag);
        let name = prefix.to_lowercase();
        let db = TestDb::on(&pair.url("postgres"), &name, pair.url(&name)).await?;
        let mut stack = Self::with_db(prefix, db)?;
        stack.worker_db_url = format!("{}&{worker_url_params}", stack.db.url);
        Ok(stack)
    }

    fn with_db(prefix: String, db: TestDb) -> anyhow::Result<Self> {
        Ok(Self {
            topology: Topology::new(prefix.clone()).with_tiers(vec![
                shared::RetryTier::new("1s", Duration::from_secs(1)),
                shared::RetryTier::new("3s", Duration::from_secs(3)),
                shared::RetryTier::new("10s", Duration::from_secs(10)),
            ]),
            prefix,
            worker_db_url: db.url.clone(),
            db,
            amqp: amqp_url(),
            ingest_amqp: amqp_url(),
            env: Vec::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?,
            ingest: None,
            workers: Vec::new(),
            ingest_port: free_port(),
            api_port: free_port(),
            api_holder: None,
            push_port: free_port(),
            brake_off: true,
            push_off: false,
            retry_tiers: SHORT_TIERS,
        })
    }

    fn common_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("AMQP_URL".into(), self.amqp.clone()),
            ("AMQP_PREFIX".into(), self.prefix.clone()),
        ];
        env.extend(self.env.iter().cloned());
        env
    }

    /// What the deploy's migration Job does before ingest starts: `worker migrate --topology`
    /// (ingest declares nothing; its broker user may only publish).
    pub async fn declare_topology(&self) -> anyhow::Result<()> {
        let status = tokio::process::Command::new(crate::procs::binary("worker")?)
            .args(["migrate", "--topology"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.common_env())
            .env("DATABASE_URL", &self.worker_db_url)
            .env("WORKER_RETRY_TIERS", self.retry_tiers)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .await?;
        anyhow::ensure!(status.success(), "worker migrate --topology: {status}");
        Ok(())
    }

    pub async fn start_ingest(&mut self) -> anyhow::Result<()> {
        self.declare_topology().await?;
        let mut env = self.common_env();
        env.push(("AMQP_URL".into(), self.ingest_amqp.clone()));
        env.push(("SCALEKIT_WEBHOOK_SECRET".into(), SECRET.into()));
        env.push((
            "INGEST_LISTEN".into(),
            format!("127.0.0.1:{}", self.ingest_port),
        ));
        env.push(("INGEST_HTTP_WORKERS".into(), "2".into()));
        env.push(("INGEST_SHUTDOWN_TIMEOUT".into(), "10s".into()));
        env.extend(tuning_env("INGEST_"));
        let p = Proc::spawn("ingest", "ingest", &[], &env, self.ingest_port)?;
        p.wait_ready(&self.client, Duration::from_secs(30)).await?;
        self.ingest = Some(p);
        Ok(())
    }

    pub async fn start_worker(&mut self) -> anyhow::Result<()> {
        self.start_worker_with(&[]).await
    }

    /// A worker with these variables set last (over the defaults and the tuning variables).
    pub async fn start_worker_with(&mut self, extra: &[(&str, &str)]) -> anyhow::Result<()> {
        let port = free_port();
        let mut env = self.common_env();
        env.push(("DATABASE_URL".into(), self.worker_db_url.clone()));
        env.push(("WORKER_LISTEN".into(), format!("127.0.0.1:{port}")));
        let holder_alive = self
            .api_holder
            .and_then(|i| self.workers.get_mut(i))
            .is_some_and(|w| w.child.try_wait().ok().flatten().is_none());
        let holds_api = !holder_alive;
        let api_port = if holds_api {
            self.api_port
        } else {
            free_port()
        };
        env.push(("CHANGES_API_LISTEN".into(), format!("127.0.0.1:{api_port}")));
        env.push(("CHANGES_API_TOKENS".into(), API_TOKEN.into()));
        if !self.push_off {
            env.push(("CHANGES_WEBHOOK_URL".into(), self.push_url()));
            env.push(("CHANGES_WEBHOOK_SECRET".into(), SECRET.into()));
        }
        env.push(("WORKER_RETRY_TIERS".into(), self.retry_tiers.into()));
        env.push(("DATABASE_POOL_SIZE".into(), "8".into()));
        if self.brake_off {
            env.push(("DEPROVISION_BRAKE_PERCENT".into(), "0".into()));
        }
        env.extend(tuning_env("WORKER_"));
        env.extend(tuning_env("DATABASE_POOL_SIZE"));
        env.extend(tuning_env("CHANGES_WEBHOOK_"));
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let label = format!("worker-{}", self.workers.len());
        let p = Proc::spawn("worker", &label, &["run"], &env, port)?;
        p.wait_ready(&self.client, Duration::from_secs(30)).await?;
        if holds_api {
            self.api_holder = Some(self.workers.len());
        }
        self.workers.push(p);
        Ok(())
    }

    /// The worker's default retry tiers (5 s, 30 s, 5 min, 30 min) instead of the short ones:
    /// for scenarios whose outage outlasts the short tiers. Call before starting anything.
    pub fn default_retry_tiers(&mut self) {
        self.retry_tiers = DEFAULT_TIERS;
        self.topology = Topology::new(self.prefix.clone()).with_tiers(vec![
            shared::RetryTier::new("5s", Duration::from_secs(5)),
            shared::RetryTier::new("30s", Duration::from_secs(30)),
            shared::RetryTier::new("5m", Duration::from_secs(300)),
            shared::RetryTier::new("30m", Duration::from_secs(1800)),
        ]);
    }

    /// Every `scim_worker_retries_total` sample of the stack's live workers, summed (events
    /// sent to a retry tier, every cause).
    pub async fn worker_retries(&self) -> f64 {
        let mut total = 0.0;
        for w in &self.workers {
            let base = format!("http://127.0.0.1:{}", w.port);
            if let Ok(m) = crate::metrics(&self.client, &base).await {
                total += m
                    .lines()
                    .filter(|l| l.starts_with("scim_worker_retries_total{"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>();
            }
        }
        total
    }

    /// The pull API, as an application in the cluster would reach it.
    pub fn changes_api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The application endpoint the workers push changes to.
    pub fn push_url(&self) -> String {
        format!("http://127.0.0.1:{}/scim/changes", self.push_port)
    }

    pub fn webhook_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}{}",
            self.ingest_port,
            ingest::WEBHOOK_PATH
        )
    }

    /// The provisioned tables as the worker left them.
    pub async fn tables(&self) -> anyhow::Result<Tables> {
        let mut conn = AsyncPgConnection::establish(&self.db.url).await?;
        Ok(crate::tables::read(&mut conn).await?)
    }

    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        self.db.try_count(sql).await
    }

    /// Sends every sample body (`crate::FIXTURES`) like Scalekit and waits until the worker
    /// has processed them all.
    pub async fn deliver_fixtures(&self) -> anyhow::Result<()> {
        let bodies: Vec<Vec<u8>> = crate::FIXTURES.iter().map(|f| crate::fixture(f)).collect();
        let n = bodies.len();
        send_all(
            &self.client,
            &self.webhook_url(),
            bodies,
            4,
            Arc::new(Delivery::default()),
        )
        .await?;
        self.wait_processed(n, Duration::from_secs(60)).await
    }

    /// Waits until `processed_events` holds `n` rows and the apply queue is empty.
    pub async fn wait_processed(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self
                .count("SELECT count(*) AS n FROM processed_events")
                .await
                .unwrap_or(-1);
            if got == i64::try_from(n).unwrap_or(i64::MAX) {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "processed {got} of {n} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn teardown(mut self) {
        if let Some(mut i) = self.ingest.take() {
            i.terminate(Duration::from_secs(10)).await;
        }
        for mut w in self.workers.drain(..) {
            w.terminate(Duration::from_secs(15)).await;
        }
        let _ = delete_topology(&self.amqp, &self.topology, &[]).await;
        self.db.drop_db().await;
    }
}

/// Delivery statistics of a [`send_all`] run.
#[derive(Debug, Default)]
pub struct Delivery {
    pub accepted: AtomicUsize,
    pub retried: AtomicUsize,
}

/// Sends every body like Scalekit: signed, retried (with backoff) until a 2xx, `concurrency` at
/// once. Returns when every body was answered 2xx.
pub async fn send_all(
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<Vec<u8>>,
    concurrency: usize,
    stats: Arc<Delivery>,
) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let secret: WebhookSecret = SECRET.parse()?;
    let results: Vec<anyhow::Result<()>> =
        futures_util::stream::iter(bodies.into_iter().enumerate())
            .map(|(i, body)| {
                let client = client.clone();
                let url = url.to_owned();
                let secret = secret.clone();
                let stats = Arc::clone(&stats);
                async move {
                    let webhook_id = format!("msg_e2e_{i}");
                    let mut delay = Duration::from_millis(100);
                    for _ in 0..200 {
                        let mut req = client.post(&url).body(body.clone());
                        for (k, v) in signed_headers(&secret, &webhook_id, &body) {
                            req = req.header(k, v);
                        }
                        match req.send().await {
                            Ok(r) if r.status().is_success() => {
                                stats.accepted.fetch_add(1, Ordering::Relaxed);
                                return Ok(());
                            }
                            Ok(r) if r.status().is_client_error() => {
                                anyhow::bail!("{} for a valid webhook", r.status())
                            }
                            _ => {
                                stats.retried.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(delay).await;
                                delay = (delay * 2).min(Duration::from_secs(1));
                            }
                        }
                    }
                    anyhow::bail!("webhook {i} never accepted")
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    results.into_iter().collect()
}
