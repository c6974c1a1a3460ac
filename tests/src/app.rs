//! The example application as a test runs it: in-process, on a database of its own, following
//! a stack's change feed; and the check that it converged to the directory.

use change_feed::FeedConfig;
use diesel::sql_types::{Array, Bool, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use example_app::ExampleApp;
use std::collections::BTreeMap;
use std::time::Duration;
use testkit::db::TestDb;
use tokio_util::sync::CancellationToken;

pub struct RunningApp {
    pub db: TestDb,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts the example application on a fresh database, following `prefix`'s feed.
pub async fn start(amqp_url: &str, prefix: &str) -> anyhow::Result<RunningApp> {
    let db = TestDb::named(&format!("{}_app", prefix.to_lowercase())).await?;
    let mut app = ExampleApp::connect(&db.url).await?;
    let stop = CancellationToken::new();
    let config = FeedConfig::new(amqp_url, prefix, "example-app-test");
    let token = stop.clone();
    let task = tokio::spawn(async move {
        change_feed::run(&config, &mut app, &token).await?;
        Ok(())
    });
    Ok(RunningApp { db, stop, task })
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
    pub async fn converged(&self, worker_db: &TestDb, timeout: Duration) -> anyhow::Result<()> {
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
            anyhow::ensure!(!self.task.is_finished(), "the example application stopped");
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the example application is at seq {at}, the feed at {last}"
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
            "the application has {} users, the directory {} provisioned",
            got.len(),
            want.len()
        );
        for (key, w) in &want {
            let g = got.get(key);
            anyhow::ensure!(g == Some(w), "{key:?}: application {g:?}, directory {w:?}");
        }
        let live_sessions_of_inactive: Seq = diesel::sql_query(
            "SELECT count(*) AS n FROM app_sessions s JOIN app_users u USING (organization_id, directory_user_id) \
             WHERE NOT u.is_active AND s.revoked_at IS NULL",
        )
        .get_result(&mut app)
        .await?;
        anyhow::ensure!(
            live_sessions_of_inactive.n == 0,
            "{} sessions of deprovisioned users are still live",
            live_sessions_of_inactive.n
        );
        Ok(())
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await??;
        self.db.drop_db().await;
        Ok(())
    }
}
