//! One batch to one endpoint: a POST signed per Standard Webhooks (`webhook-id` stable for the
//! batch, `webhook-timestamp` of the attempt, `webhook-signature` with one `v1,` entry per
//! configured secret), retried with capped exponential backoff and jitter until a 2xx, never
//! skipped. Only a 2xx counts: a redirect, any other status, a timeout or a refused
//! connection is a failed attempt, reported and retried.

use super::endpoints::Endpoint;
use super::plan::Batch;
use backon::{BackoffBuilder, ExponentialBuilder};
use shared::verify::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, sign};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The first retry waits about this long; the wait doubles up to [`MAX_DELAY`].
pub const MIN_DELAY: Duration = Duration::from_millis(500);
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// An endpoint with its HTTP client (connections kept alive between requests).
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: Endpoint,
    client: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client")]
pub struct ClientError(#[from] reqwest::Error);

impl Target {
    pub fn new(endpoint: Endpoint, timeout: Duration) -> Result<Self, ClientError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("scim-provisioning/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { endpoint, client })
    }
}

/// The three Standard Webhooks headers of an attempt.
pub fn headers(
    endpoint: &Endpoint,
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    let signatures: Vec<String> = endpoint
        .secrets
        .iter()
        .map(|s| sign(s, webhook_id, timestamp, body))
        .collect();
    [
        (HEADER_ID, webhook_id.to_owned()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
        (HEADER_SIGNATURE, signatures.join(" ")),
    ]
}

/// Why an attempt failed, as `worker endpoints list` shows it (`last status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Status(u16),
    Timeout,
    Connect,
    Other,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s) => write!(f, "HTTP {s}"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Connect => f.write_str("connection refused or failed"),
            Failure::Other => f.write_str("request failed"),
        }
    }
}

/// One attempt.
pub async fn post(target: &Target, batch: &Batch) -> Result<(), Failure> {
    let id = batch.webhook_id();
    let now = chrono::Utc::now().timestamp();
    let mut req = target
        .client
        .post(target.endpoint.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(batch.body.clone());
    for (name, value) in headers(&target.endpoint, &id, now, &batch.body) {
        req = req.header(name, value);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(Failure::Status(r.status().as_u16())),
        Err(e) if e.is_timeout() => Err(Failure::Timeout),
        Err(e) if e.is_connect() => Err(Failure::Connect),
        Err(_) => Err(Failure::Other),
    }
}

/// A failed attempt, reported to the leader as it happens.
#[derive(Debug)]
pub struct Attempt {
    pub endpoint: usize,
    pub organization_id: String,
    pub failure: Failure,
}

/// Posts `batch` until a 2xx (true) or `cancel` (false).
pub async fn deliver(
    target: &Target,
    index: usize,
    batch: &Batch,
    failures: &mpsc::UnboundedSender<Attempt>,
    cancel: &CancellationToken,
) -> bool {
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let attempt = tokio::select! {
            () = cancel.cancelled() => return false,
            a = post(target, batch) => a,
        };
        let Err(failure) = attempt else {
            return true;
        };
        let _ = failures.send(Attempt {
            endpoint: index,
            organization_id: batch.organization_id.clone(),
            failure,
        });
        let delay = delays.next().unwrap_or(MAX_DELAY);
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::changes::push::endpoints::{parse_secrets, parse_url};

    #[test]
    fn every_secret_signs_and_a_standard_webhooks_library_verifies_each() {
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let new = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let endpoint = Endpoint {
            name: "default".into(),
            url: parse_url("https://app.example.com/in").unwrap(),
            secrets: parse_secrets(&format!("{old},{new}")).unwrap(),
            kinds: vec![],
        };
        let body = br#"{"changes":[{"seq":1}]}"#;
        let now = chrono::Utc::now().timestamp();
        let hs = headers(&endpoint, "batch_1_1_org_a", now, body);
        let mut map = http::HeaderMap::new();
        for (k, v) in &hs {
            map.insert(*k, v.parse().unwrap());
        }
        assert_eq!(hs[2].1.split(' ').count(), 2);
        for secret in [old, new] {
            let wh = standardwebhooks::Webhook::new(secret).unwrap();
            wh.verify(body, &map).unwrap();
        }
        let other =
            standardwebhooks::Webhook::new("whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldA==").unwrap();
        assert!(other.verify(body, &map).is_err());
    }

    #[test]
    fn the_id_is_the_batch_s_and_the_failures_read_as_operators_see_them() {
        assert_eq!(Failure::Status(503).to_string(), "HTTP 503");
        assert_eq!(Failure::Timeout.to_string(), "timeout");
    }
}
