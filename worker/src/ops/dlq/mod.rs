//! Dead-letter operations: `worker dlq list | show | replay | purge`.

pub mod cli;
pub mod message;
pub mod pace;
pub mod read;
pub mod render;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use message::{DeadMessage, Filter};
use pace::Pacer;
use read::DlqReader;
use shared::Topology;
use shared::amqp::publish_confirmed;
use shared::contract::{Source, header};
use std::io::{IsTerminal, Write};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("broker")]
    Broker(#[from] lapin::Error),
    #[error("publishing")]
    Publish(#[from] shared::amqp::PublishError),
    #[error("no message with event id {0} in the dead-letter queue")]
    NotFound(String),
}

/// Result of a replay or purge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub scanned: usize,
    pub matched: usize,
    pub done: usize,
    /// Skipped by the loop guard (`DLQ_MAX_REPLAYS`).
    pub skipped: usize,
}

fn header_pairs(d: &Delivery) -> Vec<(String, String)> {
    let Some(h) = d.properties.headers().as_ref() else {
        return Vec::new();
    };
    h.inner()
        .iter()
        .map(|(k, v)| {
            let text = match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                AMQPValue::LongLongInt(n) => n.to_string(),
                AMQPValue::LongInt(n) => n.to_string(),
                other => format!("{other:?}"),
            };
            (k.to_string(), text)
        })
        .collect()
}

/// Lists matching messages (at most `max`) — nothing is removed or reordered.
pub async fn list(
    url: &str,
    topology: &Topology,
    filter: &Filter,
    max: usize,
) -> Result<(Vec<DeadMessage>, u32), DlqError> {
    let reader = DlqReader::open(url, topology).await?;
    let total = reader.depth().await?;
    let held = reader.hold(read::MAX_HELD).await;
    let matching = held.map(|held| {
        held.iter()
            .map(|d| DeadMessage::from_delivery(&d.properties, d.routing_key.as_str()))
            .filter(|m| filter.matches(m))
            .take(max)
            .collect::<Vec<_>>()
    });
    reader.release(0).await;
    Ok((matching?, total))
}

/// One message, in full.
pub async fn show(url: &str, topology: &Topology, event_id: &str) -> Result<String, DlqError> {
    let reader = DlqReader::open(url, topology).await?;
    let held = reader.hold(read::MAX_HELD).await;
    let found = held.map(|held| {
        held.iter().find_map(|d| {
            let m = DeadMessage::from_delivery(&d.properties, d.routing_key.as_str());
            (m.event_id == event_id).then(|| render::show(&m, &header_pairs(d), &d.data))
        })
    });
    reader.release(0).await;
    found?.ok_or_else(|| DlqError::NotFound(event_id.to_owned()))
}

/// Options of `dlq replay`.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub filter: Filter,
    pub max: Option<usize>,
    pub rate: Option<f64>,
    pub dry_run: bool,
    pub force: bool,
    pub max_replays: u32,
}

/// The headers of the replayed copy: `source: replay`, `x-replay-count`+1, retry and
/// dead-letter headers cleared (`x-first-dead-at` kept).
fn replay_properties(d: &Delivery, replay_count: u32) -> lapin::BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(h) = d.properties.headers().as_ref() {
        for (k, v) in h.inner() {
            let drop = [
                header::DEAD_REASON,
                header::DEAD_ERROR,
                header::RETRY_COUNT,
                header::RETRY_TIER,
                header::SOURCE,
                header::REPLAY_COUNT,
                "x-death",
                "x-first-death-exchange",
                "x-first-death-queue",
                "x-first-death-reason",
                "x-last-death-exchange",
                "x-last-death-queue",
                "x-last-death-reason",
            ];
            if !drop.contains(&k.as_str()) {
                headers.insert(k.clone(), v.clone());
            }
        }
    }
    headers.insert(
        header::SOURCE.into(),
        AMQPValue::LongString(LongString::from(
            Source::Replay.as_str().as_bytes().to_vec(),
        )),
    );
    headers.insert(
        header::REPLAY_COUNT.into(),
        AMQPValue::LongLongInt(i64::from(replay_count)),
    );
    d.properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2)
}

/// Republishes matching messages to the events exchange with their original routing key; each
/// copy is confirmed before the dead-letter original is acked. Non-matching (and guarded)
/// messages stay in the queue, in order.
pub async fn replay(
    url: &str,
    topology: &Topology,
    opts: &ReplayOptions,
) -> Result<Report, DlqError> {
    let reader = DlqReader::open(url, topology).await?;
    let result = replay_held(&reader, topology, opts).await;
    let removed = match &result {
        Ok(r) if !opts.dry_run => r.done,
        _ => 0,
    };
    reader.release(removed).await;
    result
}

async fn replay_held(
    reader: &DlqReader,
    topology: &Topology,
    opts: &ReplayOptions,
) -> Result<Report, DlqError> {
    let held = reader.hold(read::MAX_HELD).await?;
    let publisher = reader.connection.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let exchange = topology.exchange();
    let mut pacer = Pacer::new(opts.rate);
    let mut report = Report {
        scanned: held.len(),
        ..Report::default()
    };
    let live = std::io::stderr().is_terminal();
    for d in &held {
        if opts.max.is_some_and(|max| report.done >= max) {
            break;
        }
        let m = DeadMessage::from_delivery(&d.properties, d.routing_key.as_str());
        if !opts.filter.matches(&m) {
            continue;
        }
        report.matched += 1;
        if m.replay_count >= opts.max_replays && !opts.force {
            report.skipped += 1;
            tracing::warn!(event_id = %m.event_id, replays = m.replay_count, "already replayed {} times: skipped (use --force)", m.replay_count);
            continue;
        }
        if opts.dry_run {
            println!(
                "would replay {} ({}, {}, reason {})",
                m.event_id,
                m.event_type,
                m.organization_id.as_deref().unwrap_or("-"),
                m.reason
            );
            report.done += 1;
            continue;
        }
        pacer.wait().await;
        let routing_key = if m.event_type.is_empty() {
            m.routing_key.clone()
        } else {
            m.event_type.clone()
        };
        let props = replay_properties(d, m.replay_count.saturating_add(1));
        publish_confirmed(
            &publisher,
            &exchange,
            &routing_key,
            &d.data,
            props,
            Duration::from_secs(10),
        )
        .await?;
        d.acker.ack(BasicAckOptions::default()).await?;
        report.done += 1;
        if live {
            eprint!(
                "\r  replayed {} of {} matching",
                report.done, report.matched
            );
            let _ = std::io::stderr().flush();
        } else if report.done.is_multiple_of(100) {
            tracing::info!(replayed = report.done, "replay progress");
        }
    }
    if live {
        eprintln!();
    }
    let _ = publisher.close(200, "done".into()).await;
    Ok(report)
}

/// Deletes matching messages (at most `max`); with `execute = false` only reports them.
pub async fn purge(
    url: &str,
    topology: &Topology,
    filter: &Filter,
    max: Option<usize>,
    execute: bool,
) -> Result<Report, DlqError> {
    let reader = DlqReader::open(url, topology).await?;
    let result = async {
        let held = reader.hold(read::MAX_HELD).await?;
        let mut report = Report {
            scanned: held.len(),
            ..Report::default()
        };
        for d in &held {
            if max.is_some_and(|max| report.done >= max) {
                break;
            }
            let m = DeadMessage::from_delivery(&d.properties, d.routing_key.as_str());
            if !filter.matches(&m) {
                continue;
            }
            report.matched += 1;
            if execute {
                d.acker.ack(BasicAckOptions::default()).await?;
            } else {
                println!(
                    "would delete {} ({}, {}, reason {})",
                    m.event_id,
                    m.event_type,
                    m.organization_id.as_deref().unwrap_or("-"),
                    m.reason
                );
            }
            report.done += 1;
        }
        Ok::<_, DlqError>(report)
    }
    .await;
    let removed = match &result {
        Ok(r) if execute => r.done,
        _ => 0,
    };
    reader.release(removed).await;
    result
}
