use anyhow::Context;
use clap::Parser;
use ingest::{Application, Config};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shared::telemetry::init(config.log_format);
    let app = Application::build(config).context("starting ingest")?;
    app.run_until_stopped().await.context("serving webhooks")?;
    Ok(())
}
