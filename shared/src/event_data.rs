//! Typed `data` payloads of the directory events (`docs/scalekit.md`, "Events"). Unknown fields are ignored here; the
//! raw `data` object stays available on the envelope for the audit log and attributes column.

use crate::ids::{DirectoryGroupId, DirectoryId, DirectoryUserId, OrganizationId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `organization.directory_enabled` / `_disabled` (OAS DirectoryEventData).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct DirectoryData {
    pub id: DirectoryId,
    pub organization_id: OrganizationId,
    #[serde(default)]
    pub directory_type: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    /// Informational only: decide on the event type, not on this flag (`docs/scalekit.md`, "Events").
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_sync_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub environment_id: Option<String>,
}

/// A group reference inside a user event: the key is `name`, not `display_name`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct GroupRef {
    pub id: DirectoryGroupId,
    #[serde(default)]
    pub name: Option<String>,
}

/// A role computed by Scalekit's group→role mapping.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RoleRef {
    pub role_name: String,
}

/// `organization.directory.user_created` / `user_updated` (OAS DirectoryUserEventData).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct UserData {
    pub id: DirectoryUserId,
    pub organization_id: OrganizationId,
    /// Not in Scalekit's user webhooks (`docs/scalekit.md`, "Events"); set on directory-sync snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_id: Option<DirectoryId>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    /// Full name.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub dp_id: Option<String>,
    #[serde(default)]
    pub employee_id: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub cost_center: Option<String>,
    #[serde(default)]
    pub division: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub user_type: Option<String>,
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub zoneinfo: Option<String>,
    /// An IdP attribute string, not an organization id.
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub nickname: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub picture: Option<String>,
    #[serde(default)]
    pub address: Option<Value>,
    /// `None` when the event does not say; `Some(vec![])` when it says "no groups".
    #[serde(default)]
    pub groups: Option<Vec<GroupRef>>,
    #[serde(default)]
    pub roles: Option<Vec<RoleRef>>,
    #[serde(default)]
    pub custom_attributes: Option<Value>,
    #[serde(default)]
    pub raw_attributes: Option<Value>,
}

/// `organization.directory.user_deleted`: minimal fields (`docs/scalekit.md`, "Events").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct UserDeletedData {
    pub id: DirectoryUserId,
    pub organization_id: OrganizationId,
    #[serde(default)]
    pub dp_id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// `organization.directory.group_created` / `_updated` / `_deleted` (OAS DirectoryGroupEventData).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct GroupData {
    pub id: DirectoryGroupId,
    pub organization_id: OrganizationId,
    #[serde(default)]
    pub directory_id: Option<DirectoryId>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    /// Present on `group_deleted` in place of `external_id`.
    #[serde(default)]
    pub dp_id: Option<String>,
    #[serde(default)]
    pub raw_attributes: Option<Value>,
}
