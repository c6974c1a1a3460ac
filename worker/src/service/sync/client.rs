//! Scalekit Directory API client (REST, `docs/scalekit.md`, "Directory API"): client-credentials token cached and refreshed
//! ahead of expiry, refresh-once-and-retry on 401, bounded exponential backoff with jitter on
//! 429/5xx/connect errors honouring `Retry-After`, request timeouts, pagination.
//!
//! It bounds what it trusts: bodies are read up to [`MAX_BODY_BYTES`], a `Retry-After` beyond
//! [`MAX_RETRY_AFTER`] is an error rather than a wait, a token lifetime is clamped to
//! [`TOKEN_LIFETIME`] (a zero `expires_in` must not fetch a token per call, a huge one must not
//! overflow), redirects are never followed (the client secret is sent to the configured host
//! only), and ids are percent-encoded as path segments.

use super::model::{
    ApiErrorBody, Directory, DirectoryGroup, DirectoryUser, GetDirectoryResponse,
    ListDirectoriesResponse, Page, TokenResponse,
};
use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Largest page the API accepts (proto `lte: 30`).
pub const MAX_PAGE_SIZE: u32 = 30;

/// The largest response body read (a page of 30 detailed users is a few hundred KiB).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The longest `Retry-After` honoured; a longer one fails the call.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Bounds on a token's lifetime, whatever `expires_in` says.
pub const TOKEN_LIFETIME: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(30)..=Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Scalekit API {status}: code {code:?}: {message}")]
    Api {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    #[error("Scalekit API still failing after {attempts} attempts: {last}")]
    Exhausted { attempts: usize, last: String },
    #[error("Scalekit rejected the credentials: {0}")]
    Unauthorized(String),
    #[error("invalid response from Scalekit: {0}")]
    Decode(String),
    #[error("Scalekit asked to retry after {0:?}, longer than the {MAX_RETRY_AFTER:?} we wait")]
    RetryAfterTooLong(Duration),
    #[error(
        "Scalekit answered {status} with a redirect to {location:?}: redirects are not followed"
    )]
    Redirect { status: u16, location: String },
    #[error("response body over {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    #[error("invalid Scalekit environment URL: {0}")]
    Url(String),
    #[error("HTTP client")]
    Http(#[from] reqwest::Error),
}

/// Credentials and limits.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub environment_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub timeout: Duration,
    pub max_retries: usize,
    /// Lower bound of the backoff (tests use small values).
    pub min_backoff: Duration,
}

struct Token {
    value: SecretString,
    refresh_at: Instant,
}

pub struct ScalekitClient {
    http: reqwest::Client,
    config: ClientConfig,
    token: Mutex<Option<Token>>,
}

enum Attempt<T> {
    Done(T),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Reauth,
}

fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The body, read up to [`MAX_BODY_BYTES`].
async fn read_body(mut resp: Response) -> Result<Vec<u8>, ClientError> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(ClientError::BodyTooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ClientError::BodyTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn decode<T: DeserializeOwned>(resp: Response) -> Result<T, ClientError> {
    let body = read_body(resp).await?;
    serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
}

/// How long a token is used: `expires_in` (an hour when absent) within [`TOKEN_LIFETIME`].
pub fn token_lifetime(expires_in: Option<u64>) -> Duration {
    Duration::from_secs(expires_in.unwrap_or(3600))
        .clamp(*TOKEN_LIFETIME.start(), *TOKEN_LIFETIME.end())
}

async fn api_error(resp: Response) -> ClientError {
    let status = resp.status();
    if status.is_redirection() {
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        return ClientError::Redirect {
            status: status.as_u16(),
            location,
        };
    }
    let status = status.as_u16();
    let body: ApiErrorBody = match read_body(resp).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => ApiErrorBody::default(),
    };
    ClientError::Api {
        status,
        code: body.code,
        message: body.message.unwrap_or_else(|| "(no message)".to_owned()),
    }
}

impl ScalekitClient {
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "scim-provisioning-worker/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(Self {
            http,
            config,
            token: Mutex::new(None),
        })
    }

    /// The environment URL with `segments` appended, each percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<reqwest::Url, ClientError> {
        let mut url = reqwest::Url::parse(&self.config.environment_url)
            .map_err(|e| ClientError::Url(e.to_string()))?;
        url.path_segments_mut()
            .map_err(|()| ClientError::Url("cannot be a base".to_owned()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// The cached token, fetched when missing, near expiry, or when `force` (after a 401).
    async fn token(&self, force: bool) -> Result<SecretString, ClientError> {
        let mut guard = self.token.lock().await;
        if !force && let Some(t) = guard.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.value.clone());
        }
        let resp = self
            .http
            .post(self.url(&["oauth", "token"])?)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.config.client_id.as_str()),
                ("client_secret", self.config.client_secret.expose_secret()),
            ])
            .send()
            .await?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::BAD_REQUEST {
            return Err(ClientError::Unauthorized(api_error(resp).await.to_string()));
        }
        if !resp.status().is_success() {
            return Err(api_error(resp).await);
        }
        let body: TokenResponse = decode(resp).await?;
        let lifetime = token_lifetime(body.expires_in);
        // Refresh a minute early (or half-way, for short-lived tokens).
        let margin = Duration::from_secs(60).min(lifetime / 2);
        let value = SecretString::from(body.access_token);
        *guard = Some(Token {
            value: value.clone(),
            refresh_at: Instant::now() + lifetime - margin,
        });
        tracing::debug!(expires_in = lifetime.as_secs(), "Scalekit token refreshed");
        Ok(value)
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, String)],
        force: bool,
    ) -> Result<Attempt<T>, ClientError> {
        let token = self.token(force).await?;
        let sent = self
            .http
            .get(self.url(path)?)
            .query(query)
            .bearer_auth(token.expose_secret())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => {
                return Ok(Attempt::Retry {
                    reason: shared::Chain(&e).to_string(),
                    after: None,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(Attempt::Done(decode(resp).await?));
        }
        if status == StatusCode::UNAUTHORIZED {
            return Ok(Attempt::Reauth);
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let after = retry_after(&resp);
            if let Some(after) = after.filter(|a| *a > MAX_RETRY_AFTER) {
                return Err(ClientError::RetryAfterTooLong(after));
            }
            let err = api_error(resp).await;
            return Ok(Attempt::Retry {
                reason: shared::Chain(&err).to_string(),
                after,
            });
        }
        Err(api_error(resp).await)
    }

    /// GET with retries: 401 → refresh the token once and retry once; 429/5xx/connect errors →
    /// backoff (at least `Retry-After`), at most `max_retries` times.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.config.min_backoff)
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .with_max_times(self.config.max_retries)
            .build();
        let mut reauthed = false;
        // Set for the one attempt right after a 401: it fetches a fresh token first.
        let mut force = false;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.attempt::<T>(path, query, force).await? {
                Attempt::Done(v) => return Ok(v),
                Attempt::Reauth if !reauthed => {
                    reauthed = true;
                    force = true;
                    tracing::info!("Scalekit answered 401: refreshing the token once");
                }
                Attempt::Reauth => {
                    return Err(ClientError::Unauthorized(
                        "401 after a fresh token".to_owned(),
                    ));
                }
                Attempt::Retry { reason, after } => {
                    force = false;
                    let Some(d) = delays.next() else {
                        return Err(ClientError::Exhausted {
                            attempts,
                            last: reason,
                        });
                    };
                    let wait = after.map_or(d, |a| a.max(d));
                    tracing::warn!(%reason, ?wait, attempts, "Scalekit call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    pub async fn list_directories(&self, org: &str) -> Result<Vec<Directory>, ClientError> {
        let r: ListDirectoriesResponse = self
            .get(&["api", "v1", "organizations", org, "directories"], &[])
            .await?;
        Ok(r.directories)
    }

    pub async fn get_directory(&self, org: &str, dir: &str) -> Result<Directory, ClientError> {
        let r: GetDirectoryResponse = self
            .get(
                &["api", "v1", "organizations", org, "directories", dir],
                &[],
            )
            .await?;
        Ok(r.directory)
    }

    /// One page of users (`include_detail=true`).
    pub async fn users_page(
        &self,
        org: &str,
        dir: &str,
        token: Option<&str>,
    ) -> Result<Page<DirectoryUser>, ClientError> {
        let mut q = vec![
            ("page_size", MAX_PAGE_SIZE.to_string()),
            ("include_detail", "true".to_owned()),
        ];
        if let Some(t) = token {
            q.push(("page_token", t.to_owned()));
        }
        self.get(&directory_path(org, dir, "users"), &q).await
    }

    /// One page of groups.
    pub async fn groups_page(
        &self,
        org: &str,
        dir: &str,
        token: Option<&str>,
    ) -> Result<Page<DirectoryGroup>, ClientError> {
        let mut q = vec![("page_size", MAX_PAGE_SIZE.to_string())];
        if let Some(t) = token {
            q.push(("page_token", t.to_owned()));
        }
        self.get(&directory_path(org, dir, "groups"), &q).await
    }
}

/// `/api/v1/organizations/{org}/directories/{dir}/{list}`, as path segments.
fn directory_path<'a>(org: &'a str, dir: &'a str, list: &'a str) -> [&'a str; 7] {
    ["api", "v1", "organizations", org, "directories", dir, list]
}

#[cfg(test)]
mod tests {
    use super::{TOKEN_LIFETIME, token_lifetime};
    use std::time::Duration;

    #[test]
    fn token_lifetime_is_clamped() {
        assert_eq!(token_lifetime(None), Duration::from_secs(3600));
        assert_eq!(token_lifetime(Some(0)), *TOKEN_LIFETIME.start());
        assert_eq!(token_lifetime(Some(u64::MAX)), *TOKEN_LIFETIME.end());
        assert_eq!(token_lifetime(Some(86_399)), Duration::from_secs(86_399));
    }
}
