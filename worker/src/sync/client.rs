//! Scalekit Directory API client (REST, `docs/scalekit.md`, "Directory API"): client-credentials token cached and refreshed
//! ahead of expiry, refresh-once-and-retry on 401, bounded exponential backoff with jitter on
//! 429/5xx/connect errors honouring `Retry-After`, request timeouts, pagination.

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
    #[error("HTTP client: {0}")]
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

async fn api_error(resp: Response) -> ClientError {
    let status = resp.status().as_u16();
    let body: ApiErrorBody = resp.json().await.unwrap_or_default();
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

    fn url(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.config.environment_url.trim_end_matches('/'),
            path
        )
    }

    /// The cached token, fetched when missing, near expiry, or when `force` (after a 401).
    async fn token(&self, force: bool) -> Result<SecretString, ClientError> {
        let mut guard = self.token.lock().await;
        if !force && let Some(t) = guard.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.value.clone());
        }
        let resp = self
            .http
            .post(self.url("/oauth/token"))
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
        let body: TokenResponse = resp
            .json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(3600));
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
        path: &str,
        query: &[(&str, String)],
        force: bool,
    ) -> Result<Attempt<T>, ClientError> {
        let token = self.token(force).await?;
        let sent = self
            .http
            .get(self.url(path))
            .query(query)
            .bearer_auth(token.expose_secret())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => {
                return Ok(Attempt::Retry {
                    reason: e.to_string(),
                    after: None,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let status = resp.status();
        if status.is_success() {
            let body = resp
                .json::<T>()
                .await
                .map_err(|e| ClientError::Decode(e.to_string()))?;
            return Ok(Attempt::Done(body));
        }
        if status == StatusCode::UNAUTHORIZED {
            return Ok(Attempt::Reauth);
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let after = retry_after(&resp);
            let err = api_error(resp).await;
            return Ok(Attempt::Retry {
                reason: err.to_string(),
                after,
            });
        }
        Err(api_error(resp).await)
    }

    /// GET with retries: 401 → refresh the token once and retry once; 429/5xx/connect errors →
    /// backoff (at least `Retry-After`), at most `max_retries` times.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.config.min_backoff)
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .with_max_times(self.config.max_retries)
            .build();
        let mut reauthed = false;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.attempt::<T>(path, query, false).await? {
                Attempt::Done(v) => return Ok(v),
                Attempt::Reauth if !reauthed => {
                    reauthed = true;
                    tracing::info!("Scalekit answered 401: refreshing the token once");
                    match self.attempt::<T>(path, query, true).await? {
                        Attempt::Done(v) => return Ok(v),
                        Attempt::Reauth => {
                            return Err(ClientError::Unauthorized(
                                "401 after a fresh token".to_owned(),
                            ));
                        }
                        Attempt::Retry { reason, after } => {
                            let Some(d) = delays.next() else {
                                return Err(ClientError::Exhausted {
                                    attempts,
                                    last: reason,
                                });
                            };
                            tokio::time::sleep(after.map_or(d, |a| a.max(d))).await;
                        }
                    }
                }
                Attempt::Reauth => {
                    return Err(ClientError::Unauthorized(
                        "401 after a fresh token".to_owned(),
                    ));
                }
                Attempt::Retry { reason, after } => {
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
            .get(&format!("/api/v1/organizations/{org}/directories"), &[])
            .await?;
        Ok(r.directories)
    }

    pub async fn get_directory(&self, org: &str, dir: &str) -> Result<Directory, ClientError> {
        let r: GetDirectoryResponse = self
            .get(
                &format!("/api/v1/organizations/{org}/directories/{dir}"),
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
        self.get(
            &format!("/api/v1/organizations/{org}/directories/{dir}/users"),
            &q,
        )
        .await
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
        self.get(
            &format!("/api/v1/organizations/{org}/directories/{dir}/groups"),
            &q,
        )
        .await
    }
}

/// The next page token, or `None` when the listing is complete (missing or empty token, or an
/// empty page as a safety net).
pub fn next_token(token: Option<String>, items_on_page: usize) -> Option<String> {
    token.filter(|t| !t.is_empty() && items_on_page > 0)
}

#[cfg(test)]
mod tests {
    use super::next_token;

    #[test]
    fn pagination_stops_on_missing_empty_token_or_empty_page() {
        assert_eq!(next_token(None, 30), None);
        assert_eq!(next_token(Some(String::new()), 30), None);
        assert_eq!(next_token(Some("abc".into()), 0), None);
        assert_eq!(next_token(Some("abc".into()), 30), Some("abc".into()));
    }
}
