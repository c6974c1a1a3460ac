//! Reading the dead-letter queue without losing or reordering anything: messages are consumed
//! *without* acknowledgement and held; the ones an operation does not remove are handed back
//! when the channel closes (also if the tool crashes: the broker requeues a dead connection's
//! unacked messages), in their original order. Nothing is copied, so nothing can be duplicated
//! or dropped by inspection.

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use shared::Topology;
use shared::amqp::queue_depth;
use std::time::Duration;

/// The most messages one operation holds at once (the AMQP prefetch limit).
pub const MAX_HELD: usize = 65_535;

pub struct DlqReader {
    pub connection: Connection,
    channel: Channel,
    queue: String,
    held: std::sync::atomic::AtomicUsize,
}

impl DlqReader {
    pub async fn open(url: &str, topology: &Topology) -> Result<Self, lapin::Error> {
        let connection = shared::amqp::connect(url, &shared::amqp::connection_name("dlq")).await?;
        shared::amqp::declare_topology(&connection, topology).await?;
        let channel = connection.create_channel().await?;
        Ok(Self {
            connection,
            channel,
            queue: topology.dead_queue(),
            held: Default::default(),
        })
    }

    /// Messages in the queue now (ready, not held by anyone).
    pub async fn depth(&self) -> Result<u32, lapin::Error> {
        queue_depth(&self.channel, &self.queue).await
    }

    /// Holds up to `limit` messages from the head of the queue, unacknowledged, in order.
    pub async fn hold(&self, limit: usize) -> Result<Vec<Delivery>, lapin::Error> {
        let depth = usize::try_from(self.depth().await?).unwrap_or(usize::MAX);
        let n = depth.min(limit).min(MAX_HELD);
        if n == 0 {
            return Ok(Vec::new());
        }
        let prefetch = u16::try_from(n).unwrap_or(u16::MAX);
        self.channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!("dlq-{}", std::process::id());
        let mut consumer = self
            .channel
            .basic_consume(
                self.queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut held = Vec::with_capacity(n);
        while held.len() < n {
            match tokio::time::timeout(Duration::from_secs(5), consumer.next()).await {
                Ok(Some(Ok(d))) => held.push(d),
                Ok(Some(Err(e))) => return Err(e),
                Ok(None) | Err(_) => break, // fewer than counted (someone else took some)
            }
        }
        self.channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await?;
        self.held
            .store(held.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(held)
    }

    /// Hands every message still held back to the queue, in order, and disconnects. `removed`
    /// of the held messages were acked. Waits (up to 10 s) until the broker shows the others
    /// back, so the next command sees the whole queue.
    pub async fn release(self, removed: usize) {
        let ready_before = self.depth().await.unwrap_or(0);
        let _ = self.channel.close(200, "dlq operation done".into()).await;
        let returning = self
            .held
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(removed);
        let expected = u32::try_from(returning)
            .unwrap_or(u32::MAX)
            .saturating_add(ready_before);
        if let Ok(ch) = self.connection.create_channel().await {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while tokio::time::Instant::now() < deadline {
                match queue_depth(&ch, &self.queue).await {
                    Ok(depth) if depth < expected => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    _ => break,
                }
            }
        }
        let _ = self
            .connection
            .close(200, "dlq operation done".into())
            .await;
    }
}
