//! One relay round: select the oldest unpublished rows after a cursor and start their
//! publishes, in `seq` order on one channel. The confirms are settled (and the rows marked
//! published) by the [`super::marker`], so the next round starts while this one's confirms are
//! still on their way.

use super::RelayError;
use crate::db::json::JsonbText;
use crate::db::schema::changes as c;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, PublisherConfirm};
use shared::amqp::{Outgoing, start_all};
use shared::changes::{ChangeHead, ChangeKind, header};
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
    JsonbText,
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

/// One message of a round: what its properties need, and its body.
struct Message<'a> {
    head: ChangeHead<'a>,
    body: Vec<u8>,
}

/// The message body of an outbox row: a [`shared::changes::Change`], whose payload fields sit
/// beside the others (`#[serde(flatten)]`). The stored payload (a JSON object written from a
/// `ChangePayload`) is spliced in as it is, so no JSON tree is built on the way.
fn message(row: &Row) -> Result<Message<'_>, RelayError> {
    let (seq, id, kind, org, cause, occurred_at, committed_at, payload) = row;
    let corrupt = |reason: String| RelayError::Corrupt { seq: *seq, reason };
    let head = ChangeHead {
        id,
        seq: *seq,
        kind: ChangeKind::parse(kind).ok_or_else(|| corrupt(format!("unknown kind {kind:?}")))?,
        organization_id: org,
        cause_event_id: cause,
        occurred_at,
        committed_at,
    };
    let fields = payload
        .as_str()
        .trim()
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .ok_or_else(|| corrupt("the payload is not a JSON object".to_owned()))?
        .trim();
    let mut body = serde_json::to_vec(&head).map_err(|e| corrupt(e.to_string()))?;
    if !fields.is_empty() {
        // `{…head…}` becomes `{…head…,…payload fields…}`.
        body.pop();
        body.push(b',');
        body.extend_from_slice(fields.as_bytes());
        body.push(b'}');
    }
    Ok(Message { head, body })
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
    let messages = rows.iter().map(message).collect::<Result<Vec<_>, _>>()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use shared::changes::{Change, ChangePayload, UserState};

    fn row(kind: &str, payload: JsonbText) -> Row {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        (
            42,
            "chg_1".into(),
            kind.into(),
            "org_1".into(),
            "evt_1".into(),
            at,
            at + chrono::Duration::milliseconds(1500),
            payload,
        )
    }

    fn decoded(row: &Row) -> Change {
        let m = message(row).unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_slice(&m.body).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_body_is_the_contract_change_with_the_stored_payload() {
        let payload = ChangePayload {
            user: Some(UserState {
                directory_user_id: "u_1".into(),
                email: Some("a\"b@example.com".into()),
                given_name: None,
                family_name: Some("Ünïcode".into()),
                display_name: None,
                external_id: Some("00u1".into()),
                active: true,
                roles: vec!["admin".into()],
                groups: vec![],
            }),
            granted: Some(vec!["admin".into()]),
            revoked: Some(vec![]),
            ..ChangePayload::default()
        };
        let stored = row(
            "user.roles_changed",
            JsonbText::of(&payload).unwrap_or_else(|e| panic!("{e}")),
        );
        let change = decoded(&stored);
        assert_eq!(
            change,
            Change {
                id: "chg_1".into(),
                seq: 42,
                kind: ChangeKind::UserRolesChanged,
                organization_id: "org_1".into(),
                cause_event_id: "evt_1".into(),
                occurred_at: stored.5,
                committed_at: stored.6,
                payload,
            }
        );
    }

    #[test]
    fn payloads_as_postgres_prints_them_and_empty_ones_splice_too() {
        let spaced = row(
            "user.groups_changed",
            JsonbText::unchecked(r#" {"left": ["g1"], "joined": []} "#),
        );
        let change = decoded(&spaced);
        assert_eq!(change.payload.left, Some(vec!["g1".to_owned()]));
        assert_eq!(change.payload.joined, Some(vec![]));
        let empty = decoded(&row("directory.enabled", JsonbText::unchecked("{}")));
        assert_eq!(empty.payload, ChangePayload::default());
        assert_eq!(empty.kind, ChangeKind::DirectoryEnabled);
    }

    #[test]
    fn rows_that_are_not_changes_are_corrupt() {
        for bad in [
            row("user.created", JsonbText::unchecked("{}")),
            row("user.updated", JsonbText::unchecked("[1]")),
            row("user.updated", JsonbText::unchecked("null")),
        ] {
            assert!(matches!(
                message(&bad),
                Err(RelayError::Corrupt { seq: 42, .. })
            ));
        }
    }
}
