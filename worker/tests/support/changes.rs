//! The `changes` outbox as the change-feed suites read it.

use testkit::db::TestDb;

/// An outbox row: what it is, what caused it, and the payload's keys.
#[derive(diesel::QueryableByName, Debug)]
pub struct Row {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub seq: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub kind: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub organization_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub cause_event_id: String,
    /// The payload's top-level keys, as PostgreSQL reads the stored `jsonb`.
    #[diesel(sql_type = diesel::sql_types::Array<diesel::sql_types::Text>)]
    pub keys: Vec<String>,
}

/// Every outbox row, in `seq` order.
pub async fn outbox(db: &TestDb) -> Vec<Row> {
    use diesel_async::RunQueryDsl;
    diesel::sql_query(
        "SELECT seq, kind, organization_id, cause_event_id, \
         ARRAY(SELECT jsonb_object_keys(payload) ORDER BY 1) AS keys FROM changes ORDER BY seq",
    )
    .load(&mut db.connect().await)
    .await
    .unwrap()
}
