//! A fresh, migrated database per test, dropped at the end.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared::testkit::postgres_base_url;

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
        let name = format!("scim_test_{:016x}", rand::random::<u64>());
        let mut conn = admin().await;
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = format!("{}/{name}", postgres_base_url());
        worker::db::migrate::run(&url).await.unwrap();
        Self { name, url }
    }

    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.unwrap()
    }

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
}
