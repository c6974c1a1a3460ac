//! B_pub: what RabbitMQ can do here without our code in the way.

use super::cpu::{CpuUse, Watched};
use super::percentile;
use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct PubResult {
    pub messages: usize,
    pub msgs_per_s: f64,
    pub confirm_p50_ms: f64,
    pub confirm_p99_ms: f64,
    pub cpu: CpuUse,
}

/// B_pub: a raw lapin publisher — persistent, mandatory, pipelined confirms (`window` in flight)
/// — into a quorum queue, like ingest's.
pub async fn raw_publisher(
    watched: &Watched,
    url: &str,
    n: usize,
    window: usize,
) -> anyhow::Result<PubResult> {
    let conn = shared::amqp::connect(url, "bench-raw-publisher").await?;
    let ch = conn.create_channel().await?;
    let queue = format!("bench.raw.{:x}", rand::random::<u32>());
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(b"quorum".to_vec())),
    );
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let body = super::event_body(0, "org_bench");
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into());
    let result = measured(watched, &ch, n, window, |_| {
        (String::new(), queue.clone(), body.clone(), props.clone())
    })
    .await?;
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(result)
}

/// Publishes `n` messages made by `message(i)` with [`pipelined`] and measures the pace, the
/// confirm latencies and where the CPU went.
pub async fn measured(
    watched: &Watched,
    ch: &lapin::Channel,
    n: usize,
    window: usize,
    message: impl Fn(usize) -> Message,
) -> anyhow::Result<PubResult> {
    let started = Instant::now();
    let cpu = watched.start();
    let mut ms = pipelined(ch, n, window, message).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu.finish(n);
    ms.sort_by(f64::total_cmp);
    Ok(PubResult {
        messages: n,
        msgs_per_s: n as f64 / elapsed,
        confirm_p50_ms: percentile(&ms, 0.5),
        confirm_p99_ms: percentile(&ms, 0.99),
        cpu,
    })
}

/// Runs `run` three times and keeps the median by rate: the broker's own pace varies run to run
/// (segment writes, GC).
pub async fn median_of_three<F, Fut>(mut run: F) -> anyhow::Result<PubResult>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<PubResult>>,
{
    let mut runs = Vec::with_capacity(3);
    for _ in 0..3 {
        let r = run().await?;
        eprintln!("  run: {:.0} msgs/s", r.msgs_per_s);
        runs.push(r);
    }
    runs.sort_by(|a, b| a.msgs_per_s.total_cmp(&b.msgs_per_s));
    Ok(runs.swap_remove(1))
}

/// One message to publish: exchange, routing key, body, properties.
pub type Message = (String, String, Vec<u8>, BasicProperties);

/// Publishes `n` messages made by `message(i)` on `ch` (in confirm mode), mandatory, with
/// `window` confirms in flight; returns each message's confirm latency in milliseconds. Fails
/// on a nack or a returned message.
pub async fn pipelined(
    ch: &lapin::Channel,
    n: usize,
    window: usize,
    message: impl Fn(usize) -> Message,
) -> anyhow::Result<Vec<f64>> {
    let latencies: Vec<anyhow::Result<f64>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (exchange, routing_key, body, props) = message(i);
            async move {
                let t = Instant::now();
                let confirm = ch
                    .basic_publish(
                        exchange.as_str().into(),
                        routing_key.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &body,
                        props,
                    )
                    .await?;
                shared::amqp::settled(confirm).await?;
                Ok(t.elapsed().as_secs_f64() * 1000.0)
            }
        })
        .buffer_unordered(window)
        .collect()
        .await;
    latencies.into_iter().collect()
}
