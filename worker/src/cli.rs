//! The worker's command line: `worker` (= `worker run`, the service) and the operator
//! subcommands. Each subcommand takes only the options it uses; every option is also an
//! environment variable (`docs/configuration.md`).

use crate::ops::args::{
    BrakeArgs, ChangesCommandArgs, DlqArgs, EndpointsArgs, ExplainArgs, MigrateArgs, ReportArgs,
    RolesArgs, StatusArgs, SyncArgs,
};
use crate::service::config::RunArgs;
use clap::{Args, Parser, Subcommand};
use shared::telemetry::LogFormat;

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
    #[command(flatten)]
    pub broker_tls: shared::amqp::tls::TlsArgs,
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

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
