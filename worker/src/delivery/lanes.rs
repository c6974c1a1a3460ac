//! The consume loop: `concurrency` lanes, each with its own channel and consumer (its share of
//! the prefetch), taking a batch of deliveries at a time and settling it before the next. Because
//! a lane's earlier deliveries are all settled when it finishes a batch, it acknowledges a whole
//! applied batch with one `multiple` ack. Lanes re-subscribe after broker loss with a pause; on
//! shutdown each lane cancels its consumer after the batch in hand (bounded by the timeout).

use super::handle::Handler;
use crate::health::{Health, TICK};
use futures_util::{FutureExt, StreamExt};
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use shared::amqp::BrokerLink;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long to wait for more deliveries to fill a batch.
const BATCH_WAIT: Duration = Duration::from_millis(2);

#[derive(Debug, Clone)]
pub struct ConsumeSettings {
    /// Unacknowledged deliveries for the whole worker, shared out between the lanes.
    pub prefetch: u16,
    /// Lanes: batches (transactions) in progress at once.
    pub concurrency: usize,
    /// Deliveries applied together in one transaction (at most).
    pub batch_size: usize,
    pub shutdown_timeout: Duration,
}

impl ConsumeSettings {
    fn lanes(&self) -> usize {
        self.concurrency.max(1)
    }

    /// Each lane's prefetch: its share of the total, and never less than one batch.
    pub fn lane_prefetch(&self) -> u16 {
        let share = usize::from(self.prefetch) / self.lanes();
        u16::try_from(share.max(self.batch_size.max(1))).unwrap_or(u16::MAX)
    }
}

/// Runs until `stop` is cancelled, then lets the lanes finish the batches in hand (bounded by
/// the timeout; what is left unacked goes back to the queue when the channels close).
pub async fn run(
    handler: Arc<Handler>,
    link: BrokerLink,
    health: Arc<Health>,
    settings: ConsumeSettings,
    stop: CancellationToken,
) {
    let tag = format!(
        "{}-{:08x}",
        shared::amqp::connection_name("worker"),
        rand_tag()
    );
    health.tick();
    let mut lanes = JoinSet::new();
    for lane in 0..settings.lanes() {
        lanes.spawn(run_lane(Lane {
            tag: format!("{tag}-{lane}"),
            handler: Arc::clone(&handler),
            link: link.clone(),
            health: Arc::clone(&health),
            settings: settings.clone(),
            stop: stop.clone(),
        }));
    }
    stop.cancelled().await;
    tracing::info!("stopping: lanes finish the batches in hand");
    let drained = tokio::time::timeout(settings.shutdown_timeout, async {
        while lanes.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("in-flight events did not finish in time; the broker will redeliver them");
        lanes.abort_all();
    }
}

struct Lane {
    tag: String,
    handler: Arc<Handler>,
    link: BrokerLink,
    health: Arc<Health>,
    settings: ConsumeSettings,
    stop: CancellationToken,
}

impl Lane {
    async fn subscribe(&self) -> Result<(Channel, Consumer), String> {
        let queue = self.handler.topology.apply_queue();
        let channel = self.link.open_channel().await.map_err(|e| e.to_string())?;
        channel
            .basic_qos(self.settings.lane_prefetch(), BasicQosOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                self.tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok((channel, consumer))
    }

    /// Takes what is already buffered (up to the batch size), waiting at most `BATCH_WAIT` for
    /// more; `false` in the flag when the consumer failed on the way.
    async fn fill(
        &self,
        first: lapin::message::Delivery,
        consumer: &mut Consumer,
    ) -> (Vec<lapin::message::Delivery>, bool) {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        while batch.len() < self.settings.batch_size.max(1) {
            // What is buffered already is taken without arming a timer.
            let next = match consumer.next().now_or_never() {
                Some(next) => Ok(next),
                None => tokio::time::timeout_at(deadline, consumer.next()).await,
            };
            match next {
                Ok(Some(Ok(d))) => batch.push(d),
                Ok(Some(Err(_))) | Ok(None) => return (batch, false),
                Err(_) => break,
            }
        }
        (batch, true)
    }

    /// Settles the batch. Liveness counts the batch as in hand until it is settled (no ticks
    /// meanwhile), so one that never finishes makes the worker not alive.
    async fn settle(&self, batch: Vec<lapin::message::Delivery>) {
        self.health.batch_started(&self.tag);
        self.handler.handle_batch(batch).await;
        self.health.batch_finished(&self.tag);
    }
}

async fn run_lane(lane: Lane) {
    'outer: while !lane.stop.is_cancelled() {
        // Wait for the link (ticking so liveness stays true while the broker is away).
        while !lane.link.is_ready() {
            lane.health.tick();
            tokio::select! {
                _ = lane.stop.cancelled() => break 'outer,
                _ = lane.link.wait_ready(TICK) => {}
            }
        }
        let (channel, mut consumer) = match lane.subscribe().await {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, lane = %lane.tag, "cannot subscribe; retrying");
                lane.link.report_failure();
                tokio::select! {
                    _ = lane.stop.cancelled() => break 'outer,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        };
        lane.health.lane_up();
        tracing::info!(
            queue = %lane.handler.topology.apply_queue(),
            lane = %lane.tag,
            prefetch = lane.settings.lane_prefetch(),
            "consuming"
        );
        let mut ticker = tokio::time::interval(TICK);
        let stopping = loop {
            tokio::select! {
                _ = lane.stop.cancelled() => break true,
                _ = ticker.tick() => lane.health.tick(),
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        let (batch, healthy) = lane.fill(delivery, &mut consumer).await;
                        lane.settle(batch).await;
                        if !healthy {
                            tracing::warn!(lane = %lane.tag, "consumer failed; re-subscribing");
                            break false;
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, lane = %lane.tag, "consumer failed; re-subscribing");
                        break false;
                    }
                    None => {
                        tracing::warn!(lane = %lane.tag, "consumer stream ended; re-subscribing");
                        break false;
                    }
                }
            }
        };
        lane.health.lane_down();
        if stopping {
            let _ = channel
                .basic_cancel(lane.tag.as_str().into(), BasicCancelOptions::default())
                .await;
            let _ = channel.close(200, "worker stopping".into()).await;
            break;
        }
        lane.link.report_failure();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn rand_tag() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ std::process::id())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(prefetch: u16, concurrency: usize, batch_size: usize) -> ConsumeSettings {
        ConsumeSettings {
            prefetch,
            concurrency,
            batch_size,
            shutdown_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn prefetch_is_shared_between_lanes_but_holds_a_batch() {
        assert_eq!(settings(1000, 4, 200).lane_prefetch(), 250);
        assert_eq!(settings(100, 4, 200).lane_prefetch(), 200);
        assert_eq!(settings(10, 0, 1).lane_prefetch(), 10);
        assert_eq!(settings(u16::MAX, 1, 100_000).lane_prefetch(), u16::MAX);
    }
}
