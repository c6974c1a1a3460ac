//! Statements kept prepared on their connection. diesel prepares a raw SQL statement
//! (`sql_query`) and a multi-row `VALUES` insert afresh every time they run, because it cannot
//! know that their text never changes: each run is then a round trip for the prepare, plus
//! PostgreSQL parsing and planning the statement again. On the worker's hot path (a dozen
//! statements per batch) that was about a quarter of PostgreSQL's CPU.
//!
//! [`cached`] marks a statement whose SQL text is fixed (binds carry every value, arrays for
//! many rows: `unnest($1::text[], …)`), so diesel keeps it prepared per connection, keyed by
//! that text. Only fixed texts belong here: a text built from data would fill the cache.
//!
//! Overriding `is_safe_to_cache_prepared` is open to us because diesel-async builds diesel with
//! its third-party-backend feature; `worker/tests/apply_batch.rs` checks that the statements
//! really stay prepared. Named prepared statements need a session of their own: behind a
//! connection pooler, use session pooling (or one that tracks prepared statements).

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// A statement with fixed SQL text: see the module.
#[derive(Debug, Clone, Copy)]
#[must_use = "a statement does nothing until it is run"]
pub struct Cached<Q>(Q);

/// Marks `query` (whose SQL text never changes) to be kept prepared.
pub fn cached<Q>(query: Q) -> Cached<Q> {
    Cached(query)
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    // Keyed by its SQL text and bind types, not by a Rust type.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

/// One bind array of a many-row statement: `f` of every row, in order.
pub fn column<'r, R, T>(rows: &'r [R], f: impl FnMut(&'r R) -> T) -> Vec<T> {
    rows.iter().map(f).collect()
}
