//! The ceiling: what an ingest with no cost of its own could sustain on this machine. A
//! do-nothing actix-web server (`noop_http`: reads the body, answers 202) takes the same
//! open-loop load as ingest, while a raw lapin publisher puts one of ingest's messages per
//! request (same exchange, routing key, headers; persistent, mandatory, confirmed) into the
//! broker at the same rate. HTTP, the load generator and the broker then share the cores as they
//! do under ingest, and what is left of ingest is nothing: ingest ÷ ceiling is how much of the
//! reachable rate ingest reaches; ceiling ÷ B_pub is what the machine allows at all.

use super::ingest_message;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use shared::Topology;
use shared::amqp::{declare_topology, settled};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// A connection with `topology` declared, for [`paced`] and [`b_pub_ingest_messages`].
pub async fn publisher(url: &str, topology: &Topology) -> anyhow::Result<lapin::Connection> {
    let conn = shared::amqp::connect(url, "bench-paced-publisher").await?;
    let ch = conn.create_channel().await?;
    declare_topology(&ch, topology).await?;
    let _ = ch.close(200, "declared".into()).await;
    Ok(conn)
}

/// Publishes `messages` on `ch` (in confirm mode) at `rate` per second — each millisecond what
/// is due — and awaits every confirm; returns how many were confirmed.
pub async fn paced(
    ch: &lapin::Channel,
    messages: Vec<super::baseline::Message>,
    rate: f64,
) -> anyhow::Result<usize> {
    let n = messages.len();
    let mut messages = messages.into_iter();
    let mut pending = FuturesUnordered::new();
    let mut sent = 0;
    let mut confirmed = 0;
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    while sent < n || !pending.is_empty() {
        tokio::select! {
            _ = tick.tick(), if sent < n => {
                let due = ((start.elapsed().as_secs_f64() * rate) as usize).min(n);
                while sent < due {
                    let Some((exchange, key, body, props)) = messages.next() else { break };
                    pending.push(async move {
                        let confirm = ch
                            .basic_publish(
                                exchange.as_str().into(),
                                key.as_str().into(),
                                BasicPublishOptions { mandatory: true, ..Default::default() },
                                &body,
                                props,
                            )
                            .await?;
                        settled(confirm).await?;
                        anyhow::Ok(())
                    });
                    sent += 1;
                }
            }
            Some(done) = pending.next(), if !pending.is_empty() => {
                done?;
                confirmed += 1;
            }
        }
    }
    Ok(confirmed)
}

/// B_pub with ingest's messages: the raw publisher (`window` confirms in flight) when each
/// message is one of ingest's — topic exchange, routing key, header table — rather than a bare
/// body to a queue. What the broker needs per message of ours at its best batching. The messages
/// land in `topology`'s apply queue: the caller empties it.
pub async fn b_pub_ingest_messages(
    watched: &super::cpu::Watched,
    conn: &lapin::Connection,
    topology: &Topology,
    n: usize,
    window: usize,
) -> anyhow::Result<super::baseline::PubResult> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    // Built before the clock starts: the publisher's CPU is then publishing, as in B_pub.
    let messages: Vec<_> = (0..n)
        .map(|i| ingest_message(topology, 200_000_000 + i))
        .collect();
    let result = super::baseline::measured(watched, &ch, n, window, |i| messages[i].clone()).await;
    let _ = ch.close(200, "done".into()).await;
    result
}
