//! ingest configuration: environment variables, each also a `--flag` (`docs/configuration.md`).

use clap::Parser;
use secrecy::{ExposeSecret, SecretString};
use shared::WebhookSecrets;
use shared::telemetry::LogFormat;
use std::net::SocketAddr;
use std::time::Duration;

/// Receives signed Scalekit webhooks and publishes them to RabbitMQ with publisher confirms.
#[derive(Debug, Clone, Parser)]
#[command(name = "ingest", version, about)]
pub struct Config {
    /// One or more `whsec_…` secrets, separated by spaces or commas (rotation). Required.
    #[arg(long = "webhook-secret", env = "SCALEKIT_WEBHOOK_SECRET", hide_env_values = true, value_parser = parse_webhook_secrets)]
    pub webhook_secret: Option<SecretString>,

    /// RabbitMQ URL (may hold a password: never logged).
    #[arg(long, env = "AMQP_URL", hide_env_values = true, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f", value_parser = parse_amqp_url)]
    pub amqp_url: SecretString,

    /// Prefix of every exchange and queue name.
    #[arg(long, env = "AMQP_PREFIX", default_value = shared::contract::DEFAULT_PREFIX)]
    pub amqp_prefix: String,

    /// Address to listen on (`:0` picks a free port).
    #[arg(long, env = "INGEST_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Largest accepted body, in bytes; larger requests get 413.
    #[arg(long, env = "INGEST_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Seconds a request's body may take to arrive in full; a slower one gets 408 (an
    /// unauthenticated client cannot hold a connection and its buffer by trickling).
    #[arg(long, env = "INGEST_BODY_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_seconds: u64,

    /// Accepted clock difference between the sender's `webhook-timestamp` and ours.
    #[arg(long, env = "WEBHOOK_TOLERANCE_SECONDS", default_value_t = shared::verify::DEFAULT_TOLERANCE_SECONDS)]
    pub tolerance_seconds: u64,

    /// How long to wait for the broker's confirm before answering 503.
    #[arg(long, env = "INGEST_CONFIRM_TIMEOUT_MS", default_value_t = 5000)]
    pub confirm_timeout_ms: u64,

    /// Confirm-mode channels publishes are spread over.
    #[arg(long, env = "INGEST_PUBLISH_CHANNELS", default_value_t = 2)]
    pub publish_channels: usize,

    /// Most publishes an HTTP worker thread starts together (see `docs/ingest.md`).
    #[arg(long, env = "INGEST_PUBLISH_BATCH_MAX", default_value_t = 256)]
    pub publish_batch_max: usize,

    /// Microseconds a publish may wait for others to go out with it, while publishes are
    /// arriving together (a lone one never waits; 0: only those already waiting go together).
    #[arg(long, env = "INGEST_PUBLISH_LINGER_MICROS", default_value_t = 2000)]
    pub publish_linger_micros: u64,

    /// Events a second each organization may send to the apply queue from this instance; past
    /// it (and its burst), to the bulk queue (`ingest/src/fair.rs`). 0 sends every event of an
    /// organization past its burst to bulk.
    #[arg(long, env = "INGEST_FAIR_RATE", default_value_t = 50)]
    pub fair_rate: u32,

    /// Events an organization may send at once to the apply queue before its rate applies.
    #[arg(long, env = "INGEST_FAIR_BURST", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub fair_burst: u32,

    /// `Retry-After` seconds sent with 503.
    #[arg(long, env = "INGEST_RETRY_AFTER_SECONDS", default_value_t = 5)]
    pub retry_after_seconds: u32,

    /// HTTP worker threads (0 = one per core).
    #[arg(long, env = "INGEST_HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,

    /// Seconds to let in-flight requests finish on SIGTERM.
    #[arg(long, env = "INGEST_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 25)]
    pub shutdown_timeout_seconds: u64,

    /// `json` or `pretty`.
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
}

/// `SCALEKIT_WEBHOOK_SECRET`, checked at start (the message says which secret, never its value).
fn parse_webhook_secrets(s: &str) -> Result<SecretString, shared::SecretError> {
    WebhookSecrets::parse(s)?;
    Ok(SecretString::from(s.to_owned()))
}

/// `AMQP_URL`: every node of the list must parse (the message shows it redacted).
fn parse_amqp_url(s: &str) -> Result<SecretString, String> {
    shared::amqp::check_url_list(s)?;
    Ok(SecretString::from(s.to_owned()))
}

/// A configuration value that cannot be used. Never repeats a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("SCALEKIT_WEBHOOK_SECRET (--webhook-secret) is not set")]
    MissingSecret,
    #[error("SCALEKIT_WEBHOOK_SECRET (--webhook-secret): {0}")]
    InvalidSecret(shared::SecretError),
}

impl Config {
    /// The decoded webhook secrets: a missing or malformed value is a start-up error that names
    /// the variable (and never prints the value).
    pub fn webhook_secrets(&self) -> Result<WebhookSecrets, ConfigError> {
        let raw = self
            .webhook_secret
            .as_ref()
            .ok_or(ConfigError::MissingSecret)?;
        WebhookSecrets::parse(raw.expose_secret()).map_err(ConfigError::InvalidSecret)
    }

    pub fn confirm_timeout(&self) -> Duration {
        Duration::from_millis(self.confirm_timeout_ms)
    }

    pub fn coalesce_settings(&self) -> crate::coalesce::CoalesceSettings {
        crate::coalesce::CoalesceSettings {
            max_batch: self.publish_batch_max.max(1),
            linger: Duration::from_micros(self.publish_linger_micros),
        }
    }

    /// The broker URL with any password replaced, for logs.
    pub fn amqp_url_redacted(&self) -> String {
        shared::redact_url(self.amqp_url.expose_secret())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        shared::cli::parse_without_env::<Config>(
            std::iter::once("ingest").chain(args.iter().copied()),
        )
    }

    #[test]
    fn defaults_and_redaction() {
        let c = parse(&["--webhook-secret", "whsec_dGVzdHNlY3JldA=="]).unwrap();
        assert_eq!(c.webhook_secrets().unwrap().len(), 1);
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert_eq!(c.tolerance_seconds, 300);
        assert_eq!(c.amqp_prefix, "scim");
        assert_eq!(c.amqp_url_redacted(), "amqp://guest:***@127.0.0.1:5672/%2f");
        let printed = format!("{c:?}");
        assert!(!printed.contains("dGVzdHNlY3JldA"), "{printed}");
        assert!(!printed.contains("guest:guest"), "{printed}");
    }

    #[test]
    fn bad_secret_is_a_startup_error_naming_the_variable_not_the_value() {
        use clap::CommandFactory;
        let e = parse(&["--webhook-secret", "whsec_test-secret"]).unwrap_err();
        let err = shared::cli::invalid_value_line(&Config::command(), &e).unwrap();
        assert!(err.contains("SCALEKIT_WEBHOOK_SECRET"), "{err}");
        assert!(err.contains("base64"), "{err}");
        assert!(
            !err.contains("test-secret"),
            "the value is never printed: {err}"
        );
        let e = parse(&[
            "--webhook-secret",
            "whsec_dGVzdA==",
            "--amqp-url",
            "amqp:u:hunter2@h:1:x/%2f",
        ])
        .unwrap_err();
        let err = shared::cli::invalid_value_line(&Config::command(), &e).unwrap();
        assert!(err.starts_with("AMQP_URL (--amqp-url): "), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse(&[])
            .unwrap()
            .webhook_secrets()
            .unwrap_err()
            .to_string();
        assert!(err.contains("SCALEKIT_WEBHOOK_SECRET"), "{err}");
    }
}
