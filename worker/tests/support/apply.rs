//! Driving the applier directly against a test database.

use super::{FIXTURES, fixture, parsed};
use std::sync::Arc;
use testkit::db::TestDb;
use worker::apply::{Applier, Outcome};
use worker::role_mapping::RoleMapping;

pub fn applier(db: &TestDb, mapping: RoleMapping) -> Applier {
    Applier::new(worker::db::pool(&db.url, 4), Arc::new(mapping), false)
}

pub async fn apply_all(a: &Applier, bodies: &[Vec<u8>]) -> Vec<Outcome> {
    let mut out = Vec::new();
    for b in bodies {
        let (meta, event) = parsed(b);
        out.push(a.apply(&meta, &event).await.unwrap());
    }
    out
}

/// Empties every table the applier writes.
pub async fn truncate(conn: &mut diesel_async::AsyncPgConnection) {
    use diesel_async::RunQueryDsl;
    diesel::sql_query(
        "TRUNCATE directories, directory_users, directory_groups, directory_group_memberships, user_roles, processed_events, audit_log",
    )
    .execute(conn)
    .await
    .unwrap();
}

/// The sample events in order, named: all of them, and all but `06_user_deleted` (the user
/// stays active, so memberships and roles matter).
pub fn corpora() -> [(&'static str, Vec<Vec<u8>>); 2] {
    let all: Vec<_> = FIXTURES.iter().map(|f| fixture(f)).collect();
    let active: Vec<_> = FIXTURES
        .iter()
        .filter(|f| !f.starts_with("06"))
        .map(|f| fixture(f))
        .collect();
    [("all", all), ("active", active)]
}
