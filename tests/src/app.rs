//! The example applications as a test runs them, each on a database of its own: the Rust
//! `example-app` in-process, following a stack's change stream; `examples/python-app` as a
//! process, pulling from the stack's pull API; `examples/node-app` as a process, taking the
//! changes the stack's workers push to it. And the check that each converged to the directory,
//! with each organization's changes received in `seq` order (`app_receipts`, where kept).

use change_feed::FeedConfig;
use diesel::sql_types::{Array, Bool, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use example_app::ExampleApp;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use testkit::db::TestDb;
use testkit::stack::Stack;
use tokio_util::sync::CancellationToken;

pub struct RunningApp {
    pub name: &'static str,
    pub db: TestDb,
    /// How long [`RunningApp::converged`] gives it once the pipeline is done.
    pub converge_within: Duration,
    /// The stream reader's counters (the Rust application).
    pub stats: Option<change_feed::FeedStats>,
    runner: Runner,
}

enum Runner {
    InProcess {
        stop: CancellationToken,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    },
    Process(tokio::process::Child),
    /// A process that a test may kill and start again.
    Restartable {
        child: Option<tokio::process::Child>,
        spawn: Box<dyn Fn() -> std::io::Result<tokio::process::Child> + Send + Sync>,
        port: u16,
    },
}

/// Starts the Rust example application on a fresh database, following `prefix`'s stream.
pub async fn start(amqp_url: &str, prefix: &str) -> anyhow::Result<RunningApp> {
    let db = TestDb::named(&format!("{}_app", prefix.to_lowercase())).await?;
    let mut app = ExampleApp::connect(&db.url).await?;
    let stop = CancellationToken::new();
    let config = FeedConfig::new(amqp_url, prefix, "example-app-test");
    let stats = config.stats.clone();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        change_feed::run(&config, &mut app, &token).await?;
        Ok(())
    });
    Ok(RunningApp {
        name: "example-app (stream)",
        db,
        converge_within: Duration::from_secs(60),
        stats: Some(stats),
        runner: Runner::InProcess { stop, task },
    })
}

/// The Python the test command prepared for `examples/python-app` (`PYTHON_APP_PYTHON`, else
/// the virtualenv `scripts/python-app-venv` makes).
fn python() -> anyhow::Result<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = std::env::var_os("PYTHON_APP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/python-app-venv/bin/python"));
    anyhow::ensure!(
        path.exists(),
        "{} missing: run scripts/python-app-venv (the test command does)",
        path.display()
    );
    Ok(path)
}

/// Starts `examples/python-app` on a fresh database, pulling from the stack's pull API.
pub async fn start_python(stack: &Stack) -> anyhow::Result<RunningApp> {
    let db = TestDb::named(&format!("{}_py", stack.prefix.to_lowercase())).await?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/python-app/app.py");
    let child = tokio::process::Command::new(python()?)
        .arg(script)
        .env("CHANGES_API_URL", stack.changes_api_url())
        .env("CHANGES_API_TOKEN", testkit::stack::API_TOKEN)
        .env("APP_DATABASE_URL", &db.url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    Ok(RunningApp {
        name: "python-app (pull)",
        db,
        converge_within: Duration::from_secs(60),
        stats: None,
        runner: Runner::Process(child),
    })
}

/// `examples/node-app`, its dependencies installed by the test command (`npm ci`).
fn node_app() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/node-app");
    anyhow::ensure!(
        dir.join("node_modules/standardwebhooks").exists(),
        "{}/node_modules missing: run scripts/node-app-deps (the test command does)",
        dir.display()
    );
    Ok(dir)
}

/// Starts `examples/node-app` on `stack.push_port`, where the stack's workers push changes,
/// on a fresh database (reached through `db_url`'s host and port when given: a proxy a test
/// may cut).
pub async fn start_node(stack: &Stack, db_via: Option<u16>) -> anyhow::Result<RunningApp> {
    let db = TestDb::named(&format!("{}_node", stack.prefix.to_lowercase())).await?;
    let url = match db_via {
        Some(port) => format!("postgres://postgres@127.0.0.1:{port}/{}", db.name),
        None => db.url.clone(),
    };
    let dir = node_app()?;
    let port = stack.push_port;
    let spawn = move || {
        tokio::process::Command::new("node")
            .arg(dir.join("app.js"))
            .env("PORT", port.to_string())
            .env("CHANGES_WEBHOOK_SECRET", testkit::SECRET)
            .env("APP_DATABASE_URL", &url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
    };
    let mut app = RunningApp {
        name: "node-app (push)",
        db,
        converge_within: Duration::from_secs(60),
        stats: None,
        runner: Runner::Restartable {
            child: None,
            spawn: Box::new(spawn),
            port,
        },
    };
    app.restart().await?;
    Ok(app)
}

/// The three example applications: the Rust one on the stream, the Python one on the pull
/// API, the Node one taking pushed changes.
pub async fn start_all(stack: &Stack) -> anyhow::Result<Vec<RunningApp>> {
    Ok(vec![
        start(&stack.amqp, &stack.prefix).await?,
        start_python(stack).await?,
        start_node(stack, None).await?,
    ])
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct AppUser {
    #[diesel(sql_type = Text)]
    organization_id: String,
    #[diesel(sql_type = Text)]
    directory_user_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    email: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    full_name: Option<String>,
    #[diesel(sql_type = Bool)]
    is_active: bool,
    #[diesel(sql_type = Array<Text>)]
    roles: Vec<String>,
}

#[derive(diesel::QueryableByName)]
struct OrgSeq {
    #[diesel(sql_type = Text)]
    organization_id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
}

#[derive(diesel::QueryableByName)]
struct Seq {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

impl RunningApp {
    /// Waits until the application applied the outbox's last change, then checks that its
    /// users are the directory's provisioned users (in its own shape) and that every inactive
    /// user has no live session.
    pub async fn converged(&mut self, worker_db: &TestDb) -> anyhow::Result<()> {
        let name = self.name;
        let timeout = self.converge_within;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut directory = AsyncPgConnection::establish(&worker_db.url).await?;
        let changes: Vec<OrgSeq> =
            diesel::sql_query("SELECT organization_id, seq FROM changes ORDER BY seq")
                .load(&mut directory)
                .await?;
        let mut want: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for c in &changes {
            want.entry(c.organization_id.clone())
                .or_default()
                .push(c.seq);
        }
        let last = changes.last().map_or(0, |c| c.seq);
        // A reader of the whole feed stores one position; a pushed-to application one per
        // organization (organizations arrive concurrently).
        let per_org = self
            .db
            .try_count("SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'app_feed_position'")
            .await?
            == 0;
        loop {
            let at = if per_org {
                let mut app = AsyncPgConnection::establish(&self.db.url).await?;
                let got: Vec<OrgSeq> = diesel::sql_query(
                    "SELECT organization_id, seq FROM app_org_position ORDER BY 1",
                )
                .load(&mut app)
                .await
                .unwrap_or_default();
                let behind = want
                    .iter()
                    .filter(|(org, seqs)| {
                        got.iter()
                            .find(|g| &g.organization_id == *org)
                            .map(|g| g.seq)
                            != seqs.last().copied()
                    })
                    .count();
                if behind == 0 {
                    break;
                }
                format!("{behind} organizations behind")
            } else {
                let at = self
                    .db
                    .try_count("SELECT COALESCE(max(seq), 0) AS n FROM app_feed_position")
                    .await
                    .unwrap_or(-1);
                if at == last {
                    break;
                }
                format!("seq {at}")
            };
            anyhow::ensure!(self.running(), "{name} stopped");
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{name} is at {at}, the feed at {last}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let receipts = self
            .db
            .try_count("SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'app_receipts'")
            .await?;
        if receipts > 0 {
            let mut app = AsyncPgConnection::establish(&self.db.url).await?;
            let arrivals: Vec<OrgSeq> =
                diesel::sql_query("SELECT organization_id, seq FROM app_receipts ORDER BY arrival")
                    .load(&mut app)
                    .await?;
            let arrivals: Vec<(String, i64)> = arrivals
                .into_iter()
                .map(|a| (a.organization_id, a.seq))
                .collect();
            let again = testkit::receiver::check_arrivals(&arrivals, &want)
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            eprintln!(
                "{name}: {} changes received in seq order per organization, {again} again",
                arrivals.len() - again
            );
        }
        let mut app = AsyncPgConnection::establish(&self.db.url).await?;
        let got: Vec<AppUser> = diesel::sql_query(
            "SELECT organization_id, directory_user_id, email, full_name, is_active, roles FROM app_users ORDER BY 1, 2",
        )
        .load(&mut app)
        .await?;
        let want: Vec<AppUser> = diesel::sql_query(
            "SELECT u.organization_id, u.directory_user_id, u.email, \
             COALESCE(u.display_name, NULLIF(concat_ws(' ', u.given_name, u.family_name), '')) AS full_name, u.active AS is_active, \
             ARRAY(SELECT DISTINCT r.role_name FROM user_roles r WHERE r.organization_id = u.organization_id \
                   AND r.directory_user_id = u.directory_user_id ORDER BY 1) AS roles \
             FROM directory_users u WHERE u.provisioned_at IS NOT NULL AND u.erased_at IS NULL ORDER BY 1, 2",
        )
        .load(&mut directory)
        .await?;
        let by_key = |v: Vec<AppUser>| -> BTreeMap<(String, String), AppUser> {
            v.into_iter()
                .map(|u| ((u.organization_id.clone(), u.directory_user_id.clone()), u))
                .collect()
        };
        let (got, want) = (by_key(got), by_key(want));
        anyhow::ensure!(
            got.len() == want.len(),
            "{name} has {} users, the directory {} provisioned",
            got.len(),
            want.len()
        );
        for (key, w) in &want {
            let g = got.get(key);
            anyhow::ensure!(
                g == Some(w),
                "{name}: {key:?}: application {g:?}, directory {w:?}"
            );
        }
        let live_sessions_of_inactive: Seq = diesel::sql_query(
            "SELECT count(*) AS n FROM app_sessions s JOIN app_users u USING (organization_id, directory_user_id) \
             WHERE NOT u.is_active AND s.revoked_at IS NULL",
        )
        .get_result(&mut app)
        .await?;
        anyhow::ensure!(
            live_sessions_of_inactive.n == 0,
            "{name}: {} sessions of deprovisioned users are still live",
            live_sessions_of_inactive.n
        );
        Ok(())
    }

    /// Whether it is still running (a restartable one counts as running while a test holds
    /// it down).
    pub fn running(&mut self) -> bool {
        match &mut self.runner {
            Runner::InProcess { task, .. } => !task.is_finished(),
            Runner::Process(child) => child.try_wait().ok().flatten().is_none(),
            // Down on purpose while a test holds it down.
            Runner::Restartable { child, .. } => child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_none()),
        }
    }

    /// Kills a restartable application (SIGKILL): it is down until [`RunningApp::restart`].
    pub async fn kill(&mut self) {
        if let Runner::Restartable { child, .. } = &mut self.runner
            && let Some(mut c) = child.take()
        {
            let _ = c.kill().await;
        }
    }

    /// Starts a restartable application again and waits until it listens.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let Runner::Restartable { child, spawn, port } = &mut self.runner else {
            anyhow::bail!("{} cannot be restarted", self.name);
        };
        *child = Some(spawn()?);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", *port))
            .await
            .is_err()
        {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{} does not listen on {port}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        match self.runner {
            Runner::InProcess { stop, task } => {
                stop.cancel();
                task.await??;
            }
            Runner::Process(mut child) => {
                let _ = child.kill().await;
            }
            Runner::Restartable { child, .. } => {
                if let Some(mut c) = child {
                    let _ = c.kill().await;
                }
            }
        }
        self.db.drop_db().await;
        Ok(())
    }
}
