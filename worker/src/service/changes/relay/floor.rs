//! The relay's stored floor: every change with `seq` at or below it is published. Marks cover a
//! prefix of `seq` (commit order), so the floor only rises; it is raised in the transaction of
//! the marks that complete a round, and a new leader starts its search for unpublished rows
//! from it along the primary key (no index names `published_at`: see the `relay_floor`
//! migration).

use crate::service::db::cached::cached;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// The stored floor (0 before any change was published).
pub async fn load(conn: &mut AsyncPgConnection) -> diesel::QueryResult<i64> {
    #[derive(diesel::QueryableByName)]
    struct Floor {
        #[diesel(sql_type = BigInt)]
        published_through: i64,
    }
    let floor: Floor = diesel::sql_query(
        "SELECT COALESCE((SELECT published_through FROM change_relay WHERE singleton), 0) \
         AS published_through",
    )
    .get_result(conn)
    .await?;
    Ok(floor.published_through)
}

/// Raises the stored floor to `through` (never lowers it).
pub async fn store(conn: &mut AsyncPgConnection, through: i64) -> diesel::QueryResult<()> {
    cached(diesel::sql_query(
        "INSERT INTO change_relay (singleton, published_through) VALUES (true, $1) \
         ON CONFLICT (singleton) DO UPDATE \
         SET published_through = GREATEST(change_relay.published_through, EXCLUDED.published_through), \
             updated_at = now()",
    )
    .bind::<BigInt, _>(through))
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts the changes not yet published (as `n`): the rows above the stored floor still
/// unmarked, found along the primary key. For tests, benchmarks and operators' checks.
pub const UNPUBLISHED_COUNT_SQL: &str = "SELECT count(*) AS n FROM changes \
     WHERE seq > COALESCE((SELECT published_through FROM change_relay), 0) \
       AND published_at IS NULL";
