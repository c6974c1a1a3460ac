//! Transaction-scoped advisory locks that serialize work on one entity across workers. Order:
//! groups before users, each set sorted, so two transactions never wait on each other in a cycle.

use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

pub fn user_key(org: &str, user: &str) -> String {
    format!("u/{org}/{user}")
}

pub fn group_key(org: &str, group: &str) -> String {
    format!("g/{org}/{group}")
}

pub fn directory_key(org: &str, dir: &str) -> String {
    format!("d/{org}/{dir}")
}

/// Exclusive lock until the end of the transaction.
pub async fn lock(conn: &mut AsyncPgConnection, key: &str) -> diesel::QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind::<Text, _>(key)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Shared lock until the end of the transaction.
pub async fn lock_shared(conn: &mut AsyncPgConnection, key: &str) -> diesel::QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))")
        .bind::<Text, _>(key)
        .execute(conn)
        .await
        .map(|_| ())
}
