//! A role mapping applied to stored users ([`Applier::remap_roles`]): the apply path's
//! transaction for a change that comes from the operator instead of an event. The users'
//! locks, their stored state read under them, the roles rewritten where the mapping changes
//! them, an audit row and a `user.roles_changed` change each, all in one transaction.

use super::plan::StoredUser;
use super::remap::{Remap, remap};
use super::store::{FinalUser, Key, load_users, rewrite_sets};
use crate::service::apply::audit::{self, AuditRow};
use crate::service::apply::locks::{LockSet, org_users_key, user_key};
use crate::service::apply::outbox::{self, plan::Cause, plan::user_changes};
use crate::service::apply::{Applier, ApplyError};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;

impl Applier {
    /// Recomputes the mapped roles of the users `keys` under this applier's mapping, in one
    /// transaction; the users it changed, with what changed. `cause` names the run in the
    /// change feed's `cause_event_id` and in the audit rows.
    pub async fn remap_roles(
        &self,
        keys: &[Key],
        cause: &str,
        occurred_at: DateTime<Utc>,
    ) -> Result<Vec<(Key, Remap)>, ApplyError> {
        let mapping = self.mapping();
        let mut conn = self.pool().get().await?;
        let (done, written) = conn
            .transaction::<_, ApplyError, _>(async |conn| {
                LockSet {
                    shared: keys.iter().map(|(o, _)| org_users_key(o)).collect(),
                    exclusive: keys.iter().map(|(o, u)| user_key(o, u)).collect(),
                }
                .acquire(conn)
                .await?;
                // Read under the locks: the stored state is what the remap applies to.
                let stored = load_users(conn, keys).await?;
                let remaps: Vec<(&Key, &StoredUser, Remap)> = stored
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
                let done: Vec<(Key, Remap)> =
                    remaps.into_iter().map(|(k, _, r)| (k.clone(), r)).collect();
                Ok((done, changes.len()))
            })
            .await?;
        self.changes_written(written);
        Ok(done)
    }
}

fn role_list(u: &StoredUser) -> Vec<String> {
    u.roles
        .iter()
        .map(|(r, s)| format!("{r} ({})", s.as_str()))
        .collect()
}
