//! Transaction-scoped advisory locks that serialize work on one entity across workers. One
//! routine takes them all, in one global order: shared group locks, then exclusive locks (each
//! set sorted), so two transactions never wait on each other in a cycle. A transaction takes
//! every lock it needs before it inserts its dedupe rows (see `docs/architecture.md`, "Apply").

use crate::service::db::cached::cached;
use diesel::sql_types::{Array, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::BTreeSet;

pub fn user_key(org: &str, user: &str) -> String {
    format!("u/{org}/{user}")
}

/// The organization's users as a whole: every transaction that writes users of the organization
/// takes it shared; a group deletion takes it exclusive instead of locking each member (a group
/// of 20,000 would need 20,000 entries in PostgreSQL's lock table). It sorts before every group
/// and user key, so it is always taken first.
pub fn org_users_key(org: &str) -> String {
    format!("0/u/{org}")
}

pub fn group_key(org: &str, group: &str) -> String {
    format!("g/{org}/{group}")
}

pub fn directory_key(org: &str, dir: &str) -> String {
    format!("d/{org}/{dir}")
}

/// The locks one transaction takes: shared ones (groups a user event refers to) and exclusive
/// ones (the entities it writes).
#[derive(Debug, Default)]
pub struct LockSet {
    pub shared: BTreeSet<String>,
    pub exclusive: BTreeSet<String>,
}

impl LockSet {
    /// Takes every lock until the end of the transaction: shared first, then exclusive, each in
    /// sorted order.
    pub async fn acquire(&self, conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
        for (keys, function) in [
            (&self.shared, "pg_advisory_xact_lock_shared"),
            (&self.exclusive, "pg_advisory_xact_lock"),
        ] {
            if keys.is_empty() {
                continue;
            }
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            cached(diesel::sql_query(format!(
                "SELECT count({function}(hashtextextended(k, 0))) FROM (SELECT k FROM unnest($1::text[]) AS k ORDER BY k) s"
            ))
            .bind::<Array<Text>, _>(keys))
            .execute(conn)
            .await?;
        }
        Ok(())
    }
}
