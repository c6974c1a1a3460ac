//! The push state in the database (`change_endpoints`, `change_endpoint_positions`): what the
//! delivery leader reads and writes, and what `worker endpoints` changes. Every write of the
//! leader names the endpoint's `generation` it loaded: after a replay (which raises it) a
//! delivery that finishes late writes nothing.

use super::endpoints::Endpoint;
use crate::service::changes::body::{self, Row};
use crate::service::db::schema::changes as c;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Declares the configured endpoints (a new one starts at the oldest retained change) and
/// retires the rows of endpoints no longer configured.
pub async fn register(conn: &mut AsyncPgConnection, endpoints: &[Endpoint]) -> QueryResult<()> {
    for e in endpoints {
        let kinds: Vec<&str> = e.kinds.iter().map(|k| k.as_str()).collect();
        diesel::sql_query(
            "INSERT INTO change_endpoints (name, url, kinds, scanned_through) \
             VALUES ($1, $2, $3, COALESCE((SELECT pruned_through FROM change_relay), 0)) \
             ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, kinds = EXCLUDED.kinds, retired_at = NULL",
        )
        .bind::<Text, _>(&e.name)
        .bind::<Text, _>(e.shown_url())
        .bind::<Array<Text>, _>(kinds)
        .execute(conn)
        .await?;
    }
    let names: Vec<&str> = endpoints.iter().map(|e| e.name.as_str()).collect();
    diesel::sql_query(
        "UPDATE change_endpoints SET retired_at = now() WHERE retired_at IS NULL AND name <> ALL($1)",
    )
    .bind::<Array<Text>, _>(names)
    .execute(conn)
    .await?;
    Ok(())
}

/// An endpoint's row as the leader follows it.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Control {
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = BigInt)]
    pub scanned_through: i64,
    #[diesel(sql_type = BigInt)]
    pub generation: i64,
    #[diesel(sql_type = Bool)]
    pub paused: bool,
}

/// Every endpoint's control row.
pub async fn controls(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Control>> {
    diesel::sql_query(
        "SELECT name, scanned_through, generation, paused_at IS NOT NULL AS paused FROM change_endpoints",
    )
    .load(conn)
    .await
}

/// Positions above `floor` (the others deliver from the floor on anyway).
pub async fn positions_above(
    conn: &mut AsyncPgConnection,
    endpoint: &str,
    floor: i64,
) -> QueryResult<Vec<(String, i64)>> {
    #[derive(QueryableByName)]
    struct P {
        #[diesel(sql_type = Text)]
        organization_id: String,
        #[diesel(sql_type = BigInt)]
        delivered_through: i64,
    }
    let rows: Vec<P> = diesel::sql_query(
        "SELECT organization_id, delivered_through FROM change_endpoint_positions \
         WHERE endpoint = $1 AND delivered_through > $2",
    )
    .bind::<Text, _>(endpoint)
    .bind::<BigInt, _>(floor)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|p| (p.organization_id, p.delivered_through))
        .collect())
}

/// The heads (`seq`, organization, kind) of the next rows after `after`, in `seq` order
/// (commit order: a row is never visible before the rows below it): what the scan decides on
/// before it reads any payload.
pub async fn scan_heads(
    conn: &mut AsyncPgConnection,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<(i64, String, String)>> {
    c::table
        .filter(c::seq.gt(after))
        .order(c::seq)
        .limit(limit)
        .select((c::seq, c::organization_id, c::kind))
        .load(conn)
        .await
}

/// These rows, in `seq` order.
pub async fn rows(conn: &mut AsyncPgConnection, seqs: &[i64]) -> QueryResult<Vec<Row>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    c::table
        .filter(c::seq.eq_any(seqs))
        .order(c::seq)
        .select(body::COLUMNS)
        .load(conn)
        .await
}

/// One organization's rows in `(after, through]` of the endpoint's kinds, in order.
pub async fn refill(
    conn: &mut AsyncPgConnection,
    organization_id: &str,
    after: i64,
    through: i64,
    kinds: &[&str],
    limit: i64,
) -> QueryResult<Vec<Row>> {
    let mut q = c::table
        .filter(c::seq.gt(after))
        .filter(c::seq.le(through))
        .filter(c::organization_id.eq(organization_id))
        .order(c::seq)
        .limit(limit)
        .select(body::COLUMNS)
        .into_boxed();
    if !kinds.is_empty() {
        q = q.filter(c::kind.eq_any(kinds.to_vec()));
    }
    q.load(conn).await
}

/// Moves organizations' positions (organization, last `seq` answered 2xx) and clears the
/// endpoint's failure when no organization is failing any more; false when a replay raised
/// the generation (nothing written).
pub async fn delivered(
    conn: &mut AsyncPgConnection,
    endpoint: &str,
    generation: i64,
    moved: &[(String, i64)],
    still_failing: bool,
) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Matched {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let orgs: Vec<&str> = moved.iter().map(|(o, _)| o.as_str()).collect();
    let seqs: Vec<i64> = moved.iter().map(|(_, s)| *s).collect();
    let m: Matched = diesel::sql_query(
        "WITH e AS (UPDATE change_endpoints SET last_delivered_at = now(), \
           failing_since = CASE WHEN $5 THEN failing_since END, \
           last_status = CASE WHEN $5 THEN last_status ELSE 'HTTP 2xx' END \
           WHERE name = $1 AND generation = $2 RETURNING name), \
         w AS (INSERT INTO change_endpoint_positions (endpoint, organization_id, delivered_through) \
           SELECT e.name, m.o, m.s FROM e, unnest($3::text[], $4::bigint[]) AS m(o, s) \
           ON CONFLICT (endpoint, organization_id) DO UPDATE \
           SET delivered_through = GREATEST(change_endpoint_positions.delivered_through, EXCLUDED.delivered_through), \
               delivered_at = now() RETURNING 1) \
         SELECT count(*) AS n FROM e",
    )
    .bind::<Text, _>(endpoint)
    .bind::<BigInt, _>(generation)
    .bind::<Array<Text>, _>(orgs)
    .bind::<Array<BigInt>, _>(seqs)
    .bind::<Bool, _>(still_failing)
    .get_result(conn)
    .await?;
    Ok(m.n == 1)
}

/// Raises the stored floor.
pub async fn store_floor(
    conn: &mut AsyncPgConnection,
    endpoint: &str,
    generation: i64,
    floor: i64,
) -> QueryResult<()> {
    diesel::sql_query(
        "UPDATE change_endpoints SET scanned_through = GREATEST(scanned_through, $3) \
         WHERE name = $1 AND generation = $2",
    )
    .bind::<Text, _>(endpoint)
    .bind::<BigInt, _>(generation)
    .bind::<BigInt, _>(floor)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a failed attempt: the endpoint has been failing since `since`.
pub async fn failed(
    conn: &mut AsyncPgConnection,
    endpoint: &str,
    since: DateTime<Utc>,
    status: &str,
) -> QueryResult<()> {
    diesel::sql_query(
        "UPDATE change_endpoints SET failing_since = COALESCE(failing_since, $2), \
         last_status = $3, last_failure_at = now() WHERE name = $1",
    )
    .bind::<Text, _>(endpoint)
    .bind::<Timestamptz, _>(since)
    .bind::<Text, _>(status)
    .execute(conn)
    .await?;
    Ok(())
}

/// Pauses the endpoint (false when there is no such endpoint).
pub async fn pause(
    conn: &mut AsyncPgConnection,
    endpoint: &str,
    reason: &str,
) -> QueryResult<bool> {
    let n = diesel::sql_query(
        "UPDATE change_endpoints SET paused_at = COALESCE(paused_at, now()), paused_reason = $2 \
         WHERE name = $1",
    )
    .bind::<Text, _>(endpoint)
    .bind::<Text, _>(reason)
    .execute(conn)
    .await?;
    wake(conn).await?;
    Ok(n == 1)
}

/// Resumes a paused endpoint from its positions; its failure record starts over.
pub async fn resume(conn: &mut AsyncPgConnection, endpoint: &str) -> QueryResult<bool> {
    let n = diesel::sql_query(
        "UPDATE change_endpoints SET paused_at = NULL, paused_reason = NULL, failing_since = NULL \
         WHERE name = $1",
    )
    .bind::<Text, _>(endpoint)
    .execute(conn)
    .await?;
    wake(conn).await?;
    Ok(n == 1)
}

/// What a replay found.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    Started,
    NoSuchEndpoint,
    /// Changes below it were pruned (`CHANGES_RETENTION`).
    Pruned {
        oldest: i64,
    },
}

/// Delivers again from `from_seq`: every organization's position and the floor go to
/// `from_seq - 1`, under a new generation.
pub async fn replay(
    conn: &mut AsyncPgConnection,
    endpoint: &str,
    from_seq: i64,
) -> QueryResult<Replay> {
    use diesel_async::AsyncConnection;
    let endpoint = endpoint.to_owned();
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        #[derive(QueryableByName)]
        struct Pruned {
            #[diesel(sql_type = BigInt)]
            pruned_through: i64,
        }
        let pruned: Pruned = diesel::sql_query(
            "SELECT COALESCE((SELECT pruned_through FROM change_relay), 0) AS pruned_through",
        )
        .get_result(conn)
        .await?;
        if from_seq <= pruned.pruned_through {
            return Ok(Replay::Pruned {
                oldest: pruned.pruned_through + 1,
            });
        }
        let n = diesel::sql_query(
            "UPDATE change_endpoints SET scanned_through = $2, generation = generation + 1 \
                 WHERE name = $1",
        )
        .bind::<Text, _>(&endpoint)
        .bind::<BigInt, _>(from_seq - 1)
        .execute(conn)
        .await?;
        if n == 0 {
            return Ok(Replay::NoSuchEndpoint);
        }
        diesel::sql_query("DELETE FROM change_endpoint_positions WHERE endpoint = $1")
            .bind::<Text, _>(&endpoint)
            .execute(conn)
            .await?;
        wake(conn).await?;
        Ok(Replay::Started)
    })
    .await
}

/// Wakes the delivery leader at commit (it listens on the change feed's channel).
async fn wake(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    diesel::sql_query(format!(
        "SELECT pg_notify('{}', '')",
        crate::service::apply::outbox::NOTIFY_CHANNEL
    ))
    .execute(conn)
    .await?;
    Ok(())
}

/// What `worker endpoints list` shows of one endpoint.
#[derive(Debug, Clone, QueryableByName, serde::Serialize)]
pub struct Status {
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub url: String,
    #[diesel(sql_type = Array<Text>)]
    pub kinds: Vec<String>,
    /// The highest `seq` delivered to any organization.
    #[diesel(sql_type = BigInt)]
    pub last_delivered_seq: i64,
    #[diesel(sql_type = BigInt)]
    pub lag_changes: i64,
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub lag_seconds: f64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub failing_since: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_status: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_delivered_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub paused_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    pub paused_reason: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub retired_at: Option<DateTime<Utc>>,
}

/// Every endpoint with its lag: the changes of its kinds above its floor that are above their
/// organization's position, and the age of the oldest of them.
pub async fn statuses(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Status>> {
    diesel::sql_query(
        "SELECT e.name, e.url, e.kinds, \
           GREATEST(e.scanned_through, COALESCE((SELECT max(delivered_through) FROM change_endpoint_positions p WHERE p.endpoint = e.name), 0)) AS last_delivered_seq, \
           l.n AS lag_changes, l.lag AS lag_seconds, \
           e.failing_since, e.last_status, e.last_delivered_at, e.paused_at, e.paused_reason, e.retired_at \
         FROM change_endpoints e, LATERAL ( \
           SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(c.committed_at))::float8, 0) AS lag \
           FROM changes c LEFT JOIN change_endpoint_positions p \
             ON p.endpoint = e.name AND p.organization_id = c.organization_id \
           WHERE c.seq > e.scanned_through AND c.seq > COALESCE(p.delivered_through, 0) \
             AND (cardinality(e.kinds) = 0 OR c.kind = ANY(e.kinds))) l \
         ORDER BY e.name",
    )
    .load(conn)
    .await
}
