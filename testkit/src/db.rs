//! A fresh, migrated database per test, dropped at the end.

use crate::postgres_base_url;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

pub struct TestDb {
    pub name: String,
    pub url: String,
}

async fn admin() -> AsyncPgConnection {
    AsyncPgConnection::establish(&format!("{}/postgres", postgres_base_url()))
        .await
        .expect("PostgreSQL reachable")
}

impl TestDb {
    pub async fn create() -> Self {
        Self::named(&format!("scim_test_{:016x}", rand::random::<u64>()))
            .await
            .unwrap()
    }

    /// A fresh migrated database called `name` (lower case letters, digits and `_`).
    pub async fn named(name: &str) -> anyhow::Result<Self> {
        let base = postgres_base_url();
        Self::on(&format!("{base}/postgres"), name, format!("{base}/{name}")).await
    }

    /// A fresh migrated database `name` on another server: created over `admin_url`, reached
    /// (and migrated) at `url`. [`TestDb::drop_db`] drops only on the machine's server (a
    /// server of a test's own goes away with the test).
    pub async fn on(admin_url: &str, name: &str, url: String) -> anyhow::Result<Self> {
        let mut conn = AsyncPgConnection::establish(admin_url).await?;
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        worker::service::db::migrate::run(&url).await?;
        Ok(Self {
            name: name.to_owned(),
            url,
        })
    }

    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.unwrap()
    }

    /// Drops the database (connections still open are closed by the server).
    pub async fn drop_db(self) {
        let mut conn = admin().await;
        diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }

    /// The `bigint` a query returns in a column named `n`.
    pub async fn count(&self, sql: &str) -> i64 {
        self.try_count(sql).await.unwrap()
    }

    /// [`TestDb::count`] that fails instead of panicking (while a fault test cuts the database).
    pub async fn try_count(&self, sql: &str) -> anyhow::Result<i64> {
        use diesel::sql_types::BigInt;
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = AsyncPgConnection::establish(&self.url).await?;
        Ok(diesel::sql_query(sql).get_result::<N>(&mut conn).await?.n)
    }
}
