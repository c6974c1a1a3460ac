//! A test's own database and broker topology, created together and removed together.

use crate::db::TestDb;
use crate::worker::Broker;

pub struct Env {
    pub db: TestDb,
    pub broker: Broker,
}

impl Env {
    /// A fresh migrated database and a broker topology under a unique prefix.
    pub async fn new() -> Self {
        Self {
            db: TestDb::create().await,
            broker: Broker::new().await,
        }
    }

    /// Deletes the topology and drops the database (stop the workers first).
    pub async fn finish(self) {
        self.broker.cleanup().await;
        self.db.drop_db().await;
    }
}
