//! `Worker::build(config)` binds the health server and starts the broker link;
//! `run_until_stopped()` consumes until SIGTERM/SIGINT (or `stop_token()`), then drains.

use crate::service::apply::Applier;
mod feed;

use crate::service::changes::prune::Retention;
use crate::service::changes::relay::RelaySettings;
use crate::service::config::{BrokerArgs, RunArgs, ScalekitArgs};
use crate::service::db::{self, Pool};
use crate::service::delivery::{ConsumeSettings, Handler, lanes};
use crate::service::health::{self, Health, HealthState};
use crate::service::metrics::Metrics;
use crate::service::role_mapping::{MappingError, RoleMapping};
use crate::service::sync::schedule::{self, SyncRequest};
use crate::service::sync::{ScalekitClient, Syncer};
use feed::ChangesApi;
use shared::amqp::{BrokerLink, connection_name};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A syncer over the given link and pool (for `worker run` and `worker sync`).
pub fn syncer(
    scalekit: &ScalekitArgs,
    broker: &BrokerArgs,
    link: BrokerLink,
    pool: Pool,
    stop: CancellationToken,
) -> Result<Syncer, StartError> {
    Ok(Syncer {
        client: ScalekitClient::new(scalekit.client_config()?)?,
        link,
        topology: broker.topology(),
        pool,
        confirm_timeout: scalekit.sync_confirm_timeout,
        max_pages: usize::try_from(scalekit.sync_max_pages).unwrap_or(usize::MAX),
        stop,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("ROLE_MAPPING_FILE")]
    Mapping(#[from] MappingError),
    #[error("broker TLS")]
    BrokerTls(#[from] shared::amqp::tls::TlsFilesError),
    #[error("DATABASE_URL TLS settings")]
    DatabaseTls(#[from] db::tls::PgTlsError),
    #[error("migrations")]
    Migrate(#[from] db::migrate::MigrateError),
    #[error(transparent)]
    Credentials(#[from] crate::service::config::MissingCredentials),
    #[error("Directory API client")]
    Client(#[from] crate::service::sync::ClientError),
    #[error("CHANGES_API_TOKENS: required when CHANGES_API_LISTEN is set")]
    ApiTokens,
    #[error(transparent)]
    Endpoints(#[from] crate::service::changes::push::endpoints::EndpointsError),
    #[error("change delivery")]
    PushClient(#[from] crate::service::changes::push::send::ClientError),
}

impl StartError {
    /// A value of the configuration that cannot be used (exit code 2), not a failure to run.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::Mapping(_)
                | Self::BrokerTls(_)
                | Self::DatabaseTls(_)
                | Self::Credentials(_)
                | Self::Client(_)
                | Self::ApiTokens
                | Self::Endpoints(_)
                | Self::PushClient(_)
        )
    }
}

/// How long a stopping worker waits, after its lanes and relay, for a running sync to stop at
/// its next page (it was told when the stop began).
const SYNC_SHUTDOWN: Duration = Duration::from_secs(5);

/// How long a stopping worker's relay may take to publish the last commits.
const RELAY_SHUTDOWN: Duration = Duration::from_secs(4);

pub struct Worker {
    config: RunArgs,
    addr: SocketAddr,
    server: actix_web::dev::Server,
    link: BrokerLink,
    publish_link: BrokerLink,
    pool: Pool,
    handler: Arc<Handler>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    scheduler: Option<(Arc<Syncer>, mpsc::Receiver<SyncRequest>)>,
    changes_api: Option<ChangesApi>,
    push: crate::service::changes::push::PushSettings,
}

impl Worker {
    /// Loads the role mapping, binds `WORKER_LISTEN` and starts the broker link. The database
    /// pool connects lazily. Must be called inside a tokio runtime.
    pub fn build(config: RunArgs) -> Result<Self, StartError> {
        // Unreadable TLS settings are a start-up error, not a reconnect loop (the files are
        // the command line's, `crate::commands::run`).
        shared::amqp::tls::config()?;
        let (_, pg_tls) = db::tls::split(config.database.database_url())?;
        db::tls::client_config(&pg_tls)?;
        let mapping = match &config.apply.role_mapping_file {
            Some(path) => RoleMapping::load(path)?,
            None => RoleMapping::default(),
        };
        // Push endpoints are checked whole (and their clients built) before anything connects.
        let push = feed::push_settings(&config)?;
        let listener = TcpListener::bind(config.listen).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let topology = config.changes.topology(&config.broker);
        // Two connections: a broker memory or disk alarm blocks connections that publish, and a
        // blocked connection reads nothing more, acks included. Consuming (and acking) has one
        // of its own, so applied events keep being settled while forwards and the change relay
        // wait on the other.
        let link = BrokerLink::start(
            config.broker.amqp_url().to_owned(),
            connection_name("worker"),
            Some(topology.clone()),
            1,
        );
        let publish_link = BrokerLink::start(
            config.broker.amqp_url().to_owned(),
            connection_name("worker-publish"),
            Some(topology.clone()),
            2,
        );
        let pool = config.database.pool(config.database_pool_size);
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        let stop = CancellationToken::new();
        let (sync_trigger, scheduler) = match syncer(
            &config.scalekit,
            &config.broker,
            publish_link.clone(),
            pool.clone(),
            stop.clone(),
        ) {
            Ok(s) => {
                let (tx, rx) = mpsc::channel(schedule::TRIGGER_CAPACITY);
                (Some(tx), Some((Arc::new(s), rx)))
            }
            Err(StartError::Credentials(missing)) => {
                if config.sync_interval.is_some() {
                    tracing::warn!(%missing, "SYNC_INTERVAL is set but the Directory API is not configured: no syncs");
                }
                (None, None)
            }
            Err(other) => return Err(other),
        };
        let handler = Arc::new(Handler {
            applier: Applier::new(pool.clone(), Arc::new(mapping), config.apply.hard_delete)
                .with_brake(config.apply.brake())
                .counting_changes(metrics.changes_written.clone()),
            link: publish_link.clone(),
            topology,
            metrics: Arc::clone(&metrics),
            transient_streak: AtomicU32::new(0),
            sync_trigger,
        });
        let changes_api = feed::changes_api(&config)?;
        let server = health::server(
            listener,
            HealthState {
                health: Arc::clone(&health),
                links: [link.clone(), publish_link.clone()],
                pool: pool.clone(),
                metrics: Arc::clone(&metrics),
            },
        )
        .map_err(|source| StartError::Bind { addr, source })?;
        tracing::info!(
            %addr,
            amqp = %shared::redact_url(config.broker.amqp_url()),
            database = %shared::redact_url(config.database.database_url()),
            prefix = %config.broker.amqp_prefix,
            "worker starting"
        );
        Ok(Self {
            config,
            addr,
            server,
            link,
            publish_link,
            pool,
            handler,
            health,
            metrics,
            stop,
            scheduler,
            changes_api,
            push,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The pull API's address, when `CHANGES_API_LISTEN` is set.
    pub fn changes_api_addr(&self) -> Option<SocketAddr> {
        self.changes_api.as_ref().map(|a| a.addr)
    }

    /// The consuming connection's link.
    pub fn link(&self) -> &BrokerLink {
        &self.link
    }

    /// The publishing connection's link (forwards, the change relay, syncs).
    pub fn publish_link(&self) -> &BrokerLink {
        &self.publish_link
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Cancelling it stops the worker as SIGTERM does.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Consumes until stopped, then drains in-flight work, stops the health server and closes
    /// the broker connection. Unacked messages go back to the queue.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let server_handle = self.server.handle();
        let server = tokio::spawn(self.server);
        let signals = tokio::spawn(stop_on_signal(self.stop.clone()));
        let depth = tokio::spawn(crate::service::depth::run(
            self.link.clone(),
            self.config.broker.topology(),
            Arc::clone(&self.metrics),
            self.stop.clone(),
        ));
        let brake = tokio::spawn(crate::service::brake::gauges::run(
            self.pool.clone(),
            Arc::clone(&self.metrics),
            self.stop.clone(),
        ));
        let relay_stop = CancellationToken::new();
        let relay = tokio::spawn(crate::service::changes::relay::run(
            RelaySettings {
                database_url: self.config.database.database_url().to_owned(),
                timeouts: self.config.database.timeouts(),
                batch: i64::from(self.config.changes_relay.changes_relay_batch),
                poll: self.config.changes_relay.changes_poll_interval,
                confirm_timeout: self.config.changes_relay.changes_relay_confirm_timeout,
                retention: Retention {
                    changes: self.config.changes.changes_retention,
                    processed_events: self.config.changes.processed_events_retention,
                },
            },
            self.publish_link.clone(),
            self.handler.topology.clone(),
            Arc::clone(&self.metrics),
            relay_stop.clone(),
        ));
        let push_stop = CancellationToken::new();
        let push = crate::service::changes::push::spawn(
            self.push,
            Arc::clone(&self.metrics),
            push_stop.clone(),
        );
        let api_stop = CancellationToken::new();
        let api = self.changes_api.map(|api| {
            let handle = api.server.handle();
            let wake = Arc::clone(&api.wake);
            let (url, timeouts, stop) = (
                self.config.database.database_url().to_owned(),
                self.config.database.timeouts(),
                api_stop.clone(),
            );
            let listener = tokio::spawn(async move { wake.run(&url, timeouts, stop).await });
            (handle, tokio::spawn(api.server), listener)
        });
        let scheduler = self.scheduler.map(|(syncer, rx)| {
            tokio::spawn(schedule::run(
                syncer,
                Arc::clone(&self.metrics),
                self.config.sync_interval,
                rx,
                self.stop.clone(),
            ))
        });
        lanes::run(
            self.handler,
            self.link.clone(),
            self.health,
            ConsumeSettings {
                prefetch: self.config.consume.prefetch,
                concurrency: self.config.consume.concurrency,
                batch_size: self.config.consume.batch_size,
                max_inflight_bytes: self.config.consume.max_inflight_bytes,
                max_message_bytes: self.config.consume.max_message_bytes,
                shutdown_timeout: self.config.shutdown_timeout(),
            },
            self.stop,
        )
        .await;
        signals.abort();
        depth.abort();
        brake.abort();
        // The relay publishes what the lanes committed last, within a bound: anything left is
        // durable in the outbox and goes out with the next leader.
        relay_stop.cancel();
        if tokio::time::timeout(RELAY_SHUTDOWN, relay).await.is_err() {
            tracing::warn!(
                "the change relay did not finish in time; the next leader publishes the rest"
            );
        }
        // Deliveries in flight are abandoned: their positions did not move, the next leader
        // sends them again.
        push_stop.cancel();
        if tokio::time::timeout(RELAY_SHUTDOWN, push).await.is_err() {
            tracing::warn!("change delivery did not stop in time; the next leader goes on");
        }
        // A running sync stops at its next page (the stop token is its own); one that does not
        // within the bound is dropped, deactivating nobody.
        if let Some(s) = scheduler
            && tokio::time::timeout(SYNC_SHUTDOWN, s).await.is_err()
        {
            tracing::warn!("a sync did not stop in time; abandoned, nothing deactivated");
        }
        if let Some((handle, server, listener)) = api {
            api_stop.cancel();
            handle.stop(true).await;
            let _ = server.await;
            let _ = listener.await;
        }
        server_handle.stop(true).await;
        let _ = server.await;
        self.link.close().await;
        self.publish_link.close().await;
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Cancels `stop` on SIGTERM or SIGINT.
pub(crate) async fn stop_on_signal(stop: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    stop.cancel();
}
