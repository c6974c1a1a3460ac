use anyhow::Context;
use clap::Parser;
use worker::config::{Cli, Command, RunArgs};
use worker::{Worker, db};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    shared::telemetry::init(cli.common.log_format);
    match cli.command.unwrap_or(Command::Run(RunArgs::default())) {
        Command::Migrate => {
            let applied = db::migrate::run(cli.common.database_url())
                .await
                .context("migrating")?;
            tracing::info!(?applied, "migrations up to date");
        }
        Command::Run(args) => {
            if args.migrate {
                let applied = db::migrate::run(cli.common.database_url())
                    .await
                    .context("migrating")?;
                tracing::info!(?applied, "migrations up to date");
            }
            let worker = Worker::build(cli.common).context("starting worker")?;
            worker.run_until_stopped().await.context("running worker")?;
        }
    }
    Ok(())
}
