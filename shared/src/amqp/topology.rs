//! Idempotent declaration of the exchanges and queues of the message contract
//! (`docs/architecture.md`). The arguments are the
//! same on every call (a mismatch would be a PRECONDITION_FAILED channel error).

use crate::contract::{DEAD_DELIVERY_LIMIT, DELIVERY_LIMIT, Topology, header};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};

fn text(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()))
}

fn quorum_args(dead_letter_exchange: Option<&str>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    if let Some(dlx) = dead_letter_exchange {
        args.insert("x-dead-letter-exchange".into(), text(dlx));
        // at-least-once dead-lettering: a message is never lost between queues.
        args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        args.insert("x-overflow".into(), text("reject-publish"));
    }
    args
}

/// The dead-letter queue's arguments.
pub fn dead_queue_args(dead_letter_exchange: &str) -> FieldTable {
    let mut args = quorum_args(Some(dead_letter_exchange));
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DEAD_DELIVERY_LIMIT),
    );
    args
}

/// Declares a quorum queue with `x-quorum-initial-group-size`. A queue declared before that
/// argument existed here refuses it as inequivalent (which closes the channel): it keeps the
/// replicas it has, and is declared again, on a new channel, without it. Returns the channel to
/// go on with.
async fn declare_quorum(
    connection: &Connection,
    channel: Channel,
    name: &str,
    args: FieldTable,
    group_size: u32,
) -> Result<Channel, lapin::Error> {
    let opts = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut sized = args.clone();
    sized.insert(
        "x-quorum-initial-group-size".into(),
        AMQPValue::LongInt(i32::try_from(group_size).unwrap_or(i32::MAX)),
    );
    match channel.queue_declare(name.into(), opts, sized).await {
        Ok(_) => Ok(channel),
        Err(e) if e.to_string().contains("x-quorum-initial-group-size") => {
            tracing::info!(
                queue = name,
                "declared before its replica count was set: kept as it is"
            );
            let channel = connection.create_channel().await?;
            channel.queue_declare(name.into(), opts, args).await?;
            Ok(channel)
        }
        Err(e) => Err(e),
    }
}

/// Declares exchanges, the apply queue, retry tiers and the dead-letter queue, and binds them
/// (on channels of its own, closed when done).
pub async fn declare_topology(
    connection: &Connection,
    topology: &Topology,
) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await?;
    let channel = declare_on(connection, channel, topology).await?;
    let _ = channel.close(200, "topology declared".into()).await;
    Ok(())
}

async fn declare_on(
    connection: &Connection,
    mut channel: Channel,
    topology: &Topology,
) -> Result<Channel, lapin::Error> {
    let group = topology.quorum_group_size();
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let exchange = topology.exchange();
    let dlx = topology.dead_exchange();
    let retry = topology.retry_exchange();
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            dlx.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            retry.as_str().into(),
            ExchangeKind::Headers,
            durable,
            FieldTable::default(),
        )
        .await?;

    let mut apply_args = quorum_args(Some(&dlx));
    apply_args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DELIVERY_LIMIT),
    );
    let apply = topology.apply_queue();
    channel = declare_quorum(connection, channel, &apply, apply_args.clone(), group).await?;
    channel
        .queue_bind(
            apply.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    // The urgent path: its own exchange and queue (same arguments as the apply queue), so a
    // deprovisioning never queues behind bulk work. Its retries and dead letters go the same
    // ways as the apply queue's (a retried copy comes back through `{prefix}.events`).
    // The bulk queue likewise: an organization over its fair share and sync snapshots, so
    // that one organization's burst does not queue in front of everyone else's provisioning.
    for (x, q) in [
        (topology.urgent_exchange(), topology.urgent_queue()),
        (topology.bulk_exchange(), topology.bulk_queue()),
    ] {
        channel
            .exchange_declare(
                x.as_str().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel = declare_quorum(connection, channel, &q, apply_args.clone(), group).await?;
        channel
            .queue_bind(
                q.as_str().into(),
                x.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }

    // The dead-letter queue: an explicit, unreachable delivery limit (RabbitMQ 4 gives quorum
    // queues a default of 20, and each `dlq list` returns what it held), and it dead-letters into
    // itself as a second line should anything else ever expire a message there.
    let dead = topology.dead_queue();
    channel = declare_quorum(connection, channel, &dead, dead_queue_args(&dlx), group).await?;
    channel
        .queue_bind(
            dead.as_str().into(),
            dlx.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    if let Some(retention) = topology.changes_retention() {
        declare_changes(&channel, topology, retention).await?;
    }

    for tier in topology.tiers() {
        let name = topology.retry_queue(tier);
        let mut args = quorum_args(Some(&exchange));
        let ttl_ms = i64::try_from(tier.delay.as_millis()).unwrap_or(i64::MAX);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
        channel = declare_quorum(connection, channel, &name, args, group).await?;
        let mut binding = FieldTable::default();
        binding.insert("x-match".into(), text("all"));
        binding.insert(header::RETRY_TIER.into(), text(&tier.name));
        channel
            .queue_bind(
                name.as_str().into(),
                retry.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                binding,
            )
            .await?;
    }
    Ok(channel)
}

/// The change feed: a topic exchange bound with `#` to a stream that keeps `retention` of it.
async fn declare_changes(
    channel: &Channel,
    topology: &Topology,
    retention: std::time::Duration,
) -> Result<(), lapin::Error> {
    let exchange = topology.changes_exchange();
    let stream = topology.changes_stream();
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("stream"));
    args.insert(
        "x-max-age".into(),
        text(&format!("{}s", retention.as_secs().max(1))),
    );
    channel
        .queue_declare(
            stream.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await?;
    channel
        .queue_bind(
            stream.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}
