//! Handlers for `user_created`, `user_updated` and `user_deleted`.

use super::audit::{self, AuditEntry};
use super::batch_store::{self, FinalUser};
use super::user_plan::{PlanContext, StoredUser, UserEvent, UserPlan, plan_user};
use super::version::Version;
use super::{Applied, ApplyContext, user_store};
use diesel_async::AsyncPgConnection;
use serde_json::Value;
use shared::UserData;
use std::collections::BTreeSet;

pub async fn upsert(
    conn: &mut AsyncPgConnection,
    ctx: &ApplyContext<'_>,
    data: &UserData,
    raw: &Value,
    version: Version,
) -> diesel::QueryResult<Applied> {
    let groups: Vec<&str> = data
        .groups
        .iter()
        .flatten()
        .map(|g| g.id.as_str())
        .collect();
    let deleted = user_store::deleted_groups(conn, ctx.organization_id, &groups).await?;
    let directory_id = data.directory_id.as_ref().map(|d| d.as_str());
    apply(
        conn,
        ctx,
        data.id.as_str(),
        UserEvent::Upsert(data),
        raw,
        version,
        &deleted,
        directory_id,
    )
    .await
}

pub async fn delete(
    conn: &mut AsyncPgConnection,
    ctx: &ApplyContext<'_>,
    data: &shared::UserDeletedData,
    raw: &Value,
    version: Version,
) -> diesel::QueryResult<Applied> {
    let none = BTreeSet::new();
    apply(
        conn,
        ctx,
        data.id.as_str(),
        UserEvent::Delete(data),
        raw,
        version,
        &none,
        None,
    )
    .await
}

/// Load, plan, write. The caller (`Applier::apply`) already holds the entity locks.
#[allow(clippy::too_many_arguments)]
async fn apply(
    conn: &mut AsyncPgConnection,
    ctx: &ApplyContext<'_>,
    user: &str,
    event: UserEvent<'_>,
    raw: &Value,
    version: Version,
    deleted_groups: &BTreeSet<String>,
    directory_id: Option<&str>,
) -> diesel::QueryResult<Applied> {
    let current = user_store::load(conn, ctx.organization_id, user).await?;
    let plan_ctx = PlanContext {
        organization_id: ctx.organization_id,
        mapping: ctx.mapping,
        hard_delete: ctx.hard_delete,
        deleted_groups,
    };
    let plan = plan_user(event, raw, version, current.as_ref(), &plan_ctx);
    write(conn, ctx, user, directory_id, current.as_ref(), plan).await
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
    batch_store::write_users(conn, &[FinalUser::new(&key, &state, directory_id, current)]).await?;
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
