use anyhow::Context;
use clap::Parser;
use shared::amqp::{BrokerLink, connection_name};
use std::time::Duration;
use worker::config::{Cli, Command, RunArgs};
use worker::sync::progress::Progress;
use worker::{Worker, db, startup};

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
        Command::Dlq(cmd) => worker::dlq::cli::run(&cli.common, &cmd).await?,
        Command::Sync(args) => {
            let common = cli.common;
            let link = BrokerLink::start(
                common.amqp_url().to_owned(),
                connection_name("sync"),
                common.topology(),
                1,
            );
            anyhow::ensure!(
                link.wait_ready(Duration::from_secs(30)).await,
                "RabbitMQ is not reachable"
            );
            let pool = db::pool(common.database_url(), 4);
            let syncer = startup::syncer(&common, link.clone(), pool)
                .context("configuring the Directory API client")?;
            let result = syncer
                .sync_org(
                    &args.org,
                    args.directory.as_deref(),
                    &mut Progress::for_terminal(),
                )
                .await;
            link.close().await;
            let summary = result.context("sync failed (nothing was deactivated)")?;
            println!("{summary}");
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
