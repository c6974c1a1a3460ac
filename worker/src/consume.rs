//! The consume loop: bounded prefetch and concurrency, re-subscribing after broker loss with
//! backoff; on shutdown, cancel the consumer and let in-flight deliveries finish.

use crate::handle::Handler;
use crate::health::{Health, TICK};
use futures_util::{FutureExt, StreamExt};
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use shared::amqp::BrokerLink;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long to wait for more deliveries to fill a batch.
const BATCH_WAIT: Duration = Duration::from_millis(2);

pub struct ConsumeSettings {
    pub prefetch: u16,
    pub concurrency: usize,
    /// Deliveries applied together in one transaction (at most).
    pub batch_size: usize,
    pub shutdown_timeout: Duration,
}

/// Runs until `stop` is cancelled, then drains in-flight work (bounded by the timeout).
pub async fn run(
    handler: Arc<Handler>,
    link: BrokerLink,
    health: Arc<Health>,
    settings: ConsumeSettings,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let queue = handler.topology.apply_queue();
    let tag = format!(
        "{}-{:08x}",
        shared::amqp::connection_name("worker"),
        rand_tag()
    );
    health.tick();
    'outer: while !stop.is_cancelled() {
        // Wait for the link (ticking so liveness stays true while the broker is away).
        while !link.is_ready() {
            health.tick();
            tokio::select! {
                _ = stop.cancelled() => break 'outer,
                _ = link.wait_ready(TICK) => {}
            }
        }
        let subscribed = async {
            let channel = link.open_channel().await.map_err(|e| e.to_string())?;
            channel
                .basic_qos(settings.prefetch, BasicQosOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((channel, consumer))
        }
        .await;
        let (channel, mut consumer) = match subscribed {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "cannot subscribe; retrying");
                link.report_failure();
                tokio::select! {
                    _ = stop.cancelled() => break 'outer,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        };
        health.set_consuming(true);
        tracing::info!(%queue, prefetch = settings.prefetch, concurrency = settings.concurrency, "consuming");
        let mut ticker = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    let _ = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
                    break 'outer;
                }
                _ = ticker.tick() => {
                    health.tick();
                    while tasks.try_join_next().is_some() {}
                }
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        // Take what is already there (up to the batch size) without waiting long.
                        let mut batch = vec![delivery];
                        let mut failed = false;
                        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
                        while batch.len() < settings.batch_size.max(1) {
                            // What is buffered already is taken without arming a timer.
                            let next = match consumer.next().now_or_never() {
                                Some(next) => Ok(next),
                                None => tokio::time::timeout_at(deadline, consumer.next()).await,
                            };
                            match next {
                                Ok(Some(Ok(d))) => batch.push(d),
                                Ok(Some(Err(_))) | Ok(None) => {
                                    failed = true;
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        // Wait for a free lane, but not past a stop: unacked deliveries go back
                        // to the queue when the channel closes.
                        let permit = tokio::select! {
                            p = Arc::clone(&permits).acquire_owned() => p,
                            _ = stop.cancelled() => break 'outer,
                        };
                        let Ok(permit) = permit else { break 'outer };
                        let h = Arc::clone(&handler);
                        tasks.spawn(async move {
                            h.handle_batch(batch).await;
                            drop(permit);
                        });
                        if failed {
                            tracing::warn!("consumer failed; re-subscribing");
                            break;
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "consumer failed; re-subscribing");
                        break;
                    }
                    None => {
                        tracing::warn!("consumer stream ended; re-subscribing");
                        break;
                    }
                }
            }
        }
        health.set_consuming(false);
        link.report_failure();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    health.set_consuming(false);
    tracing::info!(in_flight = tasks.len(), "draining in-flight events");
    let drained = tokio::time::timeout(settings.shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("in-flight events did not finish in time; the broker will redeliver them");
        tasks.abort_all();
    }
}

fn rand_tag() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ std::process::id())
        .unwrap_or_default()
}
