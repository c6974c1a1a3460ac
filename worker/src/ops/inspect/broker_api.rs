//! RabbitMQ's management HTTP API, for the per-queue message rates that AMQP does not give
//! (`worker status`). Its address is `RABBITMQ_MANAGEMENT_URL`, else derived from the first
//! node of `AMQP_URL`: same host and credentials, port 15672 (15671 over TLS).

use reqwest::Url;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("management API address: {0}")]
    Address(String),
    #[error("management API")]
    Http(#[from] reqwest::Error),
}

/// How long one request to the API may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The management API of one broker, for one virtual host.
#[derive(Debug, Clone)]
pub struct ManagementApi {
    base: Url,
    vhost: String,
    user: String,
    password: Option<String>,
    /// One client (one connection pool) for every request.
    client: reqwest::Client,
}

/// What the API says of one queue.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct QueueInfo {
    #[serde(default)]
    pub messages: u64,
    #[serde(default)]
    pub messages_unacknowledged: u64,
    #[serde(default)]
    pub consumers: u64,
    #[serde(default)]
    pub message_stats: MessageStats,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MessageStats {
    #[serde(default)]
    pub publish_details: Rate,
    #[serde(default)]
    pub ack_details: Rate,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Rate {
    #[serde(default)]
    pub rate: f64,
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl ManagementApi {
    /// From `RABBITMQ_MANAGEMENT_URL` when given, else from the first node of `amqp_url`.
    /// The virtual host is always `amqp_url`'s.
    pub fn new(amqp_url: &str, management_url: Option<&str>) -> Result<Self, ApiError> {
        let first = amqp_url.split(',').next().unwrap_or_default().trim();
        let amqp = Url::parse(first).map_err(|e| ApiError::Address(e.to_string()))?;
        let vhost = match amqp.path().trim_start_matches('/') {
            "" => "/".to_owned(),
            v => decode(v),
        };
        let (mut base, from_amqp) = match management_url {
            Some(u) => (
                Url::parse(u).map_err(|e| ApiError::Address(e.to_string()))?,
                false,
            ),
            None => {
                let tls = amqp.scheme() == "amqps";
                let host = amqp
                    .host_str()
                    .ok_or_else(|| ApiError::Address("AMQP_URL has no host".into()))?;
                let host = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host.to_owned()
                };
                let url = format!(
                    "{}://{host}:{}/",
                    if tls { "https" } else { "http" },
                    if tls { 15671 } else { 15672 }
                );
                (
                    Url::parse(&url).map_err(|e| ApiError::Address(e.to_string()))?,
                    true,
                )
            }
        };
        let source = if from_amqp || base.username().is_empty() {
            &amqp
        } else {
            &base
        };
        let user = match decode(source.username()) {
            u if u.is_empty() => "guest".to_owned(),
            u => u,
        };
        let password = source.password().map(decode);
        let _ = base.set_username("");
        let _ = base.set_password(None);
        Ok(Self {
            base,
            vhost,
            user,
            password,
            client: reqwest::Client::builder().timeout(TIMEOUT).build()?,
        })
    }

    /// The address, without credentials (for messages).
    pub fn address(&self) -> &str {
        self.base.as_str()
    }

    /// One queue of the virtual host.
    pub async fn queue(&self, name: &str) -> Result<QueueInfo, ApiError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| ApiError::Address("not a base URL".into()))?
            .pop_if_empty()
            .extend(["api", "queues", self.vhost.as_str(), name]);
        Ok(self
            .client
            .get(url)
            .basic_auth(&self.user, self.password.as_deref())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_from_the_amqp_url() {
        let api = ManagementApi::new("amqp://scim:s%40cret@rabbit.internal:5672/%2f", None)
            .expect("address");
        assert_eq!(api.address(), "http://rabbit.internal:15672/");
        assert_eq!(api.vhost, "/");
        assert_eq!(api.user, "scim");
        assert_eq!(api.password.as_deref(), Some("s@cret"));
        let tls = ManagementApi::new("amqps://u:p@a:5671/prod,amqps://u:p@b:5671/prod", None)
            .expect("address");
        assert_eq!(tls.address(), "https://a:15671/");
        assert_eq!(tls.vhost, "prod");
    }

    #[test]
    fn an_explicit_address_keeps_its_credentials_apart() {
        let api = ManagementApi::new(
            "amqp://app:pw@rabbit:5672/",
            Some("https://ops:opspw@rabbit-mgmt.example/rabbit/"),
        )
        .expect("address");
        assert_eq!(api.address(), "https://rabbit-mgmt.example/rabbit/");
        assert_eq!(
            (api.user.as_str(), api.password.as_deref()),
            ("ops", Some("opspw"))
        );
        let bare = ManagementApi::new("amqp://app:pw@rabbit:5672/", Some("http://mgmt:15672"))
            .expect("address");
        assert_eq!(
            (bare.user.as_str(), bare.password.as_deref()),
            ("app", Some("pw"))
        );
        assert_eq!(bare.vhost, "/");
    }

    #[test]
    fn queue_info_reads_the_rates_and_tolerates_missing_stats() {
        let q: QueueInfo = serde_json::from_str(
            r#"{"messages":12,"consumers":2,"message_stats":{"publish_details":{"rate":3.5},"ack_details":{"rate":4.0}}}"#,
        )
        .expect("json");
        assert_eq!(q.message_stats.publish_details.rate, 3.5);
        assert_eq!(q.message_stats.ack_details.rate, 4.0);
        let idle: QueueInfo = serde_json::from_str(r#"{"messages":0}"#).expect("json");
        assert_eq!(idle, QueueInfo::default());
    }
}
