//! Pure decisions for group and directory events: versioned upserts with soft deletion.

use crate::service::apply::version::Version;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared::{DirectoryData, GroupData};

/// A group as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredGroup {
    pub version: Version,
    pub display_name: Option<String>,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupChange {
    pub action: &'static str,
    pub version: Version,
    pub directory_id: Option<String>,
    pub display_name: Option<String>,
    pub external_id: Option<String>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub attributes: Value,
    /// A deletion removes the group's memberships (and the roles mapped from it).
    pub removes_memberships: bool,
    pub before: Option<Value>,
    pub after: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GroupPlan {
    Stale,
    Apply(Box<GroupChange>),
}

fn group_summary(display_name: Option<&str>, deleted: bool) -> Value {
    json!({ "display_name": display_name, "deleted": deleted })
}

/// Plans `group_created` / `group_updated` (`deleted = false`) or `group_deleted`.
pub fn plan_group(
    data: &GroupData,
    raw_data: &Value,
    deleted: bool,
    version: Version,
    current: Option<&StoredGroup>,
) -> GroupPlan {
    if !version.supersedes(current.map(|c| &c.version)) {
        return GroupPlan::Stale;
    }
    let deleted_at = if deleted {
        current.and_then(|c| c.deleted_at).or(Some(version.at))
    } else {
        None
    };
    let action = match (current, deleted) {
        (_, true) => "deleted",
        (None, false) => "created",
        (Some(c), false) if c.deleted_at.is_some() => "restored",
        (Some(_), false) => "updated",
    };
    let display_name = data
        .display_name
        .clone()
        .or_else(|| current.and_then(|c| c.display_name.clone()));
    GroupPlan::Apply(Box::new(GroupChange {
        action,
        directory_id: data.directory_id.as_ref().map(|d| d.as_str().to_owned()),
        external_id: data.external_id.clone().or_else(|| data.dp_id.clone()),
        after: group_summary(display_name.as_deref(), deleted),
        before: current.map(|c| group_summary(c.display_name.as_deref(), c.deleted_at.is_some())),
        display_name,
        deleted_at,
        attributes: raw_data.clone(),
        removes_memberships: deleted,
        version,
    }))
}

/// A directory as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDirectory {
    pub version: Version,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryChange {
    pub action: &'static str,
    pub version: Version,
    pub enabled: bool,
    pub provider: Option<String>,
    pub directory_type: Option<String>,
    pub before: Option<Value>,
    pub after: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DirectoryPlan {
    Stale,
    Apply(Box<DirectoryChange>),
}

/// Plans `directory_enabled` (`enabled = true`) or `directory_disabled`. The event type decides,
/// not the payload's `enabled` flag (`docs/scalekit.md`, "Events").
pub fn plan_directory(
    data: &DirectoryData,
    enabled: bool,
    version: Version,
    current: Option<&StoredDirectory>,
) -> DirectoryPlan {
    if !version.supersedes(current.map(|c| &c.version)) {
        return DirectoryPlan::Stale;
    }
    DirectoryPlan::Apply(Box::new(DirectoryChange {
        action: if enabled { "enabled" } else { "disabled" },
        version,
        enabled,
        provider: data.provider.clone(),
        directory_type: data.directory_type.clone(),
        before: current.map(|c| json!({ "enabled": c.enabled })),
        after: json!({ "enabled": enabled }),
    }))
}
