use clap::Parser;
use worker::config::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    shared::telemetry::init(cli.log.log_format);
    worker::commands::run(cli.into_command()).await?;
    Ok(())
}
