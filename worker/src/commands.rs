//! What each subcommand does, so `main.rs` only parses and logs. `worker run` builds the
//! [`Worker`]; the others are one-shot operations.

use crate::changes::tail::{self, TailError, TailOptions};
use crate::config::{
    ChangesCommand, Command, ExplainArgs, MigrateArgs, ReportCommand, RunArgs, StatusArgs, SyncArgs,
};
use crate::inspect::{self, InspectError, render};
use crate::startup::{self, StartError, Worker};
use crate::sync::SyncError;
use crate::sync::progress::Progress;
use crate::{db, dlq};
use shared::amqp::{BrokerLink, connection_name};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("migrating: {0}")]
    Migrate(#[from] db::migrate::MigrateError),
    #[error("starting worker: {0}")]
    Start(#[from] StartError),
    #[error("running worker: {0}")]
    Run(#[from] std::io::Error),
    #[error(transparent)]
    Dlq(#[from] dlq::cli::DlqCliError),
    #[error("RabbitMQ is not reachable")]
    BrokerUnreachable,
    #[error("declaring the broker topology: {0}")]
    Topology(lapin::Error),
    #[error("sync failed (nothing was deactivated): {0}")]
    Sync(#[from] SyncError),
    #[error("changes tail: {0}")]
    Tail(#[from] TailError),
    #[error("--since: {0}")]
    Since(String),
    #[error("brake: {0}")]
    Brake(#[from] crate::brake::cli::BrakeCliError),
    #[error("endpoints: {0}")]
    Endpoints(#[from] crate::endpoints::EndpointsCliError),
    #[error("roles: {0}")]
    Roles(#[from] crate::roles::cli::RolesCliError),
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error("the database or the broker did not answer (see above)")]
    Unhealthy,
    #[error("no user {0} and no event about it on record")]
    UnknownUser(String),
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl CommandError {
    /// A value of the configuration that cannot be used (exit code 2), not a failure to run.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::Start(
                StartError::Mapping(_)
                    | StartError::BrokerTls(_)
                    | StartError::DatabaseTls(_)
                    | StartError::Credentials(_)
                    | StartError::Client(_)
                    | StartError::ApiTokens
                    | StartError::Endpoints(_)
                    | StartError::PushClient(_)
            )
        )
    }
}

/// Runs one subcommand to its end.
pub async fn run(command: Command) -> Result<(), CommandError> {
    match command {
        Command::Migrate(args) => migrate(&args).await,
        Command::Dlq(args) => Ok(dlq::cli::run(&args.command).await?),
        Command::Sync(args) => sync(&args).await,
        Command::Run(args) => run_worker(args).await,
        Command::Changes(args) => changes(&args.command).await,
        Command::Endpoints(args) => Ok(crate::endpoints::run(&args.command).await?),
        Command::Brake(args) => Ok(crate::brake::cli::run(&args.command).await?),
        Command::Roles(args) => Ok(crate::roles::cli::run(&args.command).await?),
        Command::Status(args) => status(&args).await,
        Command::Explain(args) => explain(&args).await,
        Command::Report(args) => report(&args.command).await,
    }
}

async fn status(args: &StatusArgs) -> Result<(), CommandError> {
    let status = inspect::status::collect(&inspect::status::Sources {
        amqp_url: args.broker.amqp_url(),
        management_url: args.management_url(),
        topology: &args.broker.topology(),
        database_url: args.database.database_url(),
        timeouts: &args.database.timeouts(),
    })
    .await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render::status(&status));
    }
    if status.healthy() {
        Ok(())
    } else {
        Err(CommandError::Unhealthy)
    }
}

async fn explain(args: &ExplainArgs) -> Result<(), CommandError> {
    let mut conn = db::connect(args.database.database_url(), &args.database.timeouts())
        .await
        .map_err(InspectError::from)?;
    let x = inspect::explain::explain(&mut conn, &args.org, &args.user).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&x)?);
    } else {
        print!("{}", render::explain(&x));
    }
    if x.user.is_none() && x.history.is_empty() {
        return Err(CommandError::UnknownUser(shared::redact::escape_controls(
            &args.user,
        )));
    }
    Ok(())
}

async fn report(command: &ReportCommand) -> Result<(), CommandError> {
    let ReportCommand::Slo {
        database,
        since,
        json,
    } = command;
    let since =
        dlq::message::parse_since(since, chrono::Utc::now()).map_err(CommandError::Since)?;
    let mut conn = db::connect(database.database_url(), &database.timeouts())
        .await
        .map_err(InspectError::from)?;
    let rows = inspect::slo::report(&mut conn, since).await?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", render::slo(&rows, since));
    }
    Ok(())
}

async fn changes(command: &ChangesCommand) -> Result<(), CommandError> {
    let ChangesCommand::Tail {
        broker,
        from_seq,
        since,
        kinds,
        follow,
        max,
        idle,
    } = command;
    let from = match (from_seq, since) {
        (Some(seq), _) => tail::From::Seq(*seq),
        (None, Some(since)) => tail::From::Since(
            dlq::message::parse_since(since, chrono::Utc::now()).map_err(CommandError::Since)?,
        ),
        (None, None) => tail::From::Next,
    };
    let opts = TailOptions {
        // Without a starting point there is nothing to catch up on: follow.
        follow: *follow || from == tail::From::Next,
        from,
        kinds: kinds.clone(),
        idle: *idle,
        max: *max,
    };
    tail::tail(
        broker.amqp_url(),
        &broker.topology(),
        &opts,
        &mut std::io::stdout().lock(),
    )
    .await?;
    Ok(())
}

async fn migrate(args: &MigrateArgs) -> Result<(), CommandError> {
    let applied = db::migrate::run(args.database.database_url()).await?;
    tracing::info!(?applied, "migrations up to date");
    if args.topology {
        let topology = args.changes.topology(&args.broker);
        let declare = async {
            let conn =
                shared::amqp::connect(args.broker.amqp_url(), &connection_name("migrate")).await?;
            shared::amqp::declare_topology(&conn, &topology).await?;
            conn.close(200, "topology declared".into()).await
        };
        declare.await.map_err(CommandError::Topology)?;
        tracing::info!(prefix = %args.broker.amqp_prefix, "broker topology declared");
    }
    Ok(())
}

async fn run_worker(args: RunArgs) -> Result<(), CommandError> {
    // Built first: a configuration error stops the process before anything connects.
    let migrate = args
        .migrate
        .then(|| args.database.database_url().to_owned());
    let worker = Worker::build(args)?;
    if let Some(url) = migrate {
        let applied = db::migrate::run(&url).await?;
        tracing::info!(?applied, "migrations up to date");
    }
    worker.run_until_stopped().await?;
    Ok(())
}

async fn sync(args: &SyncArgs) -> Result<(), CommandError> {
    let link = BrokerLink::start(
        args.broker.amqp_url().to_owned(),
        connection_name("sync"),
        Some(args.broker.topology()),
        1,
    );
    let pool = args.database.pool(4);
    // SIGTERM / SIGINT stop the sync at its next page, recorded `cancelled`.
    let stop = tokio_util::sync::CancellationToken::new();
    let signals = tokio::spawn(startup::stop_on_signal(stop.clone()));
    let syncer = startup::syncer(&args.scalekit, &args.broker, link.clone(), pool, stop)?;
    if !link.wait_ready(Duration::from_secs(30)).await {
        return Err(CommandError::BrokerUnreachable);
    }
    let result = syncer
        .sync_org(
            &args.org,
            args.directory.as_deref(),
            &mut Progress::for_terminal(),
        )
        .await;
    signals.abort();
    link.close().await;
    println!("{}", result?);
    Ok(())
}
