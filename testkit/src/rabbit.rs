//! Broker helpers for tests: a tap queue bound to a test's exchange, and topology clean-up.

use lapin::message::BasicGetMessage;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use shared::Topology;
use std::time::Duration;

/// A connection plus a channel for inspecting what a test published.
pub struct RabbitTap {
    pub connection: Connection,
    pub channel: Channel,
}

impl RabbitTap {
    pub async fn connect(url: &str) -> Result<Self, lapin::Error> {
        let connection = shared::amqp::connect(url, "test-tap").await?;
        let channel = connection.create_channel().await?;
        Ok(Self {
            connection,
            channel,
        })
    }

    /// Declares (idempotently) the topology, then a classic queue `name` bound to `exchange`
    /// with `routing` (e.g. `#`).
    pub async fn bind_tap(
        &self,
        topology: &Topology,
        name: &str,
        routing: &str,
    ) -> Result<(), lapin::Error> {
        shared::amqp::declare_topology(&self.connection, topology).await?;
        self.channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        self.channel
            .queue_bind(
                name.into(),
                topology.exchange().as_str().into(),
                routing.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        // The urgent and bulk paths too (fanout exchanges: everything ingest publishes there).
        for x in [topology.urgent_exchange(), topology.bulk_exchange()] {
            self.channel
                .queue_bind(
                    name.into(),
                    x.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Gets one message (acked), waiting up to `timeout` for it to arrive.
    pub async fn get(
        &self,
        queue: &str,
        timeout: Duration,
    ) -> Result<Option<BasicGetMessage>, lapin::Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(msg) = self
                .channel
                .basic_get(queue.into(), BasicGetOptions::default())
                .await?
            {
                msg.delivery.ack(BasicAckOptions::default()).await?;
                return Ok(Some(msg));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Ready messages in a queue.
    pub async fn depth(&self, queue: &str) -> Result<u32, lapin::Error> {
        shared::amqp::queue_depth(&self.channel, queue).await
    }

    /// Events waiting to be applied: ready messages in the apply, urgent and bulk queues
    /// together (an organization past its fair share is queued on the bulk one).
    pub async fn queued(&self, topology: &Topology) -> Result<u32, lapin::Error> {
        let mut n = 0u32;
        for q in [
            topology.apply_queue(),
            topology.urgent_queue(),
            topology.bulk_queue(),
        ] {
            n = n.saturating_add(self.depth(&q).await?);
        }
        Ok(n)
    }

    /// Waits until a queue holds `n` ready messages (or the timeout passes); returns the last depth.
    pub async fn wait_depth(
        &self,
        queue: &str,
        n: u32,
        timeout: Duration,
    ) -> Result<u32, lapin::Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let d = self.depth(queue).await?;
            if d >= n || tokio::time::Instant::now() >= deadline {
                return Ok(d);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Deletes a test's queues (including `extra_queues`) and exchanges.
pub async fn delete_topology(
    url: &str,
    topology: &Topology,
    extra_queues: &[&str],
) -> Result<(), lapin::Error> {
    let tap = RabbitTap::connect(url).await?;
    let ch = &tap.channel;
    let mut queues: Vec<String> = vec![
        topology.apply_queue(),
        topology.urgent_queue(),
        topology.bulk_queue(),
        topology.dead_queue(),
    ];
    queues.extend(topology.tiers().iter().map(|t| topology.retry_queue(t)));
    queues.extend(extra_queues.iter().map(|q| (*q).to_owned()));
    for q in queues {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    for x in [
        topology.exchange(),
        topology.urgent_exchange(),
        topology.bulk_exchange(),
        topology.dead_exchange(),
        topology.retry_exchange(),
    ] {
        ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await?;
    }
    // The change feed, where the worker declared it (absent ones are not an error worth
    // failing a test's clean-up for).
    let _ = ch
        .queue_delete(
            topology.changes_stream().as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await;
    let _ = ch
        .exchange_delete(
            topology.changes_exchange().as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await;
    let _ = tap.connection.close(200, "done".into()).await;
    Ok(())
}
