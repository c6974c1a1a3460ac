//! One relay round: select the oldest unpublished rows after a cursor and start their
//! publishes, in `seq` order on one channel. The confirms are settled (and the rows marked
//! published) by the [`super::marker`], so the next round starts while this one's confirms are
//! still on their way.

use super::RelayError;
use crate::db::schema::changes as c;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, PublisherConfirm};
use shared::amqp::{Outgoing, start_all};
use shared::changes::{Change, ChangeKind, ChangePayload, header};
use std::time::{Duration, Instant};

/// An outbox row as the relay reads it.
pub type Row = (
    i64,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    serde_json::Value,
);

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

/// The message body of an outbox row.
pub fn body(row: &Row) -> Result<Change, RelayError> {
    let (seq, id, kind, org, cause, occurred_at, committed_at, payload) = row;
    let corrupt = |reason: String| RelayError::Corrupt { seq: *seq, reason };
    Ok(Change {
        id: id.clone(),
        seq: *seq,
        kind: ChangeKind::parse(kind).ok_or_else(|| corrupt(format!("unknown kind {kind:?}")))?,
        organization_id: org.clone(),
        cause_event_id: cause.clone(),
        occurred_at: *occurred_at,
        committed_at: *committed_at,
        payload: serde_json::from_value::<ChangePayload>(payload.clone())
            .map_err(|e| corrupt(e.to_string()))?,
    })
}

fn properties(change: &Change) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(header::SEQ.into(), AMQPValue::LongLongInt(change.seq));
    headers.insert(
        header::CHANGE_KIND.into(),
        AMQPValue::LongString(LongString::from(change.kind.as_str().as_bytes().to_vec())),
    );
    headers.insert(
        header::ORGANIZATION_ID.into(),
        AMQPValue::LongString(LongString::from(change.organization_id.as_bytes().to_vec())),
    );
    BasicProperties::default()
        .with_message_id(change.id.as_str().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_timestamp(u64::try_from(change.committed_at.timestamp()).unwrap_or(0))
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
        .select((
            c::seq,
            c::id,
            c::kind,
            c::organization_id,
            c::cause_event_id,
            c::occurred_at,
            c::committed_at,
            c::payload,
        ))
        .load(conn)
        .await?;
    let (Some(first), Some(last)) = (rows.as_slice().first(), rows.as_slice().last()) else {
        return Ok(None);
    };
    let (first_seq, last_seq) = (first.0, last.0);
    let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= batch;
    let select = started.elapsed();
    let mut bodies = Vec::with_capacity(rows.len());
    for row in &rows {
        let change = body(row)?;
        let bytes = serde_json::to_vec(&change).map_err(|e| RelayError::Corrupt {
            seq: change.seq,
            reason: e.to_string(),
        })?;
        bodies.push((change, bytes));
    }
    let outgoing = bodies.iter().map(|(change, bytes)| Outgoing {
        exchange,
        routing_key: change.kind.as_str(),
        body: bytes,
        properties: properties(change),
    });
    let mut pending = Vec::with_capacity(rows.len());
    for ((change, _), confirm) in bodies.iter().zip(start_all(channel, outgoing).await) {
        pending.push((change.seq, confirm?));
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
