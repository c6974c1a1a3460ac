//! B_inline: the seed's design (`src/bin/inline_seed.rs`: verify, then dedupe row + user
//! upsert in one transaction per request, 201; one HTTP worker per core) as a process of its
//! own on a database of its own, so its CPU is counted apart from the generator's.

use testkit::db::TestDb;
use testkit::procs::{Proc, free_port};
use testkit::stack::SECRET;

pub struct Inline {
    pub proc: Proc,
    pub db: TestDb,
}

impl Inline {
    pub async fn start(client: &reqwest::Client, tag: &str) -> anyhow::Result<Self> {
        let db = TestDb::named(&format!("{tag}_inline")).await?;
        let port = free_port();
        let proc = Proc::spawn(
            "inline_seed",
            "inline_seed",
            &[&port.to_string()],
            &[
                ("DATABASE_URL".to_owned(), db.url.clone()),
                ("SCALEKIT_WEBHOOK_SECRET".to_owned(), SECRET.to_owned()),
            ],
            port,
        )?;
        proc.wait_ready(client, std::time::Duration::from_secs(30))
            .await?;
        Ok(Self { proc, db })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.proc.port))
    }

    pub async fn stop(mut self) {
        self.proc.kill9().await;
        self.db.drop_db().await;
    }
}
