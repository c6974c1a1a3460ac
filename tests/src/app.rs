//! The example applications as a test runs them, each on a database of its own: the Rust
//! `example-app` in-process, following a stack's change stream, and `examples/python-app` as a
//! process, pulling from the stack's pull API; and the check that each converged to the
//! directory.

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

/// Both example applications: the Rust one on the stream, the Python one on the pull API.
pub async fn start_both(stack: &Stack) -> anyhow::Result<Vec<RunningApp>> {
    Ok(vec![
        start(&stack.amqp, &stack.prefix).await?,
        start_python(stack).await?,
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
        let last = worker_db
            .try_count("SELECT COALESCE(max(seq), 0) AS n FROM changes")
            .await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let at = self
                .db
                .try_count("SELECT COALESCE(max(seq), 0) AS n FROM app_feed_position")
                .await
                .unwrap_or(-1);
            if at == last {
                break;
            }
            anyhow::ensure!(self.running(), "{name} stopped");
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{name} is at seq {at}, the feed at {last}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut app = AsyncPgConnection::establish(&self.db.url).await?;
        let got: Vec<AppUser> = diesel::sql_query(
            "SELECT organization_id, directory_user_id, email, full_name, is_active, roles FROM app_users ORDER BY 1, 2",
        )
        .load(&mut app)
        .await?;
        let mut directory = AsyncPgConnection::establish(&worker_db.url).await?;
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

    fn running(&mut self) -> bool {
        match &mut self.runner {
            Runner::InProcess { task, .. } => !task.is_finished(),
            Runner::Process(child) => child.try_wait().ok().flatten().is_none(),
        }
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
        }
        self.db.drop_db().await;
        Ok(())
    }
}
