//! `spawn_app()`: the real ingest (its library, in-process) on port 0 against the real broker,
//! under a unique prefix, with a tap queue that sees everything it publishes.

use crate::{
    OLD_SECRET, RabbitTap, SECRET, amqp_url, delete_topology, signed_headers, unique_prefix,
};
use ingest::{Application, Config};
use shared::{Topology, WebhookSecret};
use std::time::Duration;

pub struct TestApp {
    pub base: String,
    pub topology: Topology,
    pub tap: RabbitTap,
    pub tap_queue: String,
    pub handle: actix_web::dev::ServerHandle,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    pub client: reqwest::Client,
    pub secret: WebhookSecret,
    pub metrics: std::sync::Arc<ingest::metrics::Metrics>,
}

pub fn config(prefix: &str, amqp: &str, extra: &[&str]) -> Config {
    let mut args = vec![
        "ingest".to_owned(),
        "--webhook-secret".to_owned(),
        format!("{SECRET} {OLD_SECRET}"),
        "--amqp-url".to_owned(),
        amqp.to_owned(),
        "--amqp-prefix".to_owned(),
        prefix.to_owned(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--http-workers".to_owned(),
        "2".to_owned(),
        "--confirm-timeout".to_owned(),
        "2s".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    shared::cli::parse_without_env::<Config>(args).unwrap()
}

/// Starts ingest against `amqp` (the broker, or a proxy in front of it).
pub async fn spawn_with(amqp: &str, extra: &[&str], wait_ready: bool) -> TestApp {
    let prefix = unique_prefix("ingest");
    let topology = Topology::new(prefix.clone());
    let tap = RabbitTap::connect(&amqp_url()).await.unwrap();
    let tap_queue = format!("{prefix}.tap");
    tap.bind_tap(&topology, &tap_queue, "#").await.unwrap();
    let app = Application::build(config(&prefix, amqp, extra)).unwrap();
    if wait_ready {
        assert!(
            app.wait_ready(Duration::from_secs(20)).await,
            "broker link never ready"
        );
    }
    let base = format!("http://{}", app.addr());
    let handle = app.handle();
    let metrics = app.metrics();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp {
        base,
        topology,
        tap,
        tap_queue,
        handle,
        server,
        client: reqwest::Client::new(),
        secret: SECRET.parse().unwrap(),
        metrics,
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(&amqp_url(), &[], true).await
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs `body` with the given headers.
    pub async fn post(&self, body: &[u8], headers: &[(String, String)]) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url(ingest::WEBHOOK_PATH))
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send().await.unwrap()
    }

    /// A webhook request for `body`, signed with the current secret, not sent yet.
    pub fn signed_request(&self, webhook_id: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let headers = signed_headers(&self.secret, webhook_id, &body);
        let mut req = self.client.post(self.url(ingest::WEBHOOK_PATH)).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req
    }

    /// POSTs `body` signed with the current secret.
    pub async fn post_signed(&self, webhook_id: &str, body: &[u8]) -> reqwest::Response {
        self.post(body, &signed_headers(&self.secret, webhook_id, body))
            .await
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.server.await;
        delete_topology(&amqp_url(), &self.topology, &[&self.tap_queue])
            .await
            .unwrap();
    }
}
