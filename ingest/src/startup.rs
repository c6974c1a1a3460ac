//! `Application::build(config)` binds the listener and starts the broker link;
//! `run_until_stopped()` serves until SIGTERM/SIGINT (or `stop()`), drains, and closes the link.

use crate::coalesce::Coalescer;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::{health, webhook};
use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use secrecy::ExposeSecret;
use shared::amqp::{BrokerLink, connection_name};
use shared::contract::routes;
use shared::{Topology, Verifier};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

/// The route the webhook is served on.
pub const WEBHOOK_PATH: &str = "/webhooks/scalekit";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("broker TLS")]
    BrokerTls(#[from] shared::amqp::tls::TlsFilesError),
}

impl StartError {
    /// A value of the configuration that cannot be used (exit code 2), not a failure to start.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config(_) | Self::BrokerTls(_))
    }
}

pub struct Application {
    server: Server,
    addr: SocketAddr,
    link: BrokerLink,
    metrics: Arc<Metrics>,
}

impl Application {
    /// Binds and starts the broker link (which connects in the background: `/readyz` tells when).
    /// Must be called inside a tokio runtime.
    pub fn build(config: Config) -> Result<Self, StartError> {
        let secrets = config.webhook_secrets()?;
        // Unreadable TLS files are a start-up error, not a reconnect loop.
        shared::amqp::tls::use_files(config.broker_tls.files())?;
        let listener = TcpListener::bind(config.listen).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        // Ingest only publishes: the worker (and `worker migrate --topology`) declares the
        // topology, so ingest's broker user needs no configure or read permission. Until the
        // exchanges exist, publishes fail and webhooks get 503 (Scalekit retries).
        let topology = Topology::new(config.amqp_prefix.clone()).with_tiers(Vec::new());
        let link = BrokerLink::start(
            config.amqp_url.expose_secret().to_owned(),
            connection_name("ingest"),
            None,
            config.publish_channels,
        );
        let metrics = Arc::new(Metrics::new());
        let link_for_workers = link.clone();
        let state = web::Data::new(AppState {
            verifier: Verifier::new(secrets.clone()).with_tolerance(config.tolerance_seconds()),
            link: link.clone(),
            events_exchange: topology.exchange(),
            urgent_exchange: topology.urgent_exchange(),
            bulk_exchange: topology.bulk_exchange(),
            fair: crate::fair::FairShare::new(config.fair_rate, config.fair_burst),
            dead_exchange: topology.dead_exchange(),
            metrics: Arc::clone(&metrics),
            confirm_timeout: config.confirm_timeout(),
            retry_after_seconds: config.retry_after_seconds(),
            max_body_bytes: config.max_body_bytes,
            body_timeout: config.body_timeout(),
        });
        tracing::info!(
            %addr,
            amqp = %config.amqp_url_redacted(),
            prefix = %config.amqp_prefix,
            secrets = secrets.len(),
            "ingest starting"
        );
        let coalesce = config.coalesce_settings();
        let mut server = HttpServer::new(move || {
            // One coalescer per HTTP worker thread, on that thread's runtime.
            let publisher = web::Data::new(Coalescer::start(link_for_workers.clone(), coalesce));
            App::new()
                .app_data(state.clone())
                .app_data(publisher)
                .route(WEBHOOK_PATH, web::post().to(webhook::receive))
                .route(routes::HEALTHZ, web::get().to(health::healthz))
                .route(routes::READYZ, web::get().to(health::readyz))
                .route(routes::METRICS, web::get().to(health::metrics))
        })
        .shutdown_timeout(config.shutdown_timeout_seconds());
        if config.http_workers > 0 {
            server = server.workers(config.http_workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartError::Bind { addr, source })?
            .run();
        Ok(Self {
            server,
            addr,
            link,
            metrics,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A handle to stop the server gracefully (what SIGTERM does).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn link(&self) -> &BrokerLink {
        &self.link
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Waits for the broker link, up to `timeout` (tests; production relies on `/readyz`).
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        self.link.wait_ready(timeout).await
    }

    /// Serves until stopped; in-flight requests finish (their confirms awaited), then the broker
    /// connection is closed.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        tracing::info!("http server stopped; closing broker link");
        self.link.close().await;
        result
    }
}
