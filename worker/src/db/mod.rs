//! PostgreSQL access: the connection pool, embedded migrations, table definitions.

pub mod migrate;
pub mod schema;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::bb8;
use std::time::Duration;

pub type Pool = bb8::Pool<AsyncPgConnection>;
pub type PoolError = bb8::RunError;

/// A pool that connects lazily (start-up does not fail while the database is down).
pub fn pool(url: &str, max_size: u32) -> Pool {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
    ::bb8::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(5))
        .idle_timeout(Some(Duration::from_secs(300)))
        .test_on_check_out(true)
        .build_unchecked(manager)
}
