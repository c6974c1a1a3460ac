//! Samples the apply and dead-letter queue depths into metrics, so a DLQ that is not empty is
//! visible (and alertable) from the worker's own `/metrics`.

use crate::service::metrics::Metrics;
use shared::Topology;
use shared::amqp::{BrokerLink, queue_depth};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const SAMPLE_EVERY: Duration = Duration::from_secs(15);

pub async fn run(
    link: BrokerLink,
    topology: Topology,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut channel: Option<lapin::Channel> = None;
    loop {
        if channel.as_ref().is_none_or(|c| !c.status().connected()) {
            channel = link.open_channel().await.ok();
        }
        let mut failed = false;
        if let Some(ch) = &channel {
            for (queue, gauge) in [
                (topology.dead_queue(), &metrics.dlq_depth),
                (topology.apply_queue(), &metrics.queue_depth),
            ] {
                match queue_depth(ch, &queue).await {
                    Ok(depth) => {
                        gauge.set(i64::from(depth));
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
        }
        if failed {
            channel = None;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}
