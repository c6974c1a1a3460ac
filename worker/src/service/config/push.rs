//! Push delivery of the change feed (`crate::service::changes::push`): the default endpoint, the file
//! of more endpoints, and the delivery bounds.

use crate::service::changes::push::endpoints::{self, Endpoint, EndpointsError};
use clap::Args;
use shared::WebhookSecrets;
use shared::changes::ChangeKind;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct ChangesPushArgs {
    /// The application's endpoint for changes (`http://` or `https://`): every change is POSTed
    /// to it, signed; off when unset (endpoint name `default`).
    #[arg(long, env = "CHANGES_WEBHOOK_URL", hide_env_values = true, value_parser = endpoints::parse_url)]
    pub changes_webhook_url: Option<reqwest::Url>,

    /// `whsec_…` secret(s) signing the requests, comma-separated while rotating (each one signs).
    #[arg(long, env = "CHANGES_WEBHOOK_SECRET", hide_env_values = true, value_parser = endpoints::parse_secrets)]
    pub changes_webhook_secret: Option<WebhookSecrets>,

    /// Only these kinds to the default endpoint, comma-separated (e.g.
    /// `user.deprovisioned,user.erased`); every kind when unset.
    #[arg(long, env = "CHANGES_WEBHOOK_KINDS", value_delimiter = ',', value_parser = endpoints::parse_kind)]
    pub changes_webhook_kinds: Vec<ChangeKind>,

    /// A TOML file of more endpoints (`[[endpoint]]` with name, url, secret, kinds).
    #[arg(long, env = "CHANGES_WEBHOOKS_FILE")]
    pub changes_webhooks_file: Option<PathBuf>,

    /// Changes per request, at most (one organization per request).
    #[arg(long, env = "CHANGES_WEBHOOK_BATCH", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub changes_webhook_batch: u16,

    /// One attempt's bound: no 2xx within it is a failed attempt, retried.
    #[arg(long, env = "CHANGES_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = shared::cli::positive_duration)]
    pub changes_webhook_timeout: Duration,

    /// An endpoint failing this long is paused (`worker endpoints resume` restarts it).
    #[arg(long, env = "CHANGES_WEBHOOK_PAUSE_AFTER", default_value = "24h", value_parser = shared::cli::positive_duration)]
    pub changes_webhook_pause_after: Duration,

    /// Organizations delivered at once per endpoint (each one request at a time).
    #[arg(long, env = "CHANGES_WEBHOOK_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub changes_webhook_concurrency: u16,
}

impl ChangesPushArgs {
    /// Every configured endpoint, checked whole (start-up error otherwise).
    pub fn endpoints(&self) -> Result<Vec<Endpoint>, EndpointsError> {
        endpoints::collect(
            self.changes_webhook_url.as_ref(),
            self.changes_webhook_secret.as_ref(),
            &self.changes_webhook_kinds,
            self.changes_webhooks_file.as_deref(),
        )
    }
}
