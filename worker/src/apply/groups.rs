//! Handlers for group and directory events: the catalogue, with soft deletion.

use super::audit::{self, AuditEntry};
use super::catalog_plan::{DirectoryPlan, GroupPlan, plan_directory, plan_group};
use super::user_plan::{diff_roles, mapped_roles};
use super::version::Version;
use super::{Applied, ApplyContext, catalog_store, locks, user_store};
use diesel_async::AsyncPgConnection;
use serde_json::{Value, json};
use shared::{DirectoryData, GroupData};

pub async fn group(
    conn: &mut AsyncPgConnection,
    ctx: &ApplyContext<'_>,
    data: &GroupData,
    raw: &Value,
    deleted: bool,
    version: Version,
) -> diesel::QueryResult<Applied> {
    let org = ctx.organization_id;
    let group = data.id.as_str();
    // `Applier::apply` holds the group's lock already.
    let current = catalog_store::load_group(conn, org, group).await?;
    let GroupPlan::Apply(change) = plan_group(data, raw, deleted, version, current.as_ref()) else {
        return Ok(Applied::Stale);
    };
    catalog_store::write_group(conn, org, group, &change).await?;
    audit::record(
        conn,
        AuditEntry {
            event_id: ctx.event_id,
            organization_id: org,
            entity_type: "group",
            entity_id: group,
            action: change.action,
            before: change.before.clone(),
            after: Some(change.after.clone()),
        },
    )
    .await?;
    if change.removes_memberships {
        // Deleting a group never leaves a membership or a role mapped from it behind.
        for user in catalog_store::group_members(conn, org, group).await? {
            locks::lock(conn, &locks::user_key(org, &user)).await?;
            catalog_store::remove_membership(conn, org, &user, group).await?;
            let memberships = user_store::load_memberships(conn, org, &user).await?;
            let roles = user_store::load_roles(conn, org, &user).await?;
            let mut desired: super::user_plan::RoleSet = roles
                .iter()
                .filter(|(_, s)| *s == super::user_plan::RoleSource::Scalekit)
                .cloned()
                .collect();
            desired.extend(mapped_roles(org, ctx.mapping, &memberships));
            let (added, removed) = diff_roles(&roles, &desired);
            user_store::write_role_diff(conn, org, &user, &added, &removed).await?;
            audit::record(
                conn,
                AuditEntry {
                    event_id: ctx.event_id,
                    organization_id: org,
                    entity_type: "user",
                    entity_id: &user,
                    action: "group_removed",
                    before: None,
                    after: Some(json!({
                        "group": group,
                        "roles_removed": removed.iter().map(|(r, _)| r).collect::<Vec<_>>(),
                    })),
                },
            )
            .await?;
        }
    }
    Ok(Applied::Changed)
}

pub async fn directory(
    conn: &mut AsyncPgConnection,
    ctx: &ApplyContext<'_>,
    data: &DirectoryData,
    enabled: bool,
    version: Version,
) -> diesel::QueryResult<Applied> {
    let org = ctx.organization_id;
    let dir = data.id.as_str();
    let current = catalog_store::load_directory(conn, org, dir).await?;
    let DirectoryPlan::Apply(change) = plan_directory(data, enabled, version, current.as_ref())
    else {
        return Ok(Applied::Stale);
    };
    catalog_store::write_directory(conn, org, dir, &change).await?;
    audit::record(
        conn,
        AuditEntry {
            event_id: ctx.event_id,
            organization_id: org,
            entity_type: "directory",
            entity_id: dir,
            action: change.action,
            before: change.before.clone(),
            after: Some(change.after.clone()),
        },
    )
    .await?;
    Ok(Applied::Changed)
}
