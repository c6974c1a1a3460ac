//! Driving the applier directly against a test database.

use super::{FIXTURES, fixture, parsed};
use std::sync::Arc;
use testkit::db::TestDb;
use worker::service::apply::{Applier, Outcome};
use worker::service::role_mapping::RoleMapping;

pub fn applier(db: &TestDb, mapping: RoleMapping) -> Applier {
    Applier::new(
        worker::service::db::pool(&db.url, 4),
        Arc::new(mapping),
        false,
    )
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

/// The tables of the database with rows whose text matches the regular expression `pattern`
/// (`table (rows)`, sorted): where a user's personal data still is.
pub async fn rows_naming(db: &TestDb, pattern: &str) -> Vec<String> {
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Table {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let mut conn = db.connect().await;
    let tables: Vec<Table> = diesel::sql_query(
        "SELECT table_name AS name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert!(tables.len() > 10, "every table is read");
    let mut naming = Vec::new();
    for t in tables {
        let n = db
            .count(&format!(
                "SELECT count(*) AS n FROM \"{}\" t WHERE t::text ~ '{pattern}'",
                t.name
            ))
            .await;
        if n > 0 {
            naming.push(format!("{} ({n})", t.name));
        }
    }
    naming.sort();
    naming
}
