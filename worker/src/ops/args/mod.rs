//! The operator subcommands' own options: `worker migrate`, `worker sync`,
//! `worker changes …`, `worker dlq …`, `worker brake …`, `worker roles …`,
//! `worker endpoints …` (`endpoints`) and `worker status | explain | report` (`inspect`);
//! the parsers of their values (`values`).

mod endpoints;
mod inspect;
pub mod values;

pub use endpoints::{EndpointsArgs, EndpointsCommand};
pub use inspect::{ExplainArgs, ReportArgs, ReportCommand, StatusArgs};

use crate::service::config::{ApplyArgs, BrokerArgs, ChangesArgs, DatabaseArgs, ScalekitArgs};
use clap::{Args, Subcommand};
use std::time::Duration;

/// `worker changes …`.
#[derive(Debug, Clone, Args)]
pub struct ChangesCommandArgs {
    #[command(subcommand)]
    pub command: ChangesCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ChangesCommand {
    /// Print the feed from its stream, one JSON change a line. Without `--from-seq` or
    /// `--since`, follows new changes; with them, prints what is retained from there and stops
    /// once caught up (unless `--follow`).
    Tail {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Changes with `seq` ≥ N (reads the retained feed from its start).
        #[arg(long, conflicts_with = "since")]
        from_seq: Option<i64>,
        /// Changes published since: a duration back from now (`1h`) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only this kind, e.g. `user.deprovisioned` (repeatable).
        #[arg(long = "kind", value_parser = parse_kind)]
        kinds: Vec<shared::changes::ChangeKind>,
        /// Keep following once caught up.
        #[arg(long)]
        follow: bool,
        /// Stop after N changes.
        #[arg(long)]
        max: Option<usize>,
        /// Caught up once nothing arrived for this long (without `--follow`).
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        idle: Duration,
    },
}

fn parse_kind(s: &str) -> Result<shared::changes::ChangeKind, String> {
    shared::changes::ChangeKind::parse(s).ok_or_else(|| {
        let all: Vec<&str> = shared::changes::ChangeKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect();
        format!("unknown kind `{s}` (one of {})", all.join(", "))
    })
}

/// `worker dlq …`.
#[derive(Debug, Clone, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// A table of matching messages with a summary by reason and type (nothing is removed).
    List {
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Show at most N messages.
        #[arg(long, default_value_t = 1000)]
        max: usize,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One message in full: headers, reason, error text, body pretty-printed.
    Show {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Event id (the message id).
        id: String,
    },
    /// Republish matching messages to the events exchange (confirmed, then removed here).
    Replay {
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Replay at most N messages.
        #[arg(long)]
        max: Option<usize>,
        /// At most this many per second, e.g. `50/s`.
        #[arg(long, value_parser = values::parse_rate)]
        rate: Option<f64>,
        /// Print what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replay even messages already replayed `DLQ_MAX_REPLAYS` times.
        #[arg(long)]
        force: bool,
        /// Loop guard: messages replayed this many times are skipped.
        #[arg(long, env = "DLQ_MAX_REPLAYS", default_value_t = 3)]
        max_replays: u32,
    },
    /// Delete matching messages (refuses without --yes and prints what it would delete).
    Purge {
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Delete at most N messages.
        #[arg(long)]
        max: Option<usize>,
        /// Really delete.
        #[arg(long)]
        yes: bool,
    },
}

impl DlqCommand {
    /// The broker every dlq subcommand talks to.
    pub fn broker(&self) -> &BrokerArgs {
        match self {
            DlqCommand::List { broker, .. }
            | DlqCommand::Show { broker, .. }
            | DlqCommand::Replay { broker, .. }
            | DlqCommand::Purge { broker, .. } => broker,
        }
    }
}

/// Filters shared by the dlq subcommands; all must match.
#[derive(Debug, Clone, Default, Args)]
pub struct DlqFilterArgs {
    /// Event type, e.g. `organization.directory.user_created`.
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Organization id.
    #[arg(long)]
    pub org: Option<String>,
    /// Dead-letter reason: malformed, invalid, retries_exhausted, delivery_limit…
    #[arg(long)]
    pub reason: Option<String>,
    /// Dead-lettered since: a duration back from now (`2h`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only these event ids (repeatable).
    #[arg(long = "id")]
    pub ids: Vec<String>,
}

/// `worker brake …`.
#[derive(Debug, Clone, Args)]
pub struct BrakeArgs {
    #[command(subcommand)]
    pub command: BrakeCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BrakeCommand {
    /// Organizations the deprovisioning brake holds: events held, since when, a sample of users.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// The held events of one organization, in order.
    Show {
        #[arg(long)]
        org: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Apply the organization's held events through the normal apply path, in order, and
    /// disengage its brake.
    Release {
        #[arg(long)]
        org: String,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Drop the organization's held events (audited; redeliveries stay duplicates) and
    /// disengage its brake.
    Discard {
        #[arg(long)]
        org: String,
        /// Required: discarding cannot be undone.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// `worker roles …`.
#[derive(Debug, Clone, Args)]
pub struct RolesArgs {
    #[command(subcommand)]
    pub command: RolesCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RolesCommand {
    /// Print, per organization, which active users would gain or lose which mapped roles
    /// under a mapping file (nothing is written).
    Plan(RolesMappingArgs),
    /// Recompute every active user's mapped roles under a mapping file, with audit rows and
    /// `user.roles_changed` in the change feed. Deploy the same file as the workers'
    /// ROLE_MAPPING_FILE, or their next events recompute with the old one.
    Apply(RolesMappingArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RolesMappingArgs {
    /// The role mapping (the format of ROLE_MAPPING_FILE).
    #[arg(long)]
    pub mapping: std::path::PathBuf,
    /// Only this organization.
    #[arg(long)]
    pub org: Option<String>,
    #[command(flatten)]
    pub database: DatabaseArgs,
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
