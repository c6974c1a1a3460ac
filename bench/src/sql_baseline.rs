//! B_sql: what PostgreSQL can do here without our code in the way, as direct SQL: the user
//! upserts alone (batched and one per commit), and the same rows the worker writes for each
//! event (dedupe row + user upsert + audit row + its change-feed rows, and a new user's
//! membership and role), batched like the worker batches (`crate::sql_same_writes`).

use crate::cpu::{self, CpuUse};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct SqlResult {
    pub batched_rows_per_s: f64,
    pub batch_size: usize,
    pub single_row_commits_per_s: f64,
    /// Events/s when each event writes what the worker writes for it (dedupe + user + audit,
    /// plus membership + role for a user's first event).
    pub same_writes_events_per_s: f64,
    pub same_writes_batch: usize,
    /// CPU per event of PostgreSQL and of this process (the SQL client) while writing them.
    pub same_writes_cpu: CpuUse,
}

const USERS_PREFIX: &str = "INSERT INTO directory_users (organization_id, directory_user_id, email, given_name, family_name, display_name, preferred_username, active, attributes, source_updated_at, source_event_id) VALUES ";
const USERS_SUFFIX: &str = " ON CONFLICT (organization_id, directory_user_id) DO UPDATE SET email = excluded.email, given_name = excluded.given_name, family_name = excluded.family_name, display_name = excluded.display_name, attributes = excluded.attributes, source_updated_at = excluded.source_updated_at, source_event_id = excluded.source_event_id, updated_at = now()";

fn padding() -> String {
    serde_json::json!({"padding": "x".repeat(560)})
        .to_string()
        .replace('\'', "''")
}

fn user_row(i: usize, users: usize, attrs: &str) -> String {
    let u = i % users;
    format!(
        "('org_sql', 'diruser_{u:07}', 'user{i}@example.com', 'Bench', 'User{i}', 'Bench User{i}', 'u{i}', true, '{attrs}'::jsonb, now(), 'evt_sql_{i:09}')"
    )
}

async fn in_transaction(conn: &mut AsyncPgConnection, statements: &[String]) -> anyhow::Result<()> {
    diesel::sql_query("BEGIN").execute(conn).await?;
    for s in statements {
        diesel::sql_query(s.as_str()).execute(conn).await?;
    }
    diesel::sql_query("COMMIT").execute(conn).await?;
    Ok(())
}

/// Runs the three baselines against `db_url` (a migrated database), cleaning up after itself.
pub async fn sql_baselines(
    db_url: &str,
    rows: usize,
    batch: usize,
    single: usize,
    events: usize,
    event_batch: usize,
) -> anyhow::Result<SqlResult> {
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    let attrs = padding();
    // 1. User upserts alone, `batch` rows a statement and transaction.
    let started = Instant::now();
    let mut i = 0;
    while i < rows {
        let values: Vec<String> = (i..(i + batch).min(rows))
            .map(|i| user_row(i, rows, &attrs))
            .collect();
        in_transaction(
            &mut conn,
            &[format!("{USERS_PREFIX}{}{USERS_SUFFIX}", values.join(","))],
        )
        .await?;
        i += batch;
    }
    let batched = rows as f64 / started.elapsed().as_secs_f64();
    // 2. One user upsert per commit.
    let started = Instant::now();
    for i in 0..single {
        let sql = format!(
            "{USERS_PREFIX}{}{USERS_SUFFIX}",
            user_row(rows + i, rows + single, &attrs)
        );
        diesel::sql_query(sql).execute(&mut conn).await?;
    }
    let single_rate = single as f64 / started.elapsed().as_secs_f64();
    diesel::sql_query("DELETE FROM directory_users WHERE organization_id = 'org_sql'")
        .execute(&mut conn)
        .await?;
    // 3. What the worker writes per event, `event_batch` events a transaction, over a user
    //    population half the event count (each user updated about twice, as in the drain).
    let users = (events / 2).max(1);
    let watch = cpu::Watched::new()
        .with_all("postgres", &cpu::find_processes("postgres"))
        .with("sql client", Some(std::process::id()));
    let attrs_json: serde_json::Value = serde_json::json!({"padding": "x".repeat(560)});
    let sample = watch.start();
    let started = Instant::now();
    let mut i = 0;
    while i < events {
        let range = i..(i + event_batch).min(events);
        crate::sql_same_writes::write_batch(&mut conn, range, users, &attrs_json).await?;
        i += event_batch;
    }
    let same_writes = events as f64 / started.elapsed().as_secs_f64();
    let same_writes_cpu = sample.finish(events);
    for table in [
        "directory_users",
        "processed_events",
        "audit_log",
        "changes",
        "directory_group_memberships",
        "user_roles",
    ] {
        diesel::sql_query(format!(
            "DELETE FROM {table} WHERE organization_id = 'org_sql'"
        ))
        .execute(&mut conn)
        .await?;
    }
    Ok(SqlResult {
        batched_rows_per_s: batched,
        batch_size: batch,
        single_row_commits_per_s: single_rate,
        same_writes_events_per_s: same_writes,
        same_writes_batch: event_batch,
        same_writes_cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_rows_are_well_formed_sql_values() {
        let attrs = padding();
        let u = user_row(7, 5, &attrs);
        assert!(u.starts_with("('org_sql', 'diruser_0000002'"), "{u}");
    }
}
