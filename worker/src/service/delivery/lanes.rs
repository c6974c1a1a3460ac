//! The consume loop: `concurrency` lanes on the apply queue, each with its own channel and
//! consumer (its share of the prefetch), as many on the bulk queue (an organization's events
//! past its fair share, sync snapshots), and one on the urgent queue (deprovisionings,
//! `shared::lane`): neither the urgent nor the apply queue ever waits behind the bulk queue's
//! backlog, and the bulk queue has the whole worker when nothing else comes. Each lane takes a
//! batch of deliveries at a time and settles it before the next. Because
//! a lane's earlier deliveries are all settled when it finishes a batch, it acknowledges a whole
//! applied batch with one `multiple` ack. Lanes re-subscribe after broker loss with a pause; on
//! shutdown each lane cancels its consumer after the batch in hand (bounded by the timeout).

use super::handle::Handler;
use crate::service::health::{Health, TICK};
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

/// What one delivery costs in memory beyond its body: lapin's delivery, its properties and the
/// header table (generous; the contract's headers are a few hundred bytes).
pub const DELIVERY_OVERHEAD_BYTES: u64 = 4096;

#[derive(Debug, Clone)]
pub struct ConsumeSettings {
    /// Unacknowledged deliveries for the whole worker, shared out between the lanes.
    pub prefetch: u16,
    /// Lanes: batches (transactions) in progress at once.
    pub concurrency: usize,
    /// Deliveries applied together in one transaction (at most).
    pub batch_size: usize,
    /// Bytes of unacknowledged deliveries the whole worker may hold: the prefetch is lowered
    /// until a full prefetch of the largest messages fits.
    pub max_inflight_bytes: u64,
    /// The largest message body the broker hands out (its `max_message_size`).
    pub max_message_bytes: u64,
    pub shutdown_timeout: Duration,
}

impl ConsumeSettings {
    fn lanes(&self) -> usize {
        self.concurrency.max(1)
    }

    /// Every lane that holds deliveries: the apply and bulk lanes and the urgent one. The byte
    /// budget is shared out between all of them.
    fn all_lanes(&self) -> usize {
        self.lanes() * 2 + 1
    }

    /// Each lane's prefetch: its share of the total (never less than one batch), lowered so
    /// that every lane's share of the largest messages fits the byte budget (never below one).
    /// RabbitMQ bounds unacknowledged deliveries by count only, so this is what bounds them in
    /// bytes: lanes × prefetch × (largest message + overhead) ≤ `max_inflight_bytes`.
    pub fn lane_prefetch(&self) -> u16 {
        let share = (usize::from(self.prefetch) / self.lanes()).max(self.batch_size.max(1));
        let per_delivery = self
            .max_message_bytes
            .saturating_add(DELIVERY_OVERHEAD_BYTES);
        let lanes = u64::try_from(self.all_lanes()).unwrap_or(u64::MAX);
        let fits = self.max_inflight_bytes / lanes / per_delivery.max(1);
        let lane = u64::try_from(share).unwrap_or(u64::MAX).min(fits).max(1);
        u16::try_from(lane).unwrap_or(u16::MAX)
    }

    /// Deliveries a lane applies together: the batch size, within the lane's prefetch.
    pub fn lane_batch(&self) -> usize {
        self.batch_size.clamp(1, usize::from(self.lane_prefetch()))
    }

    /// The most bytes of deliveries this worker can hold unacknowledged (every lane's prefetch
    /// of the largest messages).
    pub fn worst_case_bytes(&self) -> u64 {
        let lanes = u64::try_from(self.all_lanes()).unwrap_or(u64::MAX);
        lanes
            .saturating_mul(u64::from(self.lane_prefetch()))
            .saturating_mul(
                self.max_message_bytes
                    .saturating_add(DELIVERY_OVERHEAD_BYTES),
            )
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
    // Per lane: its tag and queue. `concurrency` on the apply queue and as many on the bulk
    // queue, then the urgent one: a lone deprovisioning is a batch of one (a lane takes what
    // is delivered, waiting at most 2 ms); many at once (an organization offboarding) go in
    // full batches.
    let topology = &handler.topology;
    let mut queues: Vec<(String, String)> = (0..settings.lanes())
        .flat_map(|lane| {
            [
                (format!("{tag}-{lane}"), topology.apply_queue()),
                (format!("{tag}-bulk-{lane}"), topology.bulk_queue()),
            ]
        })
        .collect();
    queues.push((format!("{tag}-urgent"), topology.urgent_queue()));
    let mut lanes = JoinSet::new();
    for (tag, queue) in queues {
        lanes.spawn(run_lane(Lane {
            tag,
            queue,
            prefetch: settings.lane_prefetch(),
            batch: settings.lane_batch(),
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
    queue: String,
    prefetch: u16,
    batch: usize,
    handler: Arc<Handler>,
    link: BrokerLink,
    health: Arc<Health>,
    settings: ConsumeSettings,
    stop: CancellationToken,
}

impl Lane {
    async fn subscribe(&self) -> Result<(Channel, Consumer), String> {
        let channel = self
            .link
            .open_channel()
            .await
            .map_err(|e| shared::Chain(&e).to_string())?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| shared::Chain(&e).to_string())?;
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                self.tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| shared::Chain(&e).to_string())?;
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
        let size = self.batch;
        while batch.len() < size {
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
            queue = %lane.queue,
            lane = %lane.tag,
            prefetch = lane.prefetch,
            batch = lane.batch,
            worst_case_bytes = lane.settings.worst_case_bytes(),
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
                        tracing::warn!(error = %shared::Chain(&error), lane = %lane.tag, "consumer failed; re-subscribing");
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

    const MIB: u64 = 1024 * 1024;

    fn settings(prefetch: u16, concurrency: usize, batch_size: usize) -> ConsumeSettings {
        ConsumeSettings {
            prefetch,
            concurrency,
            batch_size,
            max_inflight_bytes: u64::MAX,
            max_message_bytes: MIB,
            shutdown_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn prefetch_is_shared_between_a_queues_lanes_but_holds_a_batch() {
        assert_eq!(settings(1000, 4, 200).lane_prefetch(), 250);
        assert_eq!(settings(100, 4, 200).lane_prefetch(), 200);
        assert_eq!(settings(10, 0, 1).lane_prefetch(), 10);
        assert_eq!(settings(u16::MAX, 1, 100_000).lane_prefetch(), u16::MAX);
        assert_eq!(settings(1000, 4, 200).lane_batch(), 200);
    }

    #[test]
    fn the_byte_budget_lowers_prefetch_and_batch_so_the_largest_messages_fit() {
        let budget = ConsumeSettings {
            max_inflight_bytes: 64 * MIB,
            ..settings(2000, 4, 500)
        };
        // 64 MiB over 9 lanes (4 apply, 4 bulk, 1 urgent) of (1 MiB + overhead) messages: 7
        // each.
        assert_eq!(budget.lane_prefetch(), 7);
        assert_eq!(budget.lane_batch(), 7);
        assert!(budget.worst_case_bytes() <= 64 * MIB);
        // Small messages: the count bound is the tighter one.
        let small = ConsumeSettings {
            max_message_bytes: 4 * 1024,
            ..budget.clone()
        };
        assert_eq!(small.lane_prefetch(), 500);
        assert!(small.worst_case_bytes() <= 64 * MIB);
        // A budget below one message still lets each lane take one at a time.
        let tiny = ConsumeSettings {
            max_inflight_bytes: 1,
            ..budget
        };
        assert_eq!((tiny.lane_prefetch(), tiny.lane_batch()), (1, 1));
    }

    #[test]
    fn the_worst_case_never_exceeds_the_budget_when_one_message_fits_each_lane() {
        for lanes in 1..=8 {
            for mib in [4, 32, 256, 512, 4096] {
                for message in [1024, 64 * 1024, MIB, 16 * MIB] {
                    let s = ConsumeSettings {
                        max_inflight_bytes: mib * MIB,
                        max_message_bytes: message,
                        ..settings(2000, lanes, 500)
                    };
                    let one_each = u64::try_from(lanes * 2 + 1).unwrap_or(1)
                        * (message + DELIVERY_OVERHEAD_BYTES);
                    if one_each <= mib * MIB {
                        assert!(s.worst_case_bytes() <= mib * MIB, "{lanes} {mib} {message}");
                    }
                    assert!(s.lane_batch() <= usize::from(s.lane_prefetch()));
                }
            }
        }
    }
}
