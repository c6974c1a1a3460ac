//! `roles plan` and `roles apply` over every active user, 500 at a time: `plan` reads and
//! decides ([`remap`]); `apply` hands each chunk to the apply path.

use crate::service::apply::user::remap::{Remap, remap};
use crate::service::apply::user::store::{Key, load_users};
use crate::service::apply::{Applier, ApplyError};
use crate::service::db::{Pool, PoolError};
use crate::service::role_mapping::RoleMapping;
use diesel::sql_types::{Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

const CHUNK: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum RolesError {
    #[error("database")]
    Database(#[from] diesel::result::Error),
    #[error("database pool")]
    Pool(#[from] PoolError),
    #[error("applying the mapping")]
    Apply(#[from] ApplyError),
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

/// Recomputes the mapped roles of every active user (of `org` when given), 500 users a
/// transaction, through the apply path ([`Applier::remap_roles`]: the users' locks, audit rows
/// and `user.roles_changed` changes in the same transaction). `cause` names the run in the
/// change feed's `cause_event_id`.
pub async fn apply(
    applier: &Applier,
    org: Option<&str>,
    cause: &str,
) -> Result<Vec<UserRemap>, RolesError> {
    let mut out = Vec::new();
    let mut after: Key = (String::new(), String::new());
    let occurred_at = chrono::Utc::now();
    loop {
        let keys = {
            let mut conn = applier.pool().get().await?;
            next_keys(&mut conn, org, &after).await?
        };
        let Some(last) = keys.last() else { break };
        after = last.clone();
        let done = applier.remap_roles(&keys, cause, occurred_at).await?;
        out.extend(done.iter().map(|(k, r)| UserRemap::new(k, r)));
    }
    Ok(out)
}
