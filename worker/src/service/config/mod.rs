//! The service's options, one group per concern (broker, database, apply, consume, Scalekit,
//! the change feed's relay, pull API and push), and `worker run`'s whole set ([`RunArgs`]).
//! The operator commands flatten the groups they use (`crate::ops::args`); the command line
//! itself is `crate::cli`. Every option is also an environment variable
//! (`docs/configuration.md`).

mod groups;
mod push;

pub(crate) use groups::secret_http_url;
pub use groups::{
    ApplyArgs, BrokerArgs, ConsumeArgs, DatabaseArgs, MissingCredentials, ScalekitArgs, TierList,
};
pub use push::ChangesPushArgs;

use clap::Args;
use std::net::SocketAddr;
use std::time::Duration;

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
    pub changes_relay: ChangesRelayArgs,

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
    #[arg(long, env = "CHANGES_API_TOKENS", hide_env_values = true, value_parser = crate::service::changes::api::auth::Tokens::parse)]
    pub changes_api_tokens: Option<crate::service::changes::api::auth::Tokens>,
}

/// The relay and push delivery leaders of `worker run`: how much a relay round takes, how long
/// it waits for the broker's confirms, how often both look for changes when no commit woke
/// them.
#[derive(Debug, Clone, Args)]
pub struct ChangesRelayArgs {
    /// Outbox rows one relay round publishes (1 to 10,000).
    #[arg(long, env = "CHANGES_RELAY_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub changes_relay_batch: u16,

    /// How long the relay waits for the broker to confirm a round (e.g. `10s`); past it the
    /// leader's term ends and the next one publishes the round again.
    #[arg(long, env = "CHANGES_RELAY_CONFIRM_TIMEOUT", default_value = "10s", value_parser = shared::cli::positive_duration)]
    pub changes_relay_confirm_timeout: Duration,

    /// The relay's and push delivery's fallback poll (they wake on every commit's
    /// notification; this is for a notification lost with a connection), e.g. `500ms`.
    #[arg(long, env = "CHANGES_POLL_INTERVAL", default_value = "500ms", value_parser = shared::cli::positive_duration)]
    pub changes_poll_interval: Duration,
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
        self.consume.shutdown_timeout()
    }
}
