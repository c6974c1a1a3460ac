//! The option groups: one per concern, flattened into the subcommands that use them.

use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use shared::RetryTier;
use std::path::PathBuf;
use std::time::Duration;

/// The broker and the names of what is declared on it.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// RabbitMQ URL (may hold a password: never logged).
    #[arg(long, env = "AMQP_URL", hide_env_values = true, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f", value_parser = amqp_url)]
    pub amqp_url: SecretString,

    /// Prefix of every exchange and queue name.
    #[arg(long, env = "AMQP_PREFIX", default_value = shared::contract::DEFAULT_PREFIX)]
    pub amqp_prefix: String,

    /// Retry tier delays, in order (e.g. `5s,30s,5m,30m`); after the last, dead-letter.
    #[arg(long, env = "WORKER_RETRY_TIERS", default_value = "5s,30s,5m,30m", value_parser = tiers)]
    pub retry_tiers: TierList,

    /// Replicas each quorum queue is created with (a cluster smaller than this gives every
    /// node one); queues that exist keep theirs.
    #[arg(long, env = "AMQP_QUORUM_INITIAL_GROUP_SIZE", default_value_t = shared::contract::DEFAULT_QUORUM_GROUP_SIZE, value_parser = clap::value_parser!(u32).range(1..))]
    pub quorum_initial_group_size: u32,
}

impl BrokerArgs {
    pub fn topology(&self) -> shared::Topology {
        shared::Topology::new(self.amqp_prefix.clone())
            .with_tiers(self.retry_tiers.0.clone())
            .with_quorum_group_size(self.quorum_initial_group_size)
    }

    pub fn amqp_url(&self) -> &str {
        self.amqp_url.expose_secret()
    }
}

/// The database.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL (may hold a password: never logged).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, default_value = "postgres://postgres@127.0.0.1:5432/scim", value_parser = database_url)]
    pub database_url: SecretString,

    /// `statement_timeout` of every worker connection.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub database_statement_timeout: Duration,

    /// `lock_timeout` of every worker connection: an event whose row or advisory lock is held
    /// longer by someone else goes to a retry tier instead of holding its lane.
    #[arg(long, env = "DATABASE_LOCK_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub database_lock_timeout: Duration,

    /// `idle_in_transaction_session_timeout` of every worker connection.
    #[arg(long, env = "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub database_idle_in_transaction_timeout: Duration,
}

impl DatabaseArgs {
    pub fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }

    pub fn timeouts(&self) -> crate::service::db::Timeouts {
        crate::service::db::Timeouts {
            statement: self.database_statement_timeout,
            lock: self.database_lock_timeout,
            idle_in_transaction: self.database_idle_in_transaction_timeout,
        }
    }

    /// The pool of `max_size` connections, each with these timeouts.
    pub fn pool(&self, max_size: u32) -> crate::service::db::Pool {
        crate::service::db::pool_with(self.database_url(), max_size, self.timeouts())
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

    /// The deprovisioning brake's window: deactivations committed within it are counted.
    #[arg(long, env = "DEPROVISION_BRAKE_WINDOW", default_value = "1h", value_parser = humantime::parse_duration)]
    pub deprovision_brake_window: Duration,

    /// Share of an organization's active users that may be deactivated within the window
    /// before further deactivations are held; 0 turns the brake off.
    #[arg(long, env = "DEPROVISION_BRAKE_PERCENT", default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub deprovision_brake_percent: u32,

    /// Deactivations always allowed within the window, however small the organization.
    #[arg(long, env = "DEPROVISION_BRAKE_MIN", default_value_t = 10)]
    pub deprovision_brake_min: u32,
}

impl ApplyArgs {
    pub fn brake(&self) -> crate::service::brake::BrakeSettings {
        crate::service::brake::BrakeSettings {
            window: self.deprovision_brake_window,
            percent: self.deprovision_brake_percent,
            min: self.deprovision_brake_min,
        }
    }
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

    /// Bytes of unacknowledged deliveries the worker may hold at once: the prefetch (and the
    /// batch) is lowered until every lane's prefetch of the largest messages fits.
    #[arg(long, env = "WORKER_MAX_INFLIGHT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_inflight_bytes: u64,

    /// The largest message body the broker hands out: its `max_message_size`, which the
    /// deploy sets to ingest's `INGEST_MAX_BODY_BYTES`.
    #[arg(long, env = "WORKER_MAX_MESSAGE_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_message_bytes: u64,

    /// How long in-flight work may take to finish on SIGTERM before closing (default `8s`).
    #[arg(long, env = "WORKER_SHUTDOWN_TIMEOUT", value_parser = shared::cli::positive_duration)]
    pub shutdown_timeout: Option<Duration>,

    /// The same in whole seconds: the older variable, still accepted
    /// (`WORKER_SHUTDOWN_TIMEOUT` wins).
    #[arg(long, env = "WORKER_SHUTDOWN_TIMEOUT_SECONDS", hide = true, value_parser = shared::cli::legacy_seconds)]
    pub shutdown_timeout_seconds: Option<Duration>,
}

impl ConsumeArgs {
    /// `WORKER_SHUTDOWN_TIMEOUT`, or the older `WORKER_SHUTDOWN_TIMEOUT_SECONDS`, or 8 s.
    pub fn shutdown_timeout(&self) -> Duration {
        shared::cli::duration_setting(
            self.shutdown_timeout,
            self.shutdown_timeout_seconds,
            Duration::from_secs(8),
        )
    }
}

/// The Scalekit Directory API (for syncs).
#[derive(Debug, Clone, Args)]
pub struct ScalekitArgs {
    /// Scalekit environment URL, e.g. `https://acme.scalekit.com` (Directory API and OAuth).
    #[arg(long, env = "SCALEKIT_ENVIRONMENT_URL", value_parser = http_url)]
    pub scalekit_environment_url: Option<String>,

    /// Scalekit API client id.
    #[arg(long, env = "SCALEKIT_CLIENT_ID")]
    pub scalekit_client_id: Option<String>,

    /// Scalekit API client secret (environment only in production; never logged).
    #[arg(long, env = "SCALEKIT_CLIENT_SECRET", hide_env_values = true, value_parser = secret)]
    pub scalekit_client_secret: Option<SecretString>,

    /// Directory API request timeout (default `20s`).
    #[arg(long, env = "SCALEKIT_TIMEOUT", value_parser = shared::cli::positive_duration)]
    pub scalekit_timeout: Option<Duration>,

    /// The same in whole seconds: the older variable, still accepted (`SCALEKIT_TIMEOUT`
    /// wins).
    #[arg(long, env = "SCALEKIT_TIMEOUT_SECONDS", hide = true, value_parser = shared::cli::legacy_seconds)]
    pub scalekit_timeout_seconds: Option<Duration>,

    /// Retries of a Directory API call on 429/5xx/connection errors.
    #[arg(long, env = "SCALEKIT_MAX_RETRIES", default_value_t = 5)]
    pub scalekit_max_retries: usize,

    /// Most pages one listing may take (30 users a page); a listing that goes on is
    /// incomplete and deactivates nobody.
    #[arg(long, env = "SYNC_MAX_PAGES", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub sync_max_pages: u32,

    /// How long a sync waits for the broker to confirm each page's snapshot events (e.g.
    /// `10s`); past it the sync fails and deactivates nobody.
    #[arg(long, env = "SYNC_CONFIRM_TIMEOUT", default_value = "10s", value_parser = shared::cli::positive_duration)]
    pub sync_confirm_timeout: Duration,
}

/// Parsed retry tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierList(pub Vec<RetryTier>);

pub(super) fn secret(s: &str) -> Result<SecretString, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(SecretString::from(s.to_owned()))
}

/// `AMQP_URL`: every node of the list must parse (the message shows it redacted).
pub(super) fn amqp_url(s: &str) -> Result<SecretString, String> {
    shared::amqp::check_url_list(s)?;
    secret(s)
}

/// `DATABASE_URL`: a URL tokio-postgres reads, with TLS parameters whose files exist.
pub(super) fn database_url(s: &str) -> Result<SecretString, String> {
    let url = secret(s)?;
    crate::service::db::check_url(s)?;
    Ok(url)
}

/// An `http://` or `https://` URL (shown redacted when it is not one).
pub(super) fn http_url(s: &str) -> Result<String, String> {
    match reqwest::Url::parse(s.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
            Ok(s.trim().to_owned())
        }
        Ok(_) => Err(format!(
            "not an http:// or https:// URL: {}",
            shared::redact_url(s)
        )),
        Err(e) => Err(format!("{e}: {}", shared::redact_url(s))),
    }
}

/// [`http_url`], kept secret (it may hold credentials).
pub(crate) fn secret_http_url(s: &str) -> Result<SecretString, String> {
    http_url(s).map(SecretString::from)
}

pub(super) fn tiers(s: &str) -> Result<TierList, String> {
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
    pub fn client_config(&self) -> Result<crate::service::sync::ClientConfig, MissingCredentials> {
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
        Ok(crate::service::sync::ClientConfig {
            environment_url,
            client_id,
            client_secret,
            timeout: shared::cli::duration_setting(
                self.scalekit_timeout,
                self.scalekit_timeout_seconds,
                Duration::from_secs(20),
            ),
            max_retries: self.scalekit_max_retries,
            min_backoff: Duration::from_millis(500),
        })
    }
}
