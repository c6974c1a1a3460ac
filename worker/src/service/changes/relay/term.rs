//! One term of the relay's leader: hold the lock, then round after round (select the next
//! unpublished rows, start their publishes, hand them to the marker) between waits for a
//! commit, on the lock's own connection.

use super::floor::{self, Cursor, Proven};
use super::marker::Marker;
use super::{
    LEADER_LOCK, RelayError, RelaySettings, SAMPLE_EVERY, Term, bounded, broker_step, connect,
    max_seq, prune, round, sample,
};
use crate::service::apply::outbox::NOTIFY_CHANNEL;
use crate::service::metrics::Metrics;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::{FutureExt, StreamExt};
use lapin::Channel;
use lapin::options::ConfirmSelectOptions;
use shared::Topology;
use shared::amqp::{BrokerLink, PublishError};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// One term: try the leader lock (on the follower's kept connection when there is one), relay
/// while it is held. A follower's connection goes back into `follower`.
///
/// The loop is thin: gauges, rounds while the broker takes them ([`Leading::round`]), pruning,
/// then wait for a commit, the poll, a failed marker or the stop.
pub(super) async fn lead(
    settings: &RelaySettings,
    link: &BrokerLink,
    topology: &Topology,
    metrics: Arc<Metrics>,
    stop: &CancellationToken,
    follower: &mut Option<AsyncPgConnection>,
) -> Result<Term, RelayError> {
    let mut conn = match follower.take() {
        Some(conn) => conn,
        None => connect(settings).await?,
    };
    if !crate::service::changes::leader::try_lock(&mut conn, LEADER_LOCK).await? {
        *follower = Some(conn);
        return Ok(Term::Follower);
    }
    let marker = Marker::start(connect(settings).await?, settings, metrics.clone());
    diesel::sql_query(format!("LISTEN {NOTIFY_CHANNEL}"))
        .execute(&mut conn)
        .await?;
    metrics.relay_leader.set(1);
    tracing::info!("leading the change relay");
    // A term starts at the stored floor.
    let stored = bounded(async { Ok(floor::load(&mut conn).await?) }).await?;
    marker.raise_floor(stored);
    let mut leading = Leading {
        settings,
        link,
        exchange: topology.changes_exchange(),
        metrics,
        conn,
        marker,
        channel: None,
        cursor: Cursor::new(stored),
        last_prune: None,
        last_sample: None,
    };
    let mut stopping = false;
    loop {
        // The gauges first, whatever the broker does: a broker that stops answering must
        // show as a growing lag (the lagging alert), not freeze it.
        leading.sample_if_due().await?;
        // Round after round while rows keep coming; each round's confirms are settled by the
        // marker while the next is selected and sent. A blocked connection (memory or disk
        // alarm) is not published on: it would not be read until the alarm clears.
        while leading.can_publish() {
            if leading.round().await? != Round::Full {
                break;
            }
        }
        leading.prune_if_due().await?;
        if stopping {
            // The last round ran after the consumers finished: nothing they committed waits.
            leading.finish().await?;
            return Ok(Term::Stopped);
        }
        let woke = {
            let mut notifications = std::pin::pin!(leading.conn.notifications_stream());
            let woke = tokio::select! {
                _ = stop.cancelled() => None,
                _ = tokio::time::sleep(settings.poll) => Some(()),
                _ = notifications.next() => Some(()),
                () = leading.marker.failed() => Some(()),
            };
            // Several commits may have notified meanwhile: one round takes them all.
            while let Some(Some(_)) = notifications.next().now_or_never() {}
            woke
        };
        if leading.marker.is_failed() {
            leading.marker.drain().await?;
            return Ok(Term::Ended);
        }
        stopping = woke.is_none();
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// It took as many rows as it may: more are probably waiting.
    Full,
    /// It took what there was.
    Partial,
    /// Nothing was waiting.
    Idle,
}

/// A term while it leads: the lock's connection, the marker (the second half), the broker
/// channel and where the rounds start.
struct Leading<'a> {
    settings: &'a RelaySettings,
    link: &'a BrokerLink,
    exchange: String,
    metrics: Arc<Metrics>,
    conn: AsyncPgConnection,
    marker: Marker,
    channel: Option<Channel>,
    cursor: Cursor,
    last_prune: Option<Instant>,
    last_sample: Option<Instant>,
}

impl Leading<'_> {
    fn can_publish(&self) -> bool {
        self.link.is_ready() && !self.link.is_blocked()
    }

    /// One round: the next unpublished rows selected and their publishes started
    /// ([`round::start`]), handed to the marker; the floor raised by what the round proves
    /// ([`Cursor`]).
    async fn round(&mut self) -> Result<Round, RelayError> {
        let channel = self.channel().await?;
        let started = bounded(round::start(
            &mut self.conn,
            &channel,
            &self.exchange,
            self.settings.batch,
            self.cursor.after(),
        ))
        .await?;
        let Some(started) = started else {
            let proven = self.cursor.found_nothing();
            self.raise(proven).await?;
            return Ok(Round::Idle);
        };
        let proven = self.cursor.took(started.first_seq, started.last_seq);
        self.raise(proven).await?;
        let full = started.full;
        self.marker.hand(started).await?;
        Ok(if full { Round::Full } else { Round::Partial })
    }

    async fn raise(&mut self, proven: Proven) -> Result<(), RelayError> {
        match proven {
            Proven::Nothing => {}
            Proven::Through(seq) => self.marker.raise_floor(seq),
            Proven::All => self.marker.raise_floor(max_seq(&mut self.conn).await?),
        }
        Ok(())
    }

    /// The confirm-mode channel, opened again when the last one closed.
    async fn channel(&mut self) -> Result<Channel, RelayError> {
        if let Some(ch) = &self.channel
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        let link = self.link;
        let ch = broker_step(async {
            let ch = link.open_channel().await.map_err(PublishError::from)?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            Ok(ch)
        })
        .await?;
        self.channel = Some(ch.clone());
        Ok(ch)
    }

    async fn sample_if_due(&mut self) -> Result<(), RelayError> {
        if self.last_sample.is_none_or(|t| t.elapsed() >= SAMPLE_EVERY) {
            bounded(sample(&mut self.conn, &self.metrics, self.marker.floor())).await?;
            self.last_sample = Some(Instant::now());
        }
        Ok(())
    }

    async fn prune_if_due(&mut self) -> Result<(), RelayError> {
        if self.last_prune.is_none_or(|t| t.elapsed() >= prune::EVERY) {
            let retention = &self.settings.retention;
            bounded(async { Ok(prune::run(&mut self.conn, retention).await?) }).await?;
            self.last_prune = Some(Instant::now());
        }
        Ok(())
    }

    /// Waits for the marker to settle every round, then sets the gauges from the final floor.
    async fn finish(self) -> Result<(), RelayError> {
        let Leading {
            mut conn,
            marker,
            metrics,
            ..
        } = self;
        let floor = marker.drain().await?;
        bounded(sample(&mut conn, &metrics, floor)).await
    }
}
