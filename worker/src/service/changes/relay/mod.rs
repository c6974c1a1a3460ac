//! The relay: publishes unpublished outbox rows to `{prefix}.changes`, in `seq` order, and only
//! then marks them published. Exactly one relay leads per deployment (per database): the one
//! holding a session-level advisory lock on its own connection. When the leader dies its
//! connection closes, the lock is released, and another replica takes over at its next try
//! (every second or so, on the one connection it keeps while it follows).
//!
//! It wakes on `NOTIFY scim_changes` (sent by every transaction that wrote changes, delivered
//! at commit) and polls as a fallback. Publishing is at-least-once: a crash between the
//! broker's confirm and the `published_at` update publishes the same rows again, with the same
//! `id` and `seq`, so consumers skip what they have already applied.
//!
//! A round (`round`) selects the next rows and starts their publishes; the marker (`marker`,
//! on a second connection) settles each round's confirms and marks it published, while the
//! next round is already selected and on the wire.

mod floor;
mod marker;
mod round;
mod term;

pub use floor::{BACKLOG_SQL, Backlog, backlog};

use super::prune::{self, Retention};
use crate::service::metrics::Metrics;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::Topology;
use shared::amqp::{BrokerLink, PublishError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a stopping relay may take for its last round.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A relay round that takes longer than this (a database or broker that stopped answering)
/// ends the term; the next term starts on a fresh connection.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);

/// A broker step of the relay (opening its channel, confirm mode) that takes longer than this
/// ends the term: a broker that stopped reading the connection must not hold the leader.
const BROKER_STEP_TIMEOUT: Duration = Duration::from_secs(5);

async fn broker_step<T>(
    step: impl Future<Output = Result<T, RelayError>>,
) -> Result<T, RelayError> {
    tokio::time::timeout(BROKER_STEP_TIMEOUT, step)
        .await
        .map_err(|_| RelayError::BrokerStepTimeout(BROKER_STEP_TIMEOUT))?
}

async fn bounded<T>(round: impl Future<Output = Result<T, RelayError>>) -> Result<T, RelayError> {
    tokio::time::timeout(ROUND_TIMEOUT, round)
        .await
        .map_err(|_| RelayError::RoundTimeout(ROUND_TIMEOUT))?
}

/// How often the leader samples the lag and depth gauges (not on every wake: each wake is a
/// commit somewhere).
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The session lock of the leading relay ("scim-rly").
pub const LEADER_LOCK: i64 = 0x7363_696d_2d72_6c79;

#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub database_url: String,
    /// Session bounds of the relay's connection.
    pub timeouts: crate::service::db::Timeouts,
    /// Rows published per round.
    pub batch: i64,
    /// Fallback poll; a follower tries to become the leader every [`follower_period`].
    pub poll: Duration,
    pub confirm_timeout: Duration,
    pub retention: Retention,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database")]
    Database(#[from] diesel::result::Error),
    #[error(transparent)]
    Leader(#[from] super::leader::LeaderDbError),
    #[error("the broker did not open the relay's channel within {0:?}")]
    BrokerStepTimeout(Duration),
    #[error("a relay round took longer than {0:?}")]
    RoundTimeout(Duration),
    #[error("publishing")]
    Publish(#[from] PublishError),
    #[error("broker")]
    Broker(#[from] lapin::Error),
    #[error("outbox row {seq} is not a change: {reason}")]
    Corrupt { seq: i64, reason: String },
    #[error("the relay's marker stopped: {0}")]
    MarkerStopped(String),
}

/// Runs until `stop`: tries to lead; while leading, relays and prunes. Cancel `stop` after the
/// consumers have finished: the leader then publishes what they committed and returns.
///
/// A follower keeps one connection between its tries for the leader lock (thirty idle
/// replicas would otherwise open sixty connections a second), and tries every
/// [`follower_period`]: about a second, jittered so followers do not try in step.
pub async fn run(
    settings: RelaySettings,
    link: BrokerLink,
    topology: Topology,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut follower: Option<AsyncPgConnection> = None;
    while !stop.is_cancelled() {
        // Once stopped, a term gets `STOP_GRACE` for its last round; a term stuck on an
        // unreachable database is dropped (which closes its connection and frees the lock).
        let term = term::lead(
            &settings,
            &link,
            &topology,
            metrics.clone(),
            &stop,
            &mut follower,
        );
        let outcome = tokio::select! {
            outcome = term => outcome,
            () = async {
                stop.cancelled().await;
                tokio::time::sleep(STOP_GRACE).await;
            } => Ok(Term::Stopped),
        };
        let pause = match outcome {
            Ok(Term::Follower) => follower_period(settings.poll, rand::random()),
            Ok(Term::Ended) => settings.poll.max(Duration::from_millis(200)),
            Ok(Term::Stopped) => break,
            Err(error) => {
                tracing::warn!(error = %shared::Chain(&error), "change relay stopped; retrying");
                settings.poll.max(Duration::from_millis(200))
            }
        };
        metrics.relay_leader.set(0);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    metrics.relay_leader.set(0);
}

/// How a term ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    /// Another replica leads: try again later, on the kept connection.
    Follower,
    /// Led, then lost the connection or the marker: try again soon.
    Ended,
    /// Stopped.
    Stopped,
}

/// How long a follower waits between tries for the leader lock: twice the poll, at least a
/// second, spread by `jitter` (0..1) over ±25 %.
pub fn follower_period(poll: Duration, jitter: f64) -> Duration {
    let base = (poll * 2).max(Duration::from_secs(1));
    base.mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A connection for the relay (`super::leader::connect`).
pub async fn connect(settings: &RelaySettings) -> Result<AsyncPgConnection, RelayError> {
    Ok(super::leader::connect(&settings.database_url, &settings.timeouts).await?)
}

/// The highest `seq` written (0 when none): a backward step on the primary key.
async fn max_seq(conn: &mut AsyncPgConnection) -> Result<i64, RelayError> {
    #[derive(QueryableByName)]
    struct Max {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        seq: i64,
    }
    let m: Max = diesel::sql_query("SELECT COALESCE(max(seq), 0) AS seq FROM changes")
        .get_result(conn)
        .await?;
    Ok(m.seq)
}

/// Sets the lag and depth gauges: the backlog above the leader's `floor`.
async fn sample(
    conn: &mut AsyncPgConnection,
    metrics: &Metrics,
    floor: i64,
) -> Result<(), RelayError> {
    let b = floor::backlog(conn, Some(floor)).await?;
    metrics.outbox_depth.set(b.changes);
    metrics.relay_lag_seconds.set(b.lag_seconds.max(0.0));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::follower_period;
    use std::time::Duration;

    #[test]
    fn followers_try_about_once_a_second_spread_over_a_band() {
        let poll = Duration::from_millis(500);
        assert_eq!(follower_period(poll, 0.0), Duration::from_millis(750));
        assert_eq!(follower_period(poll, 0.5), Duration::from_secs(1));
        assert_eq!(follower_period(poll, 1.0), Duration::from_millis(1250));
        // Out-of-range jitter is clamped; a long poll is doubled.
        assert_eq!(follower_period(poll, 7.0), Duration::from_millis(1250));
        assert_eq!(
            follower_period(Duration::from_secs(2), 0.5),
            Duration::from_secs(4)
        );
    }
}
