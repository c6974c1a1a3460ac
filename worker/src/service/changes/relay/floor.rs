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

/// The one count of the relay's backlog: the changes above the floor (`$1`, or the stored one
/// when `$1` is NULL) still unpublished, found along the primary key's range, as `n`; and how
/// long the oldest of them has waited, in seconds, as `lag`. The leader's gauges, `worker
/// status`, the tests and the bench all read it. Counting `published_at IS NULL` over the whole
/// table instead would read every row kept for retention; when a partial index of unpublished
/// rows answered it, the count walked every dead entry the marks left until vacuum and held the
/// relay's loop (commit → published p99 690 ms at 1471 webhooks/s over a minute, against 60 ms
/// over 8 s).
pub const BACKLOG_SQL: &str = "SELECT count(*) AS n, \
     COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(committed_at))::float8, 0) AS lag \
     FROM changes \
     WHERE seq > COALESCE($1::bigint, (SELECT published_through FROM change_relay), 0) \
       AND published_at IS NULL";

/// The relay's backlog ([`BACKLOG_SQL`]).
#[derive(Debug, Clone, Copy, PartialEq, diesel::QueryableByName)]
pub struct Backlog {
    /// Changes not yet published.
    #[diesel(sql_type = BigInt, column_name = n)]
    pub changes: i64,
    /// Seconds the oldest of them has waited (0 without any).
    #[diesel(sql_type = diesel::sql_types::Double, column_name = lag)]
    pub lag_seconds: f64,
}

/// The backlog above `floor` (the leader's, kept in memory), or above the stored floor.
pub async fn backlog(
    conn: &mut AsyncPgConnection,
    floor: Option<i64>,
) -> diesel::QueryResult<Backlog> {
    diesel::sql_query(BACKLOG_SQL)
        .bind::<diesel::sql_types::Nullable<BigInt>, _>(floor)
        .get_result(conn)
        .await
}

/// Where a term's rounds start, and what each round proves about the floor (pure: the relay's
/// one floor decision). Marks only ever cover a prefix of `seq`, so the term's first round,
/// which starts at the lowest unpublished row, proves every row before that row published; and
/// a first round that finds nothing proves every row published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The stored floor the term started from.
    stored: i64,
    /// The last row handed to the marker (rows before it may not be marked yet).
    after: Option<i64>,
}

/// What a round proves about the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proven {
    /// Nothing new.
    Nothing,
    /// Every row at or below this `seq` is published.
    Through(i64),
    /// Every row written is published (the floor rises to the newest `seq`).
    All,
}

impl Cursor {
    pub fn new(stored: i64) -> Self {
        Self {
            stored,
            after: None,
        }
    }

    /// The next round selects rows above this.
    pub fn after(&self) -> i64 {
        self.after.unwrap_or(self.stored)
    }

    /// A round selected rows `first..=last`.
    pub fn took(&mut self, first: i64, last: i64) -> Proven {
        let proven = match self.after {
            None => Proven::Through(first - 1),
            Some(_) => Proven::Nothing,
        };
        self.after = Some(last);
        proven
    }

    /// A round found nothing to publish.
    pub fn found_nothing(&self) -> Proven {
        match self.after {
            None => Proven::All,
            Some(_) => Proven::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_round_proves_the_floor_later_ones_do_not() {
        let mut c = Cursor::new(100);
        assert_eq!(c.after(), 100);
        assert_eq!(c.took(150, 180), Proven::Through(149));
        assert_eq!(c.after(), 180);
        assert_eq!(c.took(181, 190), Proven::Nothing);
        assert_eq!(c.found_nothing(), Proven::Nothing);
        assert_eq!(Cursor::new(7).found_nothing(), Proven::All);
    }
}
