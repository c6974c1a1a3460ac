//! `worker migrate`: the database's migrations and, with `--topology`, the broker topology
//! `worker run` declares (run before ingest, whose broker user may only publish).

use crate::ops::args::MigrateArgs;
use crate::service::db::migrate::{self, MigrateError};
use shared::amqp::connection_name;

#[derive(Debug, thiserror::Error)]
pub enum MigrateCliError {
    #[error("migrating")]
    Migrate(#[from] MigrateError),
    #[error("declaring the broker topology")]
    Topology(#[source] lapin::Error),
}

pub async fn run(args: &MigrateArgs) -> Result<(), MigrateCliError> {
    let applied = migrate::run(args.database.database_url()).await?;
    tracing::info!(?applied, "migrations up to date");
    if args.topology {
        let topology = args.changes.topology(&args.broker);
        let declare = async {
            let conn =
                shared::amqp::connect(args.broker.amqp_url(), &connection_name("migrate")).await?;
            shared::amqp::declare_topology(&conn, &topology).await?;
            conn.close(200, "topology declared".into()).await
        };
        declare.await.map_err(MigrateCliError::Topology)?;
        tracing::info!(prefix = %args.broker.amqp_prefix, "broker topology declared");
    }
    Ok(())
}
