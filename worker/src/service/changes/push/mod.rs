//! Push delivery ("signed HTTP delivery"): every change, as the JSON of `docs/changes.md`,
//! POSTed to each configured endpoint (`endpoints`) in batches of one organization
//! (`{"changes":[…]}`), signed per Standard Webhooks (`send`). Per endpoint and organization
//! strictly in `seq` order, one request in flight per organization, organizations concurrently
//! up to `CHANGES_WEBHOOK_CONCURRENCY` (`plan`). A batch is retried until a 2xx, never skipped;
//! an endpoint failing for longer than `CHANGES_WEBHOOK_PAUSE_AFTER` is paused and says so.
//!
//! Exactly one worker per deployment delivers: the one holding a session-level advisory lock,
//! as for the relay. Positions (per endpoint and organization, `store`) move only after a 2xx,
//! so a new leader resumes where the last one's acknowledged deliveries ended; a batch in
//! flight when a leader died is delivered again (applications skip `seq` they have).

pub mod endpoints;
mod live;
pub mod plan;
pub mod send;
mod senders;
pub mod store;
mod term;

use crate::service::metrics::Metrics;
use endpoints::Endpoint;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The session lock of the delivery leader ("scim-psh").
pub const LEADER_LOCK: i64 = 0x7363_696d_2d70_7368;

#[derive(Debug, Clone)]
pub struct PushSettings {
    pub database_url: String,
    pub timeouts: crate::service::db::Timeouts,
    pub endpoints: Vec<Endpoint>,
    /// Changes per request.
    pub batch: usize,
    /// One attempt's bound.
    pub timeout: Duration,
    /// An endpoint failing this long is paused.
    pub pause_after: Duration,
    /// Organizations in flight per endpoint.
    pub concurrency: usize,
    /// Fallback poll (commits wake the leader).
    pub poll: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("database")]
    Database(#[from] diesel::result::Error),
    #[error(transparent)]
    Leader(#[from] crate::service::changes::leader::LeaderDbError),
    #[error("a delivery round took longer than {0:?}")]
    RoundTimeout(Duration),
    #[error(transparent)]
    Corrupt(#[from] crate::service::changes::body::Corrupt),
    #[error(transparent)]
    Client(#[from] send::ClientError),
    #[error("a delivery task failed: {0}")]
    Task(String),
}

/// Runs [`run`] on a thread of its own, in a single-threaded runtime: an organization's next
/// request then never waits behind the apply lanes for a turn on the worker's runtime. The
/// receiver completes when it has stopped.
pub fn spawn(
    settings: PushSettings,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done, stopped) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("change-push".to_owned())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(run(settings, metrics, stop)),
                Err(error) => {
                    tracing::error!(error = %shared::Chain(&error), "change delivery could not start its runtime")
                }
            }
            let _ = done.send(());
        });
    if let Err(error) = thread {
        tracing::error!(error = %shared::Chain(&error), "change delivery could not start its thread");
    }
    stopped
}

/// Runs until `stop`: tries to lead; while leading, delivers. Without endpoints it only
/// retires the rows of endpoints no longer configured (so retention stops waiting for them).
pub async fn run(settings: PushSettings, metrics: Arc<Metrics>, stop: CancellationToken) {
    if settings.endpoints.is_empty() {
        if let Err(error) = term::retire_all(&settings).await {
            tracing::warn!(error = %shared::Chain(&error), "could not retire unconfigured change endpoints");
        }
        return;
    }
    let mut follower = None;
    while !stop.is_cancelled() {
        let outcome = term::lead(&settings, &metrics, &stop, &mut follower).await;
        metrics.push_leader.set(0);
        let pause = match outcome {
            Ok(term::Term::Follower) => {
                crate::service::changes::relay::follower_period(settings.poll, rand::random())
            }
            Ok(term::Term::Stopped) => break,
            Err(error) => {
                tracing::warn!(error = %shared::cli::one_line(&error), "change delivery stopped; retrying");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    metrics.push_leader.set(0);
}
