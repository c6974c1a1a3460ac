//! ingest configuration: environment variables, each also a `--flag` (`docs/configuration.md`).

use clap::Parser;
use secrecy::{ExposeSecret, SecretString};
use shared::WebhookSecrets;
use shared::cli::duration_setting;
use shared::telemetry::LogFormat;
use std::net::SocketAddr;
use std::time::Duration;

fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `INGEST_BODY_TIMEOUT_SECONDS`: at least one second, as before.
fn legacy_positive_seconds(text: &str) -> Result<Duration, String> {
    match shared::cli::legacy_seconds(text)? {
        d if d.is_zero() => Err(format!("{} is not in 1..", text.trim())),
        d => Ok(d),
    }
}

/// Receives signed Scalekit webhooks and publishes them to RabbitMQ with publisher confirms.
#[derive(Debug, Clone, Parser)]
#[command(name = "ingest", version, about)]
pub struct Config {
    #[command(flatten)]
    pub broker_tls: shared::amqp::tls::TlsArgs,

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

    /// How long a request's body may take to arrive in full (default `10s`); a slower one
    /// gets 408 (an unauthenticated client cannot hold a connection and its buffer by
    /// trickling).
    #[arg(long, env = "INGEST_BODY_TIMEOUT", value_parser = shared::cli::positive_duration)]
    pub body_timeout: Option<Duration>,

    /// The same in whole seconds: the older variable, still accepted.
    #[arg(long, env = "INGEST_BODY_TIMEOUT_SECONDS", hide = true, value_parser = legacy_positive_seconds)]
    pub body_timeout_seconds: Option<Duration>,

    /// Accepted clock difference between the sender's `webhook-timestamp` and ours, both
    /// ways (default `5m`; counted in whole seconds).
    #[arg(long, env = "WEBHOOK_TOLERANCE", value_parser = shared::cli::positive_duration)]
    pub tolerance: Option<Duration>,

    /// The same in whole seconds: the older variable, still accepted.
    #[arg(long, env = "WEBHOOK_TOLERANCE_SECONDS", hide = true, value_parser = shared::cli::legacy_seconds)]
    pub tolerance_seconds: Option<Duration>,

    /// How long to wait for the broker's confirm before answering 503 (default `5s`).
    #[arg(long, env = "INGEST_CONFIRM_TIMEOUT", value_parser = shared::cli::positive_duration)]
    pub confirm_timeout: Option<Duration>,

    /// The same in milliseconds: the older variable, still accepted.
    #[arg(long, env = "INGEST_CONFIRM_TIMEOUT_MS", hide = true, value_parser = shared::cli::legacy_millis)]
    pub confirm_timeout_ms: Option<Duration>,

    /// Confirm-mode channels publishes are spread over.
    #[arg(long, env = "INGEST_PUBLISH_CHANNELS", default_value_t = 2)]
    pub publish_channels: usize,

    /// Most publishes an HTTP worker thread starts together (see `docs/ingest.md`).
    #[arg(long, env = "INGEST_PUBLISH_BATCH_MAX", default_value_t = 256)]
    pub publish_batch_max: usize,

    /// How long a publish may wait for others to go out with it, while publishes are arriving
    /// together (default `2ms`; a lone one never waits; `0s`: only those already waiting go
    /// together).
    #[arg(long, env = "INGEST_PUBLISH_LINGER", value_parser = shared::cli::duration)]
    pub publish_linger: Option<Duration>,

    /// The same in microseconds: the older variable, still accepted.
    #[arg(long, env = "INGEST_PUBLISH_LINGER_MICROS", hide = true, value_parser = shared::cli::legacy_micros)]
    pub publish_linger_micros: Option<Duration>,

    /// Events a second each organization may send to the apply queue from this instance; past
    /// it (and its burst), to the bulk queue (`ingest/src/fair.rs`). 0 sends every event of an
    /// organization past its burst to bulk.
    #[arg(long, env = "INGEST_FAIR_RATE", default_value_t = 50)]
    pub fair_rate: u32,

    /// Events an organization may send at once to the apply queue before its rate applies.
    #[arg(long, env = "INGEST_FAIR_BURST", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub fair_burst: u32,

    /// `Retry-After` sent with 503 (default `5s`; sent in whole seconds).
    #[arg(long, env = "INGEST_RETRY_AFTER", value_parser = shared::cli::positive_duration)]
    pub retry_after: Option<Duration>,

    /// The same in whole seconds: the older variable, still accepted.
    #[arg(long, env = "INGEST_RETRY_AFTER_SECONDS", hide = true, value_parser = shared::cli::legacy_seconds)]
    pub retry_after_seconds: Option<Duration>,

    /// HTTP worker threads (0 = one per core).
    #[arg(long, env = "INGEST_HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,

    /// How long in-flight requests may take to finish on SIGTERM (default `25s`; counted in
    /// whole seconds).
    #[arg(long, env = "INGEST_SHUTDOWN_TIMEOUT", value_parser = shared::cli::positive_duration)]
    pub shutdown_timeout: Option<Duration>,

    /// The same in whole seconds: the older variable, still accepted.
    #[arg(long, env = "INGEST_SHUTDOWN_TIMEOUT_SECONDS", hide = true, value_parser = shared::cli::legacy_seconds)]
    pub shutdown_timeout_seconds: Option<Duration>,

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

    /// `INGEST_CONFIRM_TIMEOUT`, or the older `INGEST_CONFIRM_TIMEOUT_MS`, or 5 s. Each
    /// duration below: the humantime variable wins over the older one it replaces.
    pub fn confirm_timeout(&self) -> Duration {
        duration_setting(
            self.confirm_timeout,
            self.confirm_timeout_ms,
            Duration::from_secs(5),
        )
    }

    pub fn body_timeout(&self) -> Duration {
        duration_setting(
            self.body_timeout,
            self.body_timeout_seconds,
            Duration::from_secs(10),
        )
    }

    /// In whole seconds, rounded up.
    pub fn tolerance_seconds(&self) -> u64 {
        whole_seconds(duration_setting(
            self.tolerance,
            self.tolerance_seconds,
            Duration::from_secs(shared::verify::DEFAULT_TOLERANCE_SECONDS),
        ))
    }

    /// In whole seconds, rounded up (the `Retry-After` header's unit).
    pub fn retry_after_seconds(&self) -> u64 {
        whole_seconds(duration_setting(
            self.retry_after,
            self.retry_after_seconds,
            Duration::from_secs(5),
        ))
    }

    /// In whole seconds, rounded up.
    pub fn shutdown_timeout_seconds(&self) -> u64 {
        whole_seconds(duration_setting(
            self.shutdown_timeout,
            self.shutdown_timeout_seconds,
            Duration::from_secs(25),
        ))
    }

    pub fn coalesce_settings(&self) -> crate::coalesce::CoalesceSettings {
        crate::coalesce::CoalesceSettings {
            max_batch: self.publish_batch_max.max(1),
            linger: duration_setting(
                self.publish_linger,
                self.publish_linger_micros,
                Duration::from_millis(2),
            ),
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
        assert_eq!(c.tolerance_seconds(), 300);
        assert_eq!(c.confirm_timeout(), Duration::from_secs(5));
        assert_eq!(c.body_timeout(), Duration::from_secs(10));
        assert_eq!(c.retry_after_seconds(), 5);
        assert_eq!(c.shutdown_timeout_seconds(), 25);
        assert_eq!(c.coalesce_settings().linger, Duration::from_millis(2));
        assert_eq!(c.amqp_prefix, "scim");
        assert_eq!(c.amqp_url_redacted(), "amqp://guest:***@127.0.0.1:5672/%2f");
        let printed = format!("{c:?}");
        assert!(!printed.contains("dGVzdHNlY3JldA"), "{printed}");
        assert!(!printed.contains("guest:guest"), "{printed}");
    }

    #[test]
    fn durations_in_one_notation_and_the_older_variables_still_accepted() {
        let secret = ["--webhook-secret", "whsec_dGVzdHNlY3JldA=="];
        let with = |more: &[&str]| parse(&[&secret[..], more].concat()).unwrap();
        let c = with(&["--confirm-timeout", "750ms", "--retry-after", "1500ms"]);
        assert_eq!(c.confirm_timeout(), Duration::from_millis(750));
        assert_eq!(c.retry_after_seconds(), 2, "rounded up to whole seconds");
        let old = with(&[
            "--confirm-timeout-ms",
            "250",
            "--body-timeout-seconds",
            "3",
            "--tolerance-seconds",
            "60",
            "--shutdown-timeout-seconds",
            "7",
        ]);
        assert_eq!(old.confirm_timeout(), Duration::from_millis(250));
        assert_eq!(old.body_timeout(), Duration::from_secs(3));
        assert_eq!(old.tolerance_seconds(), 60);
        assert_eq!(old.shutdown_timeout_seconds(), 7);
        let linger = with(&["--publish-linger-micros", "500"]);
        assert_eq!(
            linger.coalesce_settings().linger,
            Duration::from_micros(500)
        );
        let none = with(&["--publish-linger", "0s"]);
        assert_eq!(none.coalesce_settings().linger, Duration::ZERO);
        // Both given: the humantime one wins.
        let both = with(&["--confirm-timeout", "2s", "--confirm-timeout-ms", "250"]);
        assert_eq!(both.confirm_timeout(), Duration::from_secs(2));
        for bad in [
            &["--body-timeout-seconds", "0"][..],
            &["--body-timeout", "0s"],
            &["--confirm-timeout", "soon"],
            &["--confirm-timeout-ms", "1.5"],
        ] {
            assert!(parse(&[&secret[..], bad].concat()).is_err(), "{bad:?}");
        }
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
