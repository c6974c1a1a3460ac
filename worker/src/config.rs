//! worker command line: one group of options per concern (broker, database, apply, consume,
//! Scalekit), each subcommand flattening the groups it uses. Every option is also an environment
//! variable (see the README's configuration table).

use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use shared::RetryTier;
use shared::telemetry::LogFormat;
use std::net::SocketAddr;
use std::path::PathBuf;
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
}

/// `--log-format`, for every subcommand.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// `json` or `pretty`.
    #[arg(long, global = true, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
}

/// The broker and the names of what is declared on it.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// RabbitMQ URL (may hold a password: never logged).
    #[arg(long, env = "AMQP_URL", hide_env_values = true, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f", value_parser = secret)]
    pub amqp_url: SecretString,

    /// Prefix of every exchange and queue name.
    #[arg(long, env = "AMQP_PREFIX", default_value = shared::contract::DEFAULT_PREFIX)]
    pub amqp_prefix: String,

    /// Retry tier delays, in order (e.g. `5s,30s,5m,30m`); after the last, dead-letter.
    #[arg(long, env = "WORKER_RETRY_TIERS", default_value = "5s,30s,5m,30m", value_parser = tiers)]
    pub retry_tiers: TierList,
}

impl BrokerArgs {
    pub fn topology(&self) -> shared::Topology {
        shared::Topology::new(self.amqp_prefix.clone()).with_tiers(self.retry_tiers.0.clone())
    }

    pub fn amqp_url(&self) -> &str {
        self.amqp_url.expose_secret()
    }
}

/// The database.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL (may hold a password: never logged).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, default_value = "postgres://postgres@127.0.0.1:5432/scim", value_parser = secret)]
    pub database_url: SecretString,
}

impl DatabaseArgs {
    pub fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }
}

/// How events are applied.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// Erase a deleted user's personal data (an id-only tombstone stays) instead of deactivating.
    #[arg(long, env = "HARD_DELETE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub hard_delete: bool,

    /// TOML file mapping directory groups (by id or name) to roles, per organization + default.
    #[arg(long, env = "ROLE_MAPPING_FILE")]
    pub role_mapping_file: Option<PathBuf>,
}

/// How the apply queue is consumed.
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    /// Unacknowledged messages the broker may hand this worker at once (≥ batch size ×
    /// concurrency keeps every lane busy).
    #[arg(long, env = "WORKER_PREFETCH", default_value_t = 2000)]
    pub prefetch: u16,

    /// Batches (transactions) applied concurrently.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,

    /// Most events applied together in one transaction (1 = one transaction per event).
    #[arg(long, env = "WORKER_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,

    /// Seconds to finish in-flight work on SIGTERM before closing.
    #[arg(long, env = "WORKER_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 8)]
    pub shutdown_timeout_seconds: u64,
}

/// The Scalekit Directory API (for syncs).
#[derive(Debug, Clone, Args)]
pub struct ScalekitArgs {
    /// Scalekit environment URL, e.g. `https://acme.scalekit.com` (Directory API and OAuth).
    #[arg(long, env = "SCALEKIT_ENVIRONMENT_URL")]
    pub scalekit_environment_url: Option<String>,

    /// Scalekit API client id.
    #[arg(long, env = "SCALEKIT_CLIENT_ID")]
    pub scalekit_client_id: Option<String>,

    /// Scalekit API client secret (environment only in production; never logged).
    #[arg(long, env = "SCALEKIT_CLIENT_SECRET", hide_env_values = true, value_parser = secret)]
    pub scalekit_client_secret: Option<SecretString>,

    /// Directory API request timeout.
    #[arg(long, env = "SCALEKIT_TIMEOUT_SECONDS", default_value_t = 20)]
    pub scalekit_timeout_seconds: u64,

    /// Retries of a Directory API call on 429/5xx/connection errors.
    #[arg(long, env = "SCALEKIT_MAX_RETRIES", default_value_t = 5)]
    pub scalekit_max_retries: usize,
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
        #[arg(long, value_parser = crate::dlq::message::parse_rate)]
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

/// Parsed retry tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierList(pub Vec<RetryTier>);

fn secret(s: &str) -> Result<SecretString, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(SecretString::from(s.to_owned()))
}

fn tiers(s: &str) -> Result<TierList, String> {
    let tiers = s
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let delay = humantime::parse_duration(t).map_err(|e| format!("`{t}`: {e}"))?;
            if delay.is_zero() {
                return Err(format!("`{t}`: a tier needs a delay"));
            }
            Ok(RetryTier::new(t, delay))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TierList(tiers))
}

/// Why the Directory API cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("Directory API credentials are incomplete: set {0}")]
pub struct MissingCredentials(pub &'static str);

impl ScalekitArgs {
    /// Client settings, when all three Scalekit variables are set.
    pub fn client_config(&self) -> Result<crate::sync::ClientConfig, MissingCredentials> {
        let environment_url = self
            .scalekit_environment_url
            .clone()
            .ok_or(MissingCredentials("SCALEKIT_ENVIRONMENT_URL"))?;
        let client_id = self
            .scalekit_client_id
            .clone()
            .ok_or(MissingCredentials("SCALEKIT_CLIENT_ID"))?;
        let client_secret = self
            .scalekit_client_secret
            .clone()
            .ok_or(MissingCredentials("SCALEKIT_CLIENT_SECRET"))?;
        Ok(crate::sync::ClientConfig {
            environment_url,
            client_id,
            client_secret,
            timeout: Duration::from_secs(self.scalekit_timeout_seconds),
            max_retries: self.scalekit_max_retries,
            min_backoff: Duration::from_millis(500),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn run_args(cli: Cli) -> RunArgs {
        match cli.into_command() {
            Command::Run(args) => args,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_subcommands() {
        let cli = Cli::try_parse_from(["worker"]).unwrap();
        assert!(cli.command.is_none());
        let run = run_args(cli);
        assert_eq!(run.consume.prefetch, 2000);
        assert_eq!(run.broker.topology().apply_queue(), "scim.events.apply");
        assert_eq!(
            run.broker
                .retry_tiers
                .0
                .iter()
                .map(|t| t.name.as_ref())
                .collect::<Vec<_>>(),
            ["5s", "30s", "5m", "30m"]
        );
        let run = run_args(
            Cli::try_parse_from([
                "worker",
                "run",
                "--migrate",
                "--hard-delete",
                "--retry-tiers",
                "1s,2s",
            ])
            .unwrap(),
        );
        assert!(run.migrate);
        assert!(run.apply.hard_delete);
        assert_eq!(run.broker.retry_tiers.0[1].delay, Duration::from_secs(2));
        assert!(Cli::try_parse_from(["worker", "--retry-tiers", "soon"]).is_err());
        let printed = format!(
            "{:?}",
            Cli::try_parse_from(["worker", "--database-url", "postgres://u:pw@h/db"]).unwrap()
        );
        assert!(!printed.contains("pw@"), "{printed}");
    }

    #[test]
    fn each_subcommand_takes_only_its_options() {
        let long = |path: &[&str]| -> Vec<String> {
            let mut cmd = Cli::command();
            cmd.build();
            let mut cmd = &cmd;
            for name in path {
                cmd = cmd.find_subcommand(name).unwrap();
            }
            cmd.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned))
                .collect()
        };
        let purge = long(&["dlq", "purge"]);
        for absent in [
            "concurrency",
            "prefetch",
            "database-url",
            "batch-size",
            "listen",
        ] {
            assert!(
                !purge.iter().any(|a| a == absent),
                "dlq purge offers --{absent}"
            );
        }
        assert!(purge.iter().any(|a| a == "yes"));
        let migrate = long(&["migrate"]);
        assert!(migrate.iter().any(|a| a == "database-url"));
        assert!(!migrate.iter().any(|a| a == "amqp-url"), "{migrate:?}");
        let sync = long(&["sync"]);
        assert!(sync.iter().any(|a| a == "scalekit-client-id"));
        assert!(!sync.iter().any(|a| a == "prefetch"), "{sync:?}");
        let cli = Cli::try_parse_from(["worker", "dlq", "list", "--amqp-prefix", "p1"]).unwrap();
        let Some(Command::Dlq(dlq)) = cli.command else {
            panic!("not dlq")
        };
        assert_eq!(dlq.command.broker().amqp_prefix, "p1");
        // Run options do not leak into subcommands.
        assert!(Cli::try_parse_from(["worker", "migrate", "--prefetch", "5"]).is_err());
    }
}
