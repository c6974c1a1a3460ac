//! The database server as production runs it. PostgreSQL vacuums and analyzes on its own
//! (autovacuum) everywhere the worker is deployed; a server with it off (as a CI machine may
//! be set up, for repeatable tests) lets every table the bench writes bloat with dead rows and
//! keep the planner's first guesses, and the pipeline then measures the server, not itself
//! (measured here: a 100,000-webhook burst applied in 114 s with autovacuum off against 36.5 s
//! with it on, PostgreSQL spending 2.2 ms of CPU per webhook against 0.22). So the bench turns
//! autovacuum on for its run and sets the server back as it found it afterwards.

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    autovacuum: String,
}

/// Autovacuum turned on by the bench: [`Autovacuum::restore`] sets it back.
#[must_use]
pub struct Autovacuum {
    admin_url: String,
    turned_on: bool,
}

async fn admin(url: &str) -> anyhow::Result<AsyncPgConnection> {
    Ok(AsyncPgConnection::establish(url).await?)
}

/// Runs an `ALTER SYSTEM` statement and reloads the configuration.
async fn set(conn: &mut AsyncPgConnection, statement: &str) -> anyhow::Result<()> {
    diesel::sql_query(statement).execute(conn).await?;
    diesel::sql_query("SELECT pg_reload_conf()")
        .execute(conn)
        .await?;
    Ok(())
}

/// Turns autovacuum on (`ALTER SYSTEM`, reload) if the server has it off, and says so.
pub async fn autovacuum_on(admin_url: &str) -> anyhow::Result<Autovacuum> {
    let mut conn = admin(admin_url).await?;
    let s: Setting = diesel::sql_query("SHOW autovacuum")
        .get_result(&mut conn)
        .await?;
    let turned_on = s.autovacuum == "off";
    if turned_on {
        eprintln!(
            "PostgreSQL has autovacuum off; the bench turns it on for its run (every production server has it) and sets it back at the end"
        );
        set(&mut conn, "ALTER SYSTEM SET autovacuum = on").await?;
    }
    Ok(Autovacuum {
        admin_url: admin_url.to_owned(),
        turned_on,
    })
}

impl Autovacuum {
    /// Sets the server back as the bench found it.
    pub async fn restore(self) {
        if !self.turned_on {
            return;
        }
        let reset = async {
            let mut conn = admin(&self.admin_url).await?;
            set(&mut conn, "ALTER SYSTEM RESET autovacuum").await
        };
        if let Err(error) = reset.await {
            eprintln!(
                "could not set autovacuum back (ALTER SYSTEM RESET autovacuum by hand): {error}"
            );
        }
    }
}
