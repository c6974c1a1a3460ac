//! worker command line: one group of options per concern (broker, database, apply, consume,
//! Scalekit), each subcommand flattening the groups it uses. Every option is also an environment
//! variable (see the README's configuration table).

mod groups;
mod inspect;
mod ops;
mod push;

pub use groups::{
    ApplyArgs, BrokerArgs, ConsumeArgs, DatabaseArgs, MissingCredentials, ScalekitArgs, TierList,
};
pub use inspect::{ExplainArgs, ReportArgs, ReportCommand, StatusArgs};
pub use ops::{
    BrakeArgs, BrakeCommand, ChangesCommand, ChangesCommandArgs, DlqArgs, DlqCommand,
    DlqFilterArgs, RolesArgs, RolesCommand, RolesMappingArgs,
};
pub use push::{ChangesPushArgs, EndpointsArgs, EndpointsCommand};

use clap::{Args, Parser, Subcommand};
use shared::telemetry::LogFormat;
use std::net::SocketAddr;
use std::time::Duration;

/// Applies Scalekit directory events from RabbitMQ to PostgreSQL exactly once.
///
/// Without a subcommand it runs (`worker` = `worker run`). Each subcommand takes only the
/// options it uses; every option is also an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "worker",
    version,
    about,
    propagate_version = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `worker` without a subcommand: the options of `worker run`.
    #[command(flatten)]
    pub run: RunArgs,
}

impl Cli {
    /// The subcommand to run (`run` when none was given).
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Run(self.run))
    }
}

// Parsed once per process: the size of `Run` costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Consume and apply events (the default).
    Run(RunArgs),
    /// Apply pending database migrations (under an advisory lock) and exit.
    Migrate(MigrateArgs),
    /// Sync an organization's directories from the Scalekit Directory API now.
    Sync(SyncArgs),
    /// Inspect, replay or purge the dead-letter queue.
    Dlq(DlqArgs),
    /// Read the change feed.
    Changes(ChangesCommandArgs),
    /// Push delivery's endpoints: list, pause, resume, replay.
    Endpoints(EndpointsArgs),
    /// The deprovisioning brake: list, show, release or discard held deactivations.
    Brake(BrakeArgs),
    /// Role-mapping changes: plan or apply a mapping file to every user.
    Roles(RolesArgs),
    /// The deployment at a glance: queues, dead letters, change relay, brake, syncs, reachability.
    Status(StatusArgs),
    /// Why a user is in the state it is in: its state and every event about it, oldest first.
    Explain(ExplainArgs),
    /// Reports: `slo` (how fast provisioning and deprovisioning take effect).
    Report(ReportArgs),
}

/// `--log-format`, for every subcommand.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// `json` or `pretty`.
    #[arg(long, global = true, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
}

/// `worker run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Apply pending migrations before consuming.
    #[arg(long)]
    pub migrate: bool,

    #[command(flatten)]
    pub broker: BrokerArgs,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Database connections in the pool.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: u32,

    #[command(flatten)]
    pub apply: ApplyArgs,

    #[command(flatten)]
    pub consume: ConsumeArgs,

    /// Address of the health and metrics server (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "WORKER_LISTEN", default_value = "0.0.0.0:9090")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub scalekit: ScalekitArgs,

    /// Sync every organization with an enabled directory this often (e.g. `15m`); off when unset.
    #[arg(long, env = "SYNC_INTERVAL", value_parser = humantime::parse_duration)]
    pub sync_interval: Option<Duration>,

    #[command(flatten)]
    pub changes: ChangesArgs,

    #[command(flatten)]
    pub changes_api: ChangesApiArgs,

    #[command(flatten)]
    pub changes_push: ChangesPushArgs,
}

/// The pull API (`GET /v1/changes`), off unless `CHANGES_API_LISTEN` is set.
#[derive(Debug, Clone, Args)]
pub struct ChangesApiArgs {
    /// Address of the pull API, a listener of its own (e.g. `0.0.0.0:9091`); off when unset.
    #[arg(long, env = "CHANGES_API_LISTEN")]
    pub changes_api_listen: Option<SocketAddr>,

    /// Bearer tokens the pull API accepts, comma-separated (rotation), each at least 32
    /// characters; required with `CHANGES_API_LISTEN`.
    #[arg(long, env = "CHANGES_API_TOKENS", hide_env_values = true, value_parser = crate::changes::api::auth::Tokens::parse)]
    pub changes_api_tokens: Option<crate::changes::api::auth::Tokens>,
}

/// The change feed's retention (the relay runs in `worker run`).
#[derive(Debug, Clone, Args)]
pub struct ChangesArgs {
    /// How long the stream keeps changes, and published outbox rows are kept (e.g. `30d`).
    #[arg(long, env = "CHANGES_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub changes_retention: Duration,

    /// How long dedupe rows are kept: longer than Scalekit's retries (~28 h) and any manual
    /// replay (e.g. `35d`).
    #[arg(long, env = "PROCESSED_EVENTS_RETENTION", default_value = "35d", value_parser = humantime::parse_duration)]
    pub processed_events_retention: Duration,
}

impl ChangesArgs {
    /// The whole topology the worker declares: the broker's, with the change feed's exchange
    /// and stream (kept `CHANGES_RETENTION`).
    pub fn topology(&self, broker: &BrokerArgs) -> shared::Topology {
        broker.topology().with_changes(self.changes_retention)
    }
}

impl RunArgs {
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.consume.shutdown_timeout_seconds)
    }
}

/// `worker migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Also declare the RabbitMQ topology (exchanges, queues, retry tiers, the change feed) as
    /// `worker run` does: run before ingest, whose broker user may only publish.
    #[arg(long, env = "MIGRATE_TOPOLOGY")]
    pub topology: bool,

    #[command(flatten)]
    pub broker: BrokerArgs,

    #[command(flatten)]
    pub changes: ChangesArgs,
}

/// `worker sync`.
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// Organization id (`org_…`).
    #[arg(long)]
    pub org: String,
    /// Only this directory (`dir_…`); default: every directory of the organization.
    #[arg(long)]
    pub directory: Option<String>,
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub scalekit: ScalekitArgs,
}

#[cfg(test)]
mod tests;
