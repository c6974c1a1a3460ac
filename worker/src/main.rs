use worker::cli::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = shared::cli::parse_or_exit();
    shared::telemetry::init(cli.log.log_format);
    match worker::commands::run(cli).await {
        Err(e) if e.is_config() => shared::cli::exit_with(&shared::cli::one_line(&e)),
        result => Ok(result?),
    }
}
