//! The change feed's message contract: what the worker publishes to `{prefix}.changes` (routing
//! key = kind) for every net change it commits, and what applications read back from the stream
//! `{prefix}.changes.log`. The JSON Schema of the body is `docs/changes.schema.json`; the
//! contract is written out in `docs/changes.md`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Headers of every change message (besides `message_id` = the change id).
pub mod header {
    /// The change's `seq` (commit order), as a long integer.
    pub const SEQ: &str = "seq";
    pub const CHANGE_KIND: &str = "change-kind";
    pub const ORGANIZATION_ID: &str = "organization-id";
}

/// What changed. The wire names are the routing keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ChangeKind {
    /// A user became active for the first time.
    #[serde(rename = "user.provisioned")]
    UserProvisioned,
    /// A user that had been active and was deactivated is active again.
    #[serde(rename = "user.reactivated")]
    UserReactivated,
    /// Profile fields changed (the lifecycle did not).
    #[serde(rename = "user.updated")]
    UserUpdated,
    /// An active user was deactivated.
    #[serde(rename = "user.deprovisioned")]
    UserDeprovisioned,
    /// A provisioned user's personal data was erased (`HARD_DELETE`).
    #[serde(rename = "user.erased")]
    UserErased,
    #[serde(rename = "user.roles_changed")]
    UserRolesChanged,
    #[serde(rename = "user.groups_changed")]
    UserGroupsChanged,
    #[serde(rename = "group.created")]
    GroupCreated,
    #[serde(rename = "group.updated")]
    GroupUpdated,
    #[serde(rename = "group.deleted")]
    GroupDeleted,
    #[serde(rename = "directory.enabled")]
    DirectoryEnabled,
    #[serde(rename = "directory.disabled")]
    DirectoryDisabled,
    /// A kind this version does not know (a newer worker's): readers hand it on as "other" and
    /// ignore it by default. The worker never publishes it.
    #[serde(other)]
    Other,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 12] = [
        ChangeKind::UserProvisioned,
        ChangeKind::UserReactivated,
        ChangeKind::UserUpdated,
        ChangeKind::UserDeprovisioned,
        ChangeKind::UserErased,
        ChangeKind::UserRolesChanged,
        ChangeKind::UserGroupsChanged,
        ChangeKind::GroupCreated,
        ChangeKind::GroupUpdated,
        ChangeKind::GroupDeleted,
        ChangeKind::DirectoryEnabled,
        ChangeKind::DirectoryDisabled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ChangeKind::UserProvisioned => "user.provisioned",
            ChangeKind::UserReactivated => "user.reactivated",
            ChangeKind::UserUpdated => "user.updated",
            ChangeKind::UserDeprovisioned => "user.deprovisioned",
            ChangeKind::UserErased => "user.erased",
            ChangeKind::UserRolesChanged => "user.roles_changed",
            ChangeKind::UserGroupsChanged => "user.groups_changed",
            ChangeKind::GroupCreated => "group.created",
            ChangeKind::GroupUpdated => "group.updated",
            ChangeKind::GroupDeleted => "group.deleted",
            ChangeKind::DirectoryEnabled => "directory.enabled",
            ChangeKind::DirectoryDisabled => "directory.disabled",
            ChangeKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user's full state after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    pub directory_user_id: String,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    /// The identity provider's stable id of the user (Scalekit's `dp_id`), when known: link
    /// accounts on it, since an email can change. Absent from changes published before it existed.
    #[serde(default)]
    pub external_id: Option<String>,
    pub active: bool,
    /// Role names, sorted, each once (whether from Scalekit or from the role mapping).
    pub roles: Vec<String>,
    /// Group ids, sorted.
    pub groups: Vec<String>,
}

/// A group after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub directory_group_id: String,
    pub display_name: Option<String>,
    pub deleted: bool,
}

/// A directory after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryState {
    pub id: String,
    pub enabled: bool,
    pub provider: Option<String>,
    pub directory_type: Option<String>,
}

/// The part of a change that depends on its kind (what the outbox row stores as `payload`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChangePayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserState>,
    /// `user.roles_changed`: role names added and removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Vec<String>>,
    /// `user.groups_changed`: group ids joined and left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectoryState>,
}

/// One change as published: the body of a message on `{prefix}.changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Stable across re-publishes: consumers dedupe on it (or on `seq`).
    pub id: String,
    /// Commit order: strictly increasing in the order changes were committed (with gaps).
    pub seq: i64,
    pub kind: ChangeKind,
    pub organization_id: String,
    /// The event whose application made this change.
    pub cause_event_id: String,
    /// The cause's `occurred_at`.
    pub occurred_at: DateTime<Utc>,
    pub committed_at: DateTime<Utc>,
    #[serde(flatten)]
    pub payload: ChangePayload,
}

/// Every field of a [`Change`] but its payload, borrowed. It serializes exactly as those
/// fields of a `Change` do (a test holds them together), so a publisher that holds the payload
/// as JSON text can add its fields without building the payload again (the worker's relay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChangeHead<'a> {
    pub id: &'a str,
    pub seq: i64,
    pub kind: ChangeKind,
    pub organization_id: &'a str,
    pub cause_event_id: &'a str,
    pub occurred_at: &'a DateTime<Utc>,
    pub committed_at: &'a DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_their_wire_names() {
        for k in ChangeKind::ALL {
            assert_eq!(ChangeKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(ChangeKind::parse("user.created"), None);
        assert_eq!(ChangeKind::parse("other"), None, "never parsed from a name");
    }

    #[test]
    fn a_newer_kind_reads_as_other_and_older_users_without_external_id() {
        let body = r#"{"id":"chg_9","seq":9,"kind":"user.suspended","organization_id":"org_1",
            "cause_event_id":"evt_1","occurred_at":"2026-01-01T00:00:00Z",
            "committed_at":"2026-01-01T00:00:01Z","user":{"directory_user_id":"u_1",
            "email":null,"given_name":null,"family_name":null,"display_name":null,
            "active":true,"roles":[],"groups":[]},"suspended_until":"2026-02-01"}"#;
        let change: Change = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(change.kind, ChangeKind::Other);
        let user = change.payload.user.unwrap_or_else(|| panic!("user"));
        assert_eq!(user.external_id, None);
    }

    #[test]
    fn a_change_body_flattens_its_payload() {
        let change = Change {
            id: "chg_1".into(),
            seq: 7,
            kind: ChangeKind::UserRolesChanged,
            organization_id: "org_1".into(),
            cause_event_id: "evt_1".into(),
            occurred_at: DateTime::<Utc>::UNIX_EPOCH,
            committed_at: DateTime::<Utc>::UNIX_EPOCH,
            payload: ChangePayload {
                granted: Some(vec!["admin".into()]),
                revoked: Some(vec![]),
                ..ChangePayload::default()
            },
        };
        let v = serde_json::to_value(&change).unwrap_or_default();
        assert_eq!(v["kind"], "user.roles_changed");
        assert_eq!(v["granted"][0], "admin");
        assert!(v.get("user").is_none());
        let back: Change = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, change);
    }

    #[test]
    fn a_head_serializes_as_a_change_without_payload() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let change = Change {
            id: "chg_1".into(),
            seq: 9,
            kind: ChangeKind::GroupDeleted,
            organization_id: "org_1".into(),
            cause_event_id: "evt_1".into(),
            occurred_at: at,
            committed_at: at + chrono::Duration::seconds(1),
            payload: ChangePayload::default(),
        };
        let head = ChangeHead {
            id: &change.id,
            seq: change.seq,
            kind: change.kind,
            organization_id: &change.organization_id,
            cause_event_id: &change.cause_event_id,
            occurred_at: &change.occurred_at,
            committed_at: &change.committed_at,
        };
        assert_eq!(
            serde_json::to_string(&head).unwrap_or_default(),
            serde_json::to_string(&change).unwrap_or_default()
        );
    }
}
