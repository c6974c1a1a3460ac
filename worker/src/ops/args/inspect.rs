//! Options of the questions operators ask: `worker status`, `worker explain`,
//! `worker report slo`.

use crate::service::config::{BrokerArgs, DatabaseArgs};
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};

/// `worker status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// RabbitMQ's management API, for message rates (may hold a password: never logged).
    /// Default: the first host of AMQP_URL, port 15672 (15671 with amqps), same credentials.
    #[arg(long, env = "RABBITMQ_MANAGEMENT_URL", hide_env_values = true, value_parser = crate::service::config::secret_http_url)]
    pub management_url: Option<SecretString>,

    /// JSON instead of a screen.
    #[arg(long)]
    pub json: bool,
}

impl StatusArgs {
    pub fn management_url(&self) -> Option<&str> {
        self.management_url.as_ref().map(|s| s.expose_secret())
    }
}

/// `worker explain`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// The organization (`org_…`).
    #[arg(long)]
    pub org: String,

    /// The directory user id, or the user's email.
    #[arg(long)]
    pub user: String,

    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `worker report …`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: ReportCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ReportCommand {
    /// Per organization, occurred_at → committed and → published p50/p99, for provisioning
    /// and deprovisioning apart.
    Slo {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Changes committed since: a duration back from now (`30d`) or an RFC 3339 time.
        #[arg(long, default_value = "30d")]
        since: String,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}
