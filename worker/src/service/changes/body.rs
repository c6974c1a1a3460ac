//! An outbox row as the contract's JSON: what the relay publishes and what the pull API
//! answers, built the one way (`docs/changes.md`, "Body").

use crate::service::db::json::JsonbText;
use crate::service::db::schema::changes as c;
use chrono::{DateTime, Utc};
use shared::changes::{ChangeHead, ChangeKind};

/// An outbox row as the relay and the pull API read it ([`COLUMNS`]).
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

/// The columns of a [`Row`], for `select`.
pub const COLUMNS: (
    c::seq,
    c::id,
    c::kind,
    c::organization_id,
    c::cause_event_id,
    c::occurred_at,
    c::committed_at,
    c::payload,
) = (
    c::seq,
    c::id,
    c::kind,
    c::organization_id,
    c::cause_event_id,
    c::occurred_at,
    c::committed_at,
    c::payload,
);

/// An outbox row that is not a change (an unknown kind, a payload that is not an object).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("outbox row {seq} is not a change: {reason}")]
pub struct Corrupt {
    pub seq: i64,
    pub reason: String,
}

/// A change as it leaves the outbox: its head (what message properties need) and its body.
pub struct Message<'a> {
    pub head: ChangeHead<'a>,
    pub body: Vec<u8>,
}

/// The message body of an outbox row: a [`shared::changes::Change`], whose payload fields sit
/// beside the others (`#[serde(flatten)]`). The stored payload (a JSON object written from a
/// `ChangePayload`) is spliced in as it is, so no JSON tree is built on the way.
pub fn message(row: &Row) -> Result<Message<'_>, Corrupt> {
    let (seq, id, kind, org, cause, occurred_at, committed_at, payload) = row;
    let corrupt = |reason: String| Corrupt { seq: *seq, reason };
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
            assert!(matches!(message(&bad), Err(Corrupt { seq: 42, .. })));
        }
    }
}
