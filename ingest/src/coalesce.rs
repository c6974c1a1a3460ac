//! Publishes from many concurrent requests written to the broker together. Each HTTP worker
//! thread has one `Coalescer` task: requests hand it their message and get back the pending
//! confirm; the task takes every message that is waiting (and, while busy, what arrives within
//! the linger) and starts all their publishes at once, so lapin writes them in one go and
//! RabbitMQ handles them as a burst rather than one wake-up per message. Nothing is
//! acknowledged to the caller early: each request still waits for its own confirm.

use bytes::Bytes;
use lapin::BasicProperties;
use lapin::PublisherConfirm;
use shared::amqp::{BrokerLink, LinkError, Outgoing, PublishError, confirm_within, start_all};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Messages waiting for the task at most (beyond that, requests wait to hand theirs over).
const QUEUE: usize = 4096;

struct Job {
    exchange: String,
    routing_key: String,
    body: Bytes,
    properties: BasicProperties,
    reply: oneshot::Sender<Result<PublisherConfirm, PublishError>>,
}

/// How the task groups messages.
#[derive(Debug, Clone, Copy)]
pub struct CoalesceSettings {
    /// Most messages started together.
    pub max_batch: usize,
    /// After the first message, wait this long for more (zero: take only what is waiting).
    pub linger: Duration,
}

#[derive(Clone)]
pub struct Coalescer {
    tx: mpsc::Sender<Job>,
}

impl Coalescer {
    /// Starts the task on the current runtime (an HTTP worker's, so requests reach it without
    /// crossing threads).
    pub fn start(link: BrokerLink, settings: CoalesceSettings) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(link, settings, rx));
        Self { tx }
    }

    /// Publishes (mandatory) and waits, bounded by `timeout`, for the broker's confirm, settled
    /// by the one rule of `shared::amqp::confirm_within`.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: Bytes,
        properties: BasicProperties,
        timeout: Duration,
    ) -> Result<(), PublishError> {
        confirm_within(timeout, async {
            let (reply, answer) = oneshot::channel();
            self.tx
                .send(Job {
                    exchange: exchange.to_owned(),
                    routing_key: routing_key.to_owned(),
                    body,
                    properties,
                    reply,
                })
                .await
                .map_err(|_| LinkError::Down)?;
            answer.await.map_err(|_| LinkError::Down)?
        })
        .await
    }
}

/// How long the next batch waits for company: the linger only while the previous batch had
/// company too (under load), so a lone webhook on a quiet system is not held back.
fn linger_after(previous_batch: usize, settings: CoalesceSettings) -> Duration {
    if previous_batch > 1 {
        settings.linger
    } else {
        Duration::ZERO
    }
}

/// Gathers the next batch: the first message, all that are already waiting, and (with a linger)
/// what arrives before it ends; `None` once every sender is gone.
async fn next_batch(
    rx: &mut mpsc::Receiver<Job>,
    max: usize,
    linger: Duration,
) -> Option<Vec<Job>> {
    let first = rx.recv().await?;
    let max = max.max(1);
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    if !linger.is_zero() {
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => batch.push(job),
                Ok(None) | Err(_) => break,
            }
        }
    }
    Some(batch)
}

async fn run(link: BrokerLink, settings: CoalesceSettings, mut rx: mpsc::Receiver<Job>) {
    let mut previous = 0;
    while let Some(mut batch) = next_batch(
        &mut rx,
        settings.max_batch,
        linger_after(previous, settings),
    )
    .await
    {
        previous = batch.len();
        let channel = match link.channel() {
            Ok(channel) => channel,
            Err(e) => {
                for job in batch {
                    let _ = job.reply.send(Err(PublishError::Link(same_kind(&e))));
                }
                continue;
            }
        };
        // All publishes start before any is awaited: their frames are queued together. The
        // properties (headers included) are moved into the publish, not copied.
        let started = start_all(
            &channel,
            batch.iter_mut().map(|job| Outgoing {
                exchange: &job.exchange,
                routing_key: &job.routing_key,
                body: &job.body,
                properties: std::mem::take(&mut job.properties),
            }),
        )
        .await;
        for (job, result) in batch.into_iter().zip(started) {
            let _ = job.reply.send(result);
        }
    }
}

/// The same failure for every job of the batch (`lapin::Error` is not `Clone`).
fn same_kind(e: &LinkError) -> LinkError {
    match e {
        LinkError::Blocked => LinkError::Blocked,
        _ => LinkError::Down,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> (
        Job,
        oneshot::Receiver<Result<PublisherConfirm, PublishError>>,
    ) {
        let (reply, rx) = oneshot::channel();
        (
            Job {
                exchange: "x".into(),
                routing_key: "k".into(),
                body: Bytes::from_static(b"{}"),
                properties: BasicProperties::default(),
                reply,
            },
            rx,
        )
    }

    #[tokio::test]
    async fn takes_everything_waiting_up_to_the_maximum() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut answers = Vec::new();
        for _ in 0..5 {
            let (j, a) = job();
            answers.push(a);
            tx.send(j).await.unwrap();
        }
        assert_eq!(
            next_batch(&mut rx, 3, Duration::ZERO).await.unwrap().len(),
            3
        );
        assert_eq!(
            next_batch(&mut rx, 3, Duration::ZERO).await.unwrap().len(),
            2
        );
        drop(tx);
        assert!(next_batch(&mut rx, 3, Duration::ZERO).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn lingers_for_late_arrivals_but_not_past_the_deadline() {
        let (tx, mut rx) = mpsc::channel(16);
        let linger = Duration::from_millis(5);
        let (first, _a) = job();
        tx.send(first).await.unwrap();
        let late = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let (j, _b) = job();
            let _ = late.send(j).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            let (j, _c) = job();
            let _ = late.send(j).await;
        });
        assert_eq!(next_batch(&mut rx, 10, linger).await.unwrap().len(), 2);
        assert_eq!(next_batch(&mut rx, 10, linger).await.unwrap().len(), 1);
    }

    #[test]
    fn lingers_only_under_load() {
        let settings = CoalesceSettings {
            max_batch: 10,
            linger: Duration::from_millis(2),
        };
        assert_eq!(linger_after(0, settings), Duration::ZERO, "first batch");
        assert_eq!(linger_after(1, settings), Duration::ZERO, "quiet");
        assert_eq!(linger_after(2, settings), Duration::from_millis(2), "busy");
    }
}
