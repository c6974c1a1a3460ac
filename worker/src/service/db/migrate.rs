//! Embedded migrations, applied under a PostgreSQL advisory lock so that replicas starting
//! together do not race. Runs on a blocking thread through diesel-async's connection wrapper
//! (no libpq needed).

use diesel::RunQueryDsl;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Key of the advisory lock held while migrating ("scim-mig").
const LOCK_KEY: i64 = 0x7363_696d_2d6d_6967;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot connect to the database")]
    Connect(#[source] diesel::ConnectionError),
    #[error("advisory lock")]
    Lock(#[source] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("migration task panicked or was cancelled")]
    Task,
}

/// Applies pending migrations; returns the versions applied (empty when up to date).
pub async fn run(url: &str) -> Result<Vec<String>, MigrateError> {
    let conn = super::establish(url).await.map_err(MigrateError::Connect)?;
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        diesel::sql_query(format!("SELECT pg_advisory_lock({LOCK_KEY})"))
            .execute(&mut conn)
            .map_err(MigrateError::Lock)?;
        let result = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(|v| v.to_string()).collect())
            .map_err(|e| MigrateError::Migration(e.to_string()));
        let _ =
            diesel::sql_query(format!("SELECT pg_advisory_unlock({LOCK_KEY})")).execute(&mut conn);
        result
    })
    .await
    .map_err(|_| MigrateError::Task)?
}
