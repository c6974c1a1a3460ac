//! PostgreSQL access: the connection pool, embedded migrations, table definitions.

pub mod cached;
pub mod json;
pub mod migrate;
pub mod schema;
pub mod tls;

use diesel::ConnectionError;
use diesel_async::pooled_connection::bb8;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;
use std::time::Duration;

pub type Pool = bb8::Pool<AsyncPgConnection>;
pub type PoolError = bb8::RunError;

/// Bounds every pooled connection sets for its session, so a slow or hostile database (a lock
/// held by someone else, a runaway statement, a transaction left open) fails the work, which
/// then goes to a retry tier, instead of holding a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `statement_timeout`.
    pub statement: Duration,
    /// `lock_timeout`: waits on row, table and advisory locks.
    pub lock: Duration,
    /// `idle_in_transaction_session_timeout`.
    pub idle_in_transaction: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            statement: Duration::from_secs(30),
            lock: Duration::from_secs(5),
            idle_in_transaction: Duration::from_secs(60),
        }
    }
}

impl Timeouts {
    /// The `SET` statement of a new session.
    pub fn setup_sql(&self) -> String {
        let ms = |d: Duration| d.as_millis().max(1);
        format!(
            "SET statement_timeout = {}; SET lock_timeout = {}; SET idle_in_transaction_session_timeout = {}",
            ms(self.statement),
            ms(self.lock),
            ms(self.idle_in_transaction)
        )
    }
}

/// Opens a connection, encrypted and verified as the URL's `sslmode` / `sslrootcert` /
/// `sslcert` / `sslkey` ask ([`tls`]); plain without `sslmode`.
pub async fn establish(url: &str) -> diesel::ConnectionResult<AsyncPgConnection> {
    let bad = |e: &dyn std::fmt::Display| ConnectionError::BadConnection(e.to_string());
    let (url, tls) = tls::split(url).map_err(|e| bad(&e))?;
    let Some(config) = tls::client_config(&tls).map_err(|e| bad(&e))? else {
        return AsyncPgConnection::establish(&url).await;
    };
    let pg: tokio_postgres::Config = url.parse().map_err(|e| bad(&e))?;
    let (client, connection) = pg
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(config))
        .await
        .map_err(|e| bad(&shared::cli::one_line(&e)))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

/// Checks a `DATABASE_URL` at start-up without connecting: tokio-postgres can read it, its TLS
/// parameters make sense and their files hold certificates and keys. The message never holds
/// the password.
pub fn check_url(url: &str) -> Result<(), String> {
    let (base, tls) = tls::split(url).map_err(|e| shared::Chain(&e).to_string())?;
    base.parse::<tokio_postgres::Config>()
        .map_err(|e| format!("not a PostgreSQL URL: {}", shared::cli::one_line(&e)))?;
    tls::client_config(&tls).map_err(|e| shared::Chain(&e).to_string())?;
    Ok(())
}

/// Connects and applies the session bounds.
pub async fn connect(
    url: &str,
    timeouts: &Timeouts,
) -> diesel::ConnectionResult<AsyncPgConnection> {
    let mut conn = establish(url).await?;
    conn.batch_execute(&timeouts.setup_sql())
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// A pool with the default [`Timeouts`].
pub fn pool(url: &str, max_size: u32) -> Pool {
    pool_with(url, max_size, Timeouts::default())
}

/// A pool that connects lazily (start-up does not fail while the database is down); every
/// connection sets `timeouts` for its session.
pub fn pool_with(url: &str, max_size: u32, timeouts: Timeouts) -> Pool {
    let mut config = ManagerConfig::default();
    config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        async move { connect(&url, &timeouts).await }.boxed()
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    ::bb8::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(5))
        .idle_timeout(Some(Duration::from_secs(300)))
        .test_on_check_out(true)
        .build_unchecked(manager)
}

#[cfg(test)]
mod tests {
    use super::Timeouts;
    use std::time::Duration;

    #[test]
    fn session_bounds_in_milliseconds() {
        let t = Timeouts {
            statement: Duration::from_secs(30),
            lock: Duration::from_millis(1500),
            idle_in_transaction: Duration::ZERO,
        };
        assert_eq!(
            t.setup_sql(),
            "SET statement_timeout = 30000; SET lock_timeout = 1500; SET idle_in_transaction_session_timeout = 1"
        );
    }

    #[test]
    fn database_urls_are_checked_without_echoing_the_password() {
        assert_eq!(
            super::check_url("postgres://u:hunter2@127.0.0.1:5432/db"),
            Ok(())
        );
        assert_eq!(
            super::check_url("postgres://u:hunter2@h1,h2/db?target_session_attrs=read-write"),
            Ok(())
        );
        for url in [
            "postgres://u:hunter2@127.0.0.1:notaport/db",
            "postgres://u:hunter2@127.0.0.1/db?sslmode=sometimes",
            "postgres://u:hunter2@127.0.0.1/db?sslmode=verify-full",
            "postgres://u:hunter2@127.0.0.1/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "postgres://u:hunter2@127.0.0.1/db?connect_timeout=soon",
            "postgres:u:hunter2@host/db",
        ] {
            let error = super::check_url(url).unwrap_err();
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[tokio::test]
    async fn a_malformed_database_url_is_reported_without_its_password() {
        for url in [
            "postgres://u:hunter2@127.0.0.1:1/db",
            "postgres://u:hunter2@127.0.0.1:notaport/db",
            "postgres://u:hunter2@[::1/db",
            "postgres://u:hunter2@127.0.0.1/db?sslmode=sometimes",
            "postgres:u:hunter2@host/db",
        ] {
            let error = match super::connect(url, &Timeouts::default()).await {
                Ok(_) => panic!("{url} connected"),
                Err(e) => e.to_string(),
            };
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
