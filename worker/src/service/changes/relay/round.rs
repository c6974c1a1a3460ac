//! One relay round: select the oldest unpublished rows after a cursor and start their
//! publishes, in `seq` order on one channel. The confirms are settled (and the rows marked
//! published) by the [`super::marker`], so the next round starts while this one's confirms are
//! still on their way.

use super::RelayError;
use crate::service::changes::body::{self, Row, message};
use crate::service::db::schema::changes as c;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, PublisherConfirm};
use shared::amqp::{Outgoing, start_all};
use shared::changes::{ChangeHead, header};
use std::time::{Duration, Instant};

/// A round whose publishes are on the wire: each row's `seq` with its pending confirm, in
/// order.
pub struct Started {
    pub pending: Vec<(i64, PublisherConfirm)>,
    /// The lowest and highest `seq` of the round: the next round selects after the last.
    pub first_seq: i64,
    pub last_seq: i64,
    /// The round took as many rows as it may: more are probably waiting.
    pub full: bool,
    pub select: Duration,
    pub publish: Duration,
}

fn properties(head: &ChangeHead<'_>) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(header::SEQ.into(), AMQPValue::LongLongInt(head.seq));
    headers.insert(
        header::CHANGE_KIND.into(),
        AMQPValue::LongString(LongString::from(head.kind.as_str().as_bytes().to_vec())),
    );
    headers.insert(
        header::ORGANIZATION_ID.into(),
        AMQPValue::LongString(LongString::from(head.organization_id.as_bytes().to_vec())),
    );
    BasicProperties::default()
        .with_message_id(head.id.into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_timestamp(u64::try_from(head.committed_at.timestamp()).unwrap_or(0))
        .with_headers(headers)
}

/// Selects up to `batch` unpublished rows with `seq` above `after` (along the primary key: no
/// index names `published_at`) and starts their publishes. `None` when there is nothing to
/// publish.
pub async fn start(
    conn: &mut AsyncPgConnection,
    channel: &Channel,
    exchange: &str,
    batch: i64,
    after: i64,
) -> Result<Option<Started>, RelayError> {
    let started = Instant::now();
    let rows: Vec<Row> = c::table
        .filter(c::seq.gt(after))
        .filter(c::published_at.is_null())
        .order(c::seq)
        .limit(batch)
        .select(body::COLUMNS)
        .load(conn)
        .await?;
    let (Some(first), Some(last)) = (rows.as_slice().first(), rows.as_slice().last()) else {
        return Ok(None);
    };
    let (first_seq, last_seq) = (first.0, last.0);
    let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= batch;
    let select = started.elapsed();
    let messages = rows
        .iter()
        .map(message)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|body::Corrupt { seq, reason }| RelayError::Corrupt { seq, reason })?;
    let outgoing = messages.iter().map(|m| Outgoing {
        exchange,
        routing_key: m.head.kind.as_str(),
        body: &m.body,
        properties: properties(&m.head),
    });
    let mut pending = Vec::with_capacity(rows.len());
    for (m, confirm) in messages.iter().zip(start_all(channel, outgoing).await) {
        pending.push((m.head.seq, confirm?));
    }
    Ok(Some(Started {
        pending,
        first_seq,
        last_seq,
        full,
        select,
        publish: started.elapsed() - select,
    }))
}
