//! Pure: Directory API objects → snapshot event bodies (the same envelope webhooks use), with
//! deterministic event ids (same content → same id → deduped by the worker), and the
//! classification a sync reports.

use super::model::{DirectoryGroup, DirectoryUser};
use crate::service::apply::outbox::plan::user_differs;
use crate::service::apply::user::plan::{PlanContext, StoredUser, UserEvent, UserPlan, plan_user};
use crate::service::apply::version::Version;
use crate::service::role_mapping::RoleMapping;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::EventType;
use shared::{Event, WebhookEvent};
use std::collections::BTreeSet;

/// Environment id written on snapshot events (they do not come from a Scalekit environment).
pub const SYNC_ENVIRONMENT: &str = "env_sync";

/// `evt_sync_<first 24 hex of sha256(parts)>`.
pub fn event_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    format!("evt_sync_{}", &hex::encode(h.finalize())[..24])
}

fn envelope(
    id: String,
    event_type: EventType,
    object: &str,
    org: &str,
    at: DateTime<Utc>,
    data: Value,
) -> Vec<u8> {
    let body = json!({
        "spec_version": "1",
        "id": id,
        "type": event_type.as_str(),
        "occurred_at": at.to_rfc3339_opts(SecondsFormat::Nanos, true),
        "environment_id": SYNC_ENVIRONMENT,
        "organization_id": org,
        "object": object,
        "data": data,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A listed user as a `user_updated` snapshot: listed means active.
pub fn user_event(
    org: &str,
    dir: &str,
    user: &DirectoryUser,
    read_at: DateTime<Utc>,
) -> (String, Vec<u8>) {
    let groups: Vec<Value> = user
        .groups
        .iter()
        .filter(|g| !g.id.is_empty())
        .map(|g| json!({ "id": g.id, "name": g.display_name }))
        .collect();
    let data = json!({
        "id": user.id,
        "organization_id": org,
        "directory_id": dir,
        "active": true,
        "email": user.email,
        "given_name": user.given_name,
        "family_name": user.family_name,
        "preferred_username": user.preferred_username,
        "emails": user.emails,
        "groups": groups,
        "updated_at": user.updated_at,
        "user_detail": user.user_detail,
    });
    let id = event_id(&["user", org, dir, &data.to_string()]);
    let body = envelope(
        id.clone(),
        EventType::UserUpdated,
        "DirectoryUser",
        org,
        read_at,
        data,
    );
    (id, body)
}

/// A listed group as a `group_updated` snapshot.
pub fn group_event(
    org: &str,
    dir: &str,
    group: &DirectoryGroup,
    read_at: DateTime<Utc>,
) -> (String, Vec<u8>) {
    let data = json!({
        "id": group.id,
        "organization_id": org,
        "directory_id": dir,
        "display_name": group.display_name,
        "updated_at": group.updated_at,
        "raw_attributes": group.group_detail,
    });
    let id = event_id(&["group", org, dir, &data.to_string()]);
    let body = envelope(
        id.clone(),
        EventType::GroupUpdated,
        "DirectoryGroup",
        org,
        read_at,
        data,
    );
    (id, body)
}

/// A stored user the complete listing did not contain, as a `user_deleted` snapshot. The id
/// includes the stored version so a later deactivation of the same user is a new event.
pub fn deactivation_event(
    org: &str,
    dir: &str,
    user_id: &str,
    stored_version: &str,
    at: DateTime<Utc>,
) -> (String, Vec<u8>) {
    let data = json!({ "id": user_id, "organization_id": org, "directory_id": dir });
    let id = event_id(&["deactivate", org, dir, user_id, stored_version]);
    let body = envelope(
        id.clone(),
        EventType::UserDeleted,
        "DirectoryUser",
        org,
        at,
        data,
    );
    (id, body)
}

/// What a listed user means for the stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

/// What a listed user's snapshot event (`body`, as [`user_event`] wrote it) would do to the
/// stored user, decided as the apply path decides it: the plan of that event
/// ([`plan_user`]) and whether the user it leaves differs ([`user_differs`]). A sync's report
/// thus counts what the apply will change. Roles are left out (the mapping decides them, not
/// the directory).
pub fn classify(org: &str, stored: Option<&StoredUser>, body: &[u8]) -> Change {
    let Ok(event) = WebhookEvent::parse(body) else {
        return Change::Updated;
    };
    let (Event::UserUpdated(data) | Event::UserCreated(data)) = &event.event else {
        return Change::Updated;
    };
    let no_roles = RoleMapping::default();
    let ctx = PlanContext {
        organization_id: org,
        mapping: &no_roles,
        hard_delete: false,
        deleted_groups: &BTreeSet::new(),
    };
    let envelope = &event.envelope;
    let version = Version::new(envelope.occurred_at, envelope.id.as_str());
    match plan_user(
        UserEvent::Upsert(data),
        &envelope.data,
        version,
        stored,
        &ctx,
    ) {
        UserPlan::Stale => Change::Unchanged,
        UserPlan::Apply(change) => match stored {
            None => Change::Created,
            Some(s) if user_differs(Some(s), &change.applied_to(Some(s))) => Change::Updated,
            Some(_) => Change::Unchanged,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(email: &str) -> DirectoryUser {
        DirectoryUser {
            id: "diruser_1".into(),
            email: Some(email.into()),
            preferred_username: None,
            given_name: Some("A".into()),
            family_name: None,
            updated_at: Some("2025-01-01T00:00:00Z".into()),
            emails: vec![],
            groups: vec![DirectoryGroup {
                id: "dirgroup_1".into(),
                display_name: Some("Eng".into()),
                total_users: None,
                updated_at: None,
                group_detail: None,
            }],
            user_detail: None,
        }
    }

    #[test]
    fn same_content_same_id_and_a_valid_event() {
        let t1 = Utc::now();
        let t2 = t1 + chrono::Duration::seconds(60);
        let (a, body) = user_event("org_1", "dir_1", &user("a@x"), t1);
        let (b, _) = user_event("org_1", "dir_1", &user("a@x"), t2);
        let (c, _) = user_event("org_1", "dir_1", &user("b@x"), t1);
        assert_eq!(a, b, "read time is not part of the id");
        assert_ne!(a, c);
        let parsed = WebhookEvent::parse(&body).unwrap();
        let Event::UserUpdated(u) = parsed.event else {
            panic!("variant")
        };
        assert_eq!(u.active, Some(true));
        assert_eq!(u.directory_id.unwrap().as_str(), "dir_1");
        assert_eq!(u.groups.unwrap()[0].name.as_deref(), Some("Eng"));
        let (d1, body) = deactivation_event("org_1", "dir_1", "diruser_1", "evt_1", t1);
        let (d2, _) = deactivation_event("org_1", "dir_1", "diruser_1", "evt_2", t1);
        assert_ne!(d1, d2);
        assert!(matches!(
            WebhookEvent::parse(&body).unwrap().event,
            Event::UserDeleted(_)
        ));
        let (_, body) = group_event("org_1", "dir_1", &user("a@x").groups[0], t1);
        assert!(matches!(
            WebhookEvent::parse(&body).unwrap().event,
            Event::GroupUpdated(_)
        ));
    }

    #[test]
    fn classification_is_the_apply_paths_decision() {
        let t1 = Utc::now();
        let t2 = t1 + chrono::Duration::seconds(60);
        let (_, first) = user_event("org_1", "dir_1", &user("a@x"), t1);
        assert_eq!(classify("org_1", None, &first), Change::Created);
        // The user as the apply path stores it from that snapshot.
        let stored = applied(&first, None);
        let (_, same) = user_event("org_1", "dir_1", &user("a@x"), t2);
        assert_eq!(classify("org_1", Some(&stored), &same), Change::Unchanged);
        let (_, other) = user_event("org_1", "dir_1", &user("b@x"), t2);
        assert_eq!(classify("org_1", Some(&stored), &other), Change::Updated);
        let inactive = StoredUser {
            active: false,
            ..stored.clone()
        };
        assert_eq!(classify("org_1", Some(&inactive), &same), Change::Updated);
        // Older than what is stored: the apply path changes nothing.
        let newer = applied(&other, Some(&stored));
        assert_eq!(classify("org_1", Some(&newer), &first), Change::Unchanged);
    }

    fn applied(body: &[u8], stored: Option<&StoredUser>) -> StoredUser {
        let event = WebhookEvent::parse(body).unwrap();
        let Event::UserUpdated(data) = &event.event else {
            panic!("not a user_updated")
        };
        let mapping = RoleMapping::default();
        let ctx = PlanContext {
            organization_id: "org_1",
            mapping: &mapping,
            hard_delete: false,
            deleted_groups: &BTreeSet::new(),
        };
        let version = Version::new(event.envelope.occurred_at, event.envelope.id.as_str());
        match plan_user(
            UserEvent::Upsert(data),
            &event.envelope.data,
            version,
            stored,
            &ctx,
        ) {
            UserPlan::Apply(c) => c.applied_to(stored),
            UserPlan::Stale => panic!("stale"),
        }
    }
}
