//! `roles plan` and `roles apply` over every active user, 500 at a time.

use super::plan::{Remap, remap};
use crate::service::apply::audit::{self, AuditRow};
use crate::service::apply::locks::{LockSet, org_users_key, user_key};
use crate::service::apply::outbox;
use crate::service::apply::outbox::plan::{Cause, user_changes};
use crate::service::apply::user::store::{FinalUser, Key, load_users, rewrite_sets};
use crate::service::db::{Pool, PoolError};
use crate::service::role_mapping::RoleMapping;
use diesel::sql_types::{Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

const CHUNK: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum RolesError {
    #[error("database")]
    Database(#[from] diesel::result::Error),
    #[error("database pool")]
    Pool(#[from] PoolError),
}

/// One user the mapping changes.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRemap {
    pub organization_id: String,
    pub directory_user_id: String,
    pub email: Option<String>,
    pub granted: Vec<String>,
    pub revoked: Vec<String>,
}

impl UserRemap {
    fn new(key: &Key, r: &Remap) -> Self {
        Self {
            organization_id: key.0.clone(),
            directory_user_id: key.1.clone(),
            email: r.after.profile.email.clone(),
            granted: r.granted.clone(),
            revoked: r.revoked.clone(),
        }
    }
}

/// The next active users after `after`, in key order (of `org` when given).
async fn next_keys(
    conn: &mut AsyncPgConnection,
    org: Option<&str>,
    after: &Key,
) -> diesel::QueryResult<Vec<Key>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        organization_id: String,
        #[diesel(sql_type = Text)]
        directory_user_id: String,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT organization_id, directory_user_id FROM directory_users \
         WHERE active AND ($1::text IS NULL OR organization_id = $1) \
           AND (organization_id, directory_user_id) > ($2, $3) \
         ORDER BY organization_id, directory_user_id LIMIT $4",
    )
    .bind::<Nullable<Text>, _>(org)
    .bind::<Text, _>(&after.0)
    .bind::<Text, _>(&after.1)
    .bind::<diesel::sql_types::BigInt, _>(CHUNK)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.organization_id, r.directory_user_id))
        .collect())
}

/// Who `mapping` would change; writes nothing.
pub async fn plan(
    pool: &Pool,
    mapping: &RoleMapping,
    org: Option<&str>,
) -> Result<Vec<UserRemap>, RolesError> {
    let mut conn = pool.get().await?;
    let mut out = Vec::new();
    let mut after: Key = (String::new(), String::new());
    loop {
        let keys = next_keys(&mut conn, org, &after).await?;
        let Some(last) = keys.last() else { break };
        after = last.clone();
        let stored = load_users(&mut conn, &keys).await?;
        for (key, user) in &stored {
            if let Some(r) = remap(&key.0, user, mapping) {
                out.push(UserRemap::new(key, &r));
            }
        }
    }
    Ok(out)
}

/// Recomputes the mapped roles of every active user (of `org` when given): per chunk, one
/// transaction that takes the users' locks, reads them, rewrites the roles that change, and
/// writes an audit row and a `user.roles_changed` change for each. `cause` names the run in
/// the change feed's `cause_event_id`.
pub async fn apply(
    pool: &Pool,
    mapping: &RoleMapping,
    org: Option<&str>,
    cause: &str,
) -> Result<Vec<UserRemap>, RolesError> {
    let mut out = Vec::new();
    let mut after: Key = (String::new(), String::new());
    let occurred_at = chrono::Utc::now();
    loop {
        let mut conn = pool.get().await?;
        let keys = next_keys(&mut conn, org, &after).await?;
        let Some(last) = keys.last() else { break };
        after = last.clone();
        let done = conn
            .transaction::<_, RolesError, _>(async |conn| {
                LockSet {
                    shared: keys.iter().map(|(o, _)| org_users_key(o)).collect(),
                    exclusive: keys.iter().map(|(o, u)| user_key(o, u)).collect(),
                }
                .acquire(conn)
                .await?;
                // Read under the locks: the stored state is what the remap applies to.
                let stored = load_users(conn, &keys).await?;
                let remaps: Vec<(&Key, &_, Remap)> = stored
                    .iter()
                    .filter_map(|(k, u)| remap(&k.0, u, mapping).map(|r| (k, u, r)))
                    .collect();
                let finals: Vec<FinalUser<'_>> = remaps
                    .iter()
                    .map(|(k, u, r)| FinalUser::new(k, &r.after, None, Some(u)))
                    .collect();
                rewrite_sets(conn, &finals).await?;
                let mut audits = Vec::new();
                let mut changes = Vec::new();
                for (k, u, r) in &remaps {
                    audits.push(AuditRow {
                        event_id: cause.to_owned(),
                        organization_id: k.0.clone(),
                        entity_type: "user",
                        entity_id: k.1.clone(),
                        action: "roles_remapped",
                        before: Some(serde_json::json!({ "roles": role_list(u) })),
                        after: serde_json::json!({
                            "roles": role_list(&r.after),
                            "granted": r.granted,
                            "revoked": r.revoked,
                        }),
                    });
                    changes.extend(user_changes(
                        Cause {
                            organization_id: &k.0,
                            event_id: cause,
                            occurred_at,
                        },
                        &k.1,
                        Some(u),
                        &r.after,
                    ));
                }
                audit::write(conn, &audits).await?;
                outbox::write(conn, &changes).await?;
                Ok(remaps
                    .iter()
                    .map(|(k, _, r)| UserRemap::new(k, r))
                    .collect::<Vec<_>>())
            })
            .await?;
        out.extend(done);
    }
    Ok(out)
}

fn role_list(u: &crate::service::apply::user::plan::StoredUser) -> Vec<String> {
    u.roles
        .iter()
        .map(|(r, s)| format!("{r} ({})", s.as_str()))
        .collect()
}
