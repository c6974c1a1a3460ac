use anyhow::Context;
use ingest::{Application, Config};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = shared::cli::parse_or_exit();
    shared::telemetry::init(config.log_format);
    let app = match Application::build(config) {
        Ok(app) => app,
        Err(e) if e.is_config() => shared::cli::exit_with(&shared::cli::one_line(&e)),
        Err(e) => return Err(e).context("starting ingest"),
    };
    app.run_until_stopped().await.context("serving webhooks")?;
    Ok(())
}
