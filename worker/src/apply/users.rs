//! Handlers for `user_created`, `user_updated` and `user_deleted`.

use super::audit::{self, AuditEntry};
use super::batch_store::{self, FinalUser};
use super::user_plan::{PlanContext, StoredUser, UserEvent, UserPlan, plan_user};
use super::version::Version;
use super::{Applied, ApplyContext, locks, user_store};
use diesel_async::AsyncPgConnection;
use serde_json::Value;
use shared::UserData;

pub async fn upsert(
    conn: &mut AsyncPgConnection,
    ctx: &ApplyContext<'_>,
    data: &UserData,
    raw: &Value,
    version: Version,
) -> diesel::QueryResult<Applied> {
    let org = ctx.organization_id;
    let user = data.id.as_str();
    let mut groups: Vec<&str> = data
        .groups
        .iter()
        .flatten()
        .map(|g| g.id.as_str())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    for g in &groups {
        locks::lock_shared(conn, &locks::group_key(org, g)).await?;
    }
    locks::lock(conn, &locks::user_key(org, user)).await?;
    let current = user_store::load(conn, org, user).await?;
    let deleted_groups = user_store::deleted_groups(conn, org, &groups).await?;
    let plan_ctx = PlanContext {
        organization_id: org,
        mapping: ctx.mapping,
        hard_delete: ctx.hard_delete,
        deleted_groups: &deleted_groups,
    };
    let plan = plan_user(
        UserEvent::Upsert(data),
        raw,
        version,
        current.as_ref(),
        &plan_ctx,
    );
    let directory_id = data.directory_id.as_ref().map(|d| d.as_str());
    write(conn, ctx, user, directory_id, current.as_ref(), plan).await
}

pub async fn delete(
    conn: &mut AsyncPgConnection,
    ctx: &ApplyContext<'_>,
    data: &shared::UserDeletedData,
    raw: &Value,
    version: Version,
) -> diesel::QueryResult<Applied> {
    let org = ctx.organization_id;
    let user = data.id.as_str();
    locks::lock(conn, &locks::user_key(org, user)).await?;
    let current = user_store::load(conn, org, user).await?;
    let none = Default::default();
    let plan_ctx = PlanContext {
        organization_id: org,
        mapping: ctx.mapping,
        hard_delete: ctx.hard_delete,
        deleted_groups: &none,
    };
    let plan = plan_user(
        UserEvent::Delete(data),
        raw,
        version,
        current.as_ref(),
        &plan_ctx,
    );
    write(conn, ctx, user, None, current.as_ref(), plan).await
}

async fn write(
    conn: &mut AsyncPgConnection,
    ctx: &ApplyContext<'_>,
    user: &str,
    directory_id: Option<&str>,
    current: Option<&StoredUser>,
    plan: UserPlan,
) -> diesel::QueryResult<Applied> {
    let UserPlan::Apply(change) = plan else {
        return Ok(Applied::Stale);
    };
    let key = (ctx.organization_id.to_owned(), user.to_owned());
    let state = change.applied_to(current);
    batch_store::write_users(
        conn,
        &[FinalUser {
            key: &key,
            state: &state,
            directory_id,
        }],
    )
    .await?;
    audit::record(
        conn,
        AuditEntry {
            event_id: ctx.event_id,
            organization_id: ctx.organization_id,
            entity_type: "user",
            entity_id: user,
            action: change.action,
            before: change.before.clone(),
            after: Some(change.after.clone()),
        },
    )
    .await?;
    Ok(Applied::Changed)
}
