//! What each subcommand runs, so `main.rs` only parses and logs: `worker run` builds the
//! service's [`Worker`]; every operator subcommand calls its runner in [`crate::ops`].

use crate::cli::{Cli, Command};
use crate::ops;
use crate::service::config::RunArgs;
use crate::service::db::migrate::{self, MigrateError};
use crate::service::startup::{StartError, Worker};

/// A subcommand's failure. Each variant names the subcommand; its cause is the source (the
/// binary prints the chain once, `shared::cli::one_line`).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("migrating")]
    Migrate(#[from] MigrateError),
    #[error("starting worker")]
    Start(#[from] StartError),
    #[error("running worker")]
    Run(#[from] std::io::Error),
    #[error("migrate")]
    MigrateCommand(#[from] ops::migrate::MigrateCliError),
    #[error("sync")]
    Sync(#[from] ops::sync::SyncCliError),
    #[error("dlq")]
    Dlq(#[from] ops::dlq::cli::DlqCliError),
    #[error("changes tail")]
    Tail(#[from] ops::tail::TailError),
    #[error("brake")]
    Brake(#[from] ops::brake::cli::BrakeCliError),
    #[error("endpoints")]
    Endpoints(#[from] ops::endpoints::EndpointsCliError),
    #[error("roles")]
    Roles(#[from] ops::roles::cli::RolesCliError),
    #[error(transparent)]
    Inspect(#[from] ops::inspect::cli::InspectCliError),
    #[error("broker TLS")]
    BrokerTls(#[from] shared::amqp::tls::TlsFilesError),
}

impl CommandError {
    /// A value of the configuration that cannot be used (exit code 2), not a failure to run.
    pub fn is_config(&self) -> bool {
        match self {
            Self::Start(e) | Self::Sync(ops::sync::SyncCliError::Start(e)) => e.is_config(),
            Self::BrokerTls(_) => true,
            _ => false,
        }
    }
}

/// Runs one subcommand to its end, every broker connection with the command line's TLS files.
pub async fn run(cli: Cli) -> Result<(), CommandError> {
    shared::amqp::tls::use_files(cli.broker_tls.files())?;
    match cli.into_command() {
        Command::Run(args) => run_worker(args).await,
        Command::Migrate(args) => Ok(ops::migrate::run(&args).await?),
        Command::Sync(args) => Ok(ops::sync::run(&args).await?),
        Command::Dlq(args) => Ok(ops::dlq::cli::run(&args.command).await?),
        Command::Changes(args) => Ok(ops::tail::run(&args.command).await?),
        Command::Endpoints(args) => Ok(ops::endpoints::run(&args.command).await?),
        Command::Brake(args) => Ok(ops::brake::cli::run(&args.command).await?),
        Command::Roles(args) => Ok(ops::roles::cli::run(&args.command).await?),
        Command::Status(args) => Ok(ops::inspect::cli::status(&args).await?),
        Command::Explain(args) => Ok(ops::inspect::cli::explain(&args).await?),
        Command::Report(args) => Ok(ops::inspect::cli::report(&args.command).await?),
    }
}

/// `worker run` (or `worker` alone): the service until SIGTERM / SIGINT.
async fn run_worker(args: RunArgs) -> Result<(), CommandError> {
    // Built first: a configuration error stops the process before anything connects.
    let migrate = args
        .migrate
        .then(|| args.database.database_url().to_owned());
    let worker = Worker::build(args)?;
    if let Some(url) = migrate {
        let applied = migrate::run(&url).await?;
        tracing::info!(?applied, "migrations up to date");
    }
    worker.run_until_stopped().await?;
    Ok(())
}
