//! worker configuration and command line (ARCHITECTURE §7–8). Every variable is also a flag.

use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use shared::RetryTier;
use shared::telemetry::LogFormat;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Applies Scalekit directory events from RabbitMQ to PostgreSQL exactly once.
#[derive(Debug, Clone, Parser)]
#[command(name = "worker", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Consume and apply events (the default).
    Run(RunArgs),
    /// Apply pending database migrations (under an advisory lock) and exit.
    Migrate,
    /// Sync an organization's directories from the Scalekit Directory API now.
    Sync(SyncArgs),
    /// Inspect, replay or purge the dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// A table of matching messages with a summary by reason and type (nothing is removed).
    List {
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
        /// Event id (the message id).
        id: String,
    },
    /// Republish matching messages to the events exchange (confirmed, then removed here).
    Replay {
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
        filter: DlqFilterArgs,
        /// Delete at most N messages.
        #[arg(long)]
        max: Option<usize>,
        /// Really delete.
        #[arg(long)]
        yes: bool,
    },
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

#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// Organization id (`org_…`).
    #[arg(long)]
    pub org: String,
    /// Only this directory (`dir_…`); default: every directory of the organization.
    #[arg(long)]
    pub directory: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Apply pending migrations before consuming.
    #[arg(long)]
    pub migrate: bool,
}

/// Settings every subcommand shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// RabbitMQ URL (may hold a password: never logged).
    #[arg(long, global = true, env = "AMQP_URL", hide_env_values = true, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f", value_parser = secret)]
    pub amqp_url: SecretString,

    /// Prefix of every exchange and queue name.
    #[arg(long, global = true, env = "AMQP_PREFIX", default_value = shared::contract::DEFAULT_PREFIX)]
    pub amqp_prefix: String,

    /// PostgreSQL URL (may hold a password: never logged).
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true, default_value = "postgres://postgres@127.0.0.1:5432/scim", value_parser = secret)]
    pub database_url: SecretString,

    /// Database connections in the pool.
    #[arg(long, global = true, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: u32,

    /// Address of the health and metrics server (`/healthz`, `/readyz`, `/metrics`).
    #[arg(
        long,
        global = true,
        env = "WORKER_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub listen: SocketAddr,

    /// Unacknowledged messages the broker may hand this worker at once (≥ batch size ×
    /// concurrency keeps every lane busy).
    #[arg(long, global = true, env = "WORKER_PREFETCH", default_value_t = 2000)]
    pub prefetch: u16,

    /// Batches (transactions) applied concurrently.
    #[arg(long, global = true, env = "WORKER_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,

    /// Most events applied together in one transaction (1 = one transaction per event).
    #[arg(long, global = true, env = "WORKER_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,

    /// Erase a deleted user's personal data (an id-only tombstone stays) instead of deactivating.
    #[arg(long, global = true, env = "HARD_DELETE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub hard_delete: bool,

    /// TOML file mapping directory groups (by id or name) to roles, per organization + default.
    #[arg(long, global = true, env = "ROLE_MAPPING_FILE")]
    pub role_mapping_file: Option<PathBuf>,

    /// Retry tier delays, in order (e.g. `5s,30s,5m,30m`); after the last, dead-letter.
    #[arg(long, global = true, env = "WORKER_RETRY_TIERS", default_value = "5s,30s,5m,30m", value_parser = tiers)]
    pub retry_tiers: TierList,

    /// Seconds to finish in-flight work on SIGTERM before closing.
    #[arg(
        long,
        global = true,
        env = "WORKER_SHUTDOWN_TIMEOUT_SECONDS",
        default_value_t = 8
    )]
    pub shutdown_timeout_seconds: u64,

    /// Scalekit environment URL, e.g. `https://acme.scalekit.com` (Directory API and OAuth).
    #[arg(long, global = true, env = "SCALEKIT_ENVIRONMENT_URL")]
    pub scalekit_environment_url: Option<String>,

    /// Scalekit API client id.
    #[arg(long, global = true, env = "SCALEKIT_CLIENT_ID")]
    pub scalekit_client_id: Option<String>,

    /// Scalekit API client secret (environment only in production; never logged).
    #[arg(long, global = true, env = "SCALEKIT_CLIENT_SECRET", hide_env_values = true, value_parser = secret)]
    pub scalekit_client_secret: Option<SecretString>,

    /// Directory API request timeout.
    #[arg(
        long,
        global = true,
        env = "SCALEKIT_TIMEOUT_SECONDS",
        default_value_t = 20
    )]
    pub scalekit_timeout_seconds: u64,

    /// Retries of a Directory API call on 429/5xx/connection errors.
    #[arg(long, global = true, env = "SCALEKIT_MAX_RETRIES", default_value_t = 5)]
    pub scalekit_max_retries: usize,

    /// Sync every organization with an enabled directory this often (e.g. `15m`); off when unset.
    #[arg(long, global = true, env = "SYNC_INTERVAL", value_parser = humantime::parse_duration)]
    pub sync_interval: Option<Duration>,

    /// `json` or `pretty`.
    #[arg(long, global = true, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
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
            // Tier names become queue names; leak the few short strings once at start-up.
            let name: &'static str = Box::leak(t.to_owned().into_boxed_str());
            Ok(RetryTier { name, delay })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TierList(tiers))
}

/// Why the Directory API cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("Directory API credentials are incomplete: set {0}")]
pub struct MissingCredentials(pub &'static str);

impl Common {
    /// Client settings, when all three Scalekit variables are set.
    pub fn scalekit(&self) -> Result<crate::sync::ClientConfig, MissingCredentials> {
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

    pub fn topology(&self) -> shared::Topology {
        shared::Topology::new(self.amqp_prefix.clone()).with_tiers(self.retry_tiers.0.clone())
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_seconds)
    }

    pub fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }

    pub fn amqp_url(&self) -> &str {
        self.amqp_url.expose_secret()
    }
}

/// `scheme://user:secret@host/…` → `scheme://user:***@host/…`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparseable url>".to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_subcommands_and_redaction() {
        let cli = Cli::try_parse_from(["worker"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.common.prefetch, 2000);
        assert_eq!(cli.common.topology().apply_queue(), "scim.events.apply");
        assert_eq!(
            cli.common
                .retry_tiers
                .0
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>(),
            ["5s", "30s", "5m", "30m"]
        );
        let cli = Cli::try_parse_from([
            "worker",
            "run",
            "--migrate",
            "--hard-delete",
            "--retry-tiers",
            "1s,2s",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Run(RunArgs { migrate: true }))
        ));
        assert!(cli.common.hard_delete);
        assert_eq!(cli.common.retry_tiers.0[1].delay, Duration::from_secs(2));
        assert!(Cli::try_parse_from(["worker", "--retry-tiers", "soon"]).is_err());
        let printed = format!(
            "{:?}",
            Cli::try_parse_from(["worker", "--database-url", "postgres://u:pw@h/db"]).unwrap()
        );
        assert!(!printed.contains("pw@"), "{printed}");
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
