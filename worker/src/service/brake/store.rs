//! The brake's tables: `deprovision_brakes` (engaged, released) and `held_events`.

use super::budget::{BrakeSettings, Budget};
use super::cache::Counts;
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Double, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// An event the brake holds back, as stored.
#[derive(Debug, Clone)]
pub struct HeldEvent {
    pub event_id: String,
    pub organization_id: String,
    pub event_type: String,
    pub directory_user_id: String,
    pub email: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub source: &'static str,
    pub webhook_id: Option<String>,
    pub body: serde_json::Value,
}

/// The budget of `org` for this transaction, read under the organization's brake lock (held
/// until the transaction ends), so two transactions deactivating users of one organization
/// count one after the other. This lock comes after the entity locks and before the outbox's
/// commit-order lock, the same order in every transaction. Used when the unlocked read
/// ([`counts_unlocked`]) found the organization near its threshold or engaged.
pub async fn budget(
    conn: &mut AsyncPgConnection,
    org: &str,
    settings: &BrakeSettings,
) -> diesel::QueryResult<Budget> {
    lock(conn, org).await?;
    let c = counts(conn, org, settings).await?;
    Ok(Budget::new(settings, c.engaged, c.active, c.recent))
}

/// The counts of `org` as last committed, without the lock: a batch far from the threshold
/// passes its deactivations on them and confirms them at its end ([`confirm`]).
pub async fn counts_unlocked(
    conn: &mut AsyncPgConnection,
    org: &str,
    settings: &BrakeSettings,
) -> diesel::QueryResult<Counts> {
    counts(conn, org, settings).await
}

/// At the end of a batch that passed `passed` deactivations of `org` on an unlocked read:
/// takes the organization's brake lock (held briefly: the batch commits right after) and
/// checks that the batch stayed within the budget given everything committed before it.
/// Returns the verdict and the counts as they will be once the batch commits.
pub async fn confirm(
    conn: &mut AsyncPgConnection,
    org: &str,
    settings: &BrakeSettings,
    passed: i64,
) -> diesel::QueryResult<(bool, Counts)> {
    lock(conn, org).await?;
    let c = counts(conn, org, settings).await?;
    let ok = super::budget::confirms(settings, c.engaged, c.active, c.recent, passed);
    Ok((
        ok,
        Counts {
            recent: c.recent + passed,
            ..c
        },
    ))
}

/// The organization's brake lock, until the transaction ends. In a statement of its own: the
/// next statement's snapshot (read committed) then sees everything the previous holder
/// committed.
async fn lock(conn: &mut AsyncPgConnection, org: &str) -> diesel::QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended('brake/' || $1, 7))")
        .bind::<Text, _>(org)
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct CountsRow {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    engaged: bool,
    #[diesel(sql_type = BigInt)]
    active: i64,
    #[diesel(sql_type = BigInt)]
    recent: i64,
}

/// Engaged (or holding), active users (as this transaction sees them), and deactivations
/// committed in the window (since the last release).
async fn counts(
    conn: &mut AsyncPgConnection,
    org: &str,
    settings: &BrakeSettings,
) -> diesel::QueryResult<Counts> {
    let row: CountsRow = diesel::sql_query(
        "WITH b AS (SELECT engaged_at, released_at FROM deprovision_brakes WHERE organization_id = $1) \
         SELECT (EXISTS (SELECT 1 FROM b WHERE engaged_at IS NOT NULL) \
                 OR EXISTS (SELECT 1 FROM held_events WHERE organization_id = $1)) AS engaged, \
                (SELECT count(*) FROM directory_users WHERE organization_id = $1 AND active) AS active, \
                (SELECT count(*) FROM changes \
                  WHERE organization_id = $1 AND kind IN ('user.deprovisioned', 'user.erased') \
                    AND committed_at > greatest(now() - make_interval(secs => $2), \
                                                coalesce((SELECT released_at FROM b), '-infinity'))) AS recent",
    )
    .bind::<Text, _>(org)
    .bind::<Double, _>(settings.window.as_secs_f64())
    .get_result(conn)
    .await?;
    Ok(Counts {
        engaged: row.engaged,
        active: row.active,
        recent: row.recent,
    })
}

/// Stores held events (in order) and marks their organizations engaged.
pub async fn hold(conn: &mut AsyncPgConnection, held: &[HeldEvent]) -> diesel::QueryResult<()> {
    for h in held {
        diesel::sql_query(
            "INSERT INTO held_events (event_id, organization_id, event_type, directory_user_id, email, \
                                      occurred_at, source, webhook_id, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind::<Text, _>(&h.event_id)
        .bind::<Text, _>(&h.organization_id)
        .bind::<Text, _>(&h.event_type)
        .bind::<Text, _>(&h.directory_user_id)
        .bind::<Nullable<Text>, _>(h.email.as_deref())
        .bind::<Timestamptz, _>(h.occurred_at)
        .bind::<Text, _>(h.source)
        .bind::<Nullable<Text>, _>(h.webhook_id.as_deref())
        .bind::<Jsonb, _>(&h.body)
        .execute(conn)
        .await?;
    }
    let mut orgs: Vec<&str> = held.iter().map(|h| h.organization_id.as_str()).collect();
    orgs.sort_unstable();
    orgs.dedup();
    for org in orgs {
        diesel::sql_query(
            "INSERT INTO deprovision_brakes (organization_id, engaged_at) VALUES ($1, now()) \
             ON CONFLICT (organization_id) DO UPDATE \
               SET engaged_at = coalesce(deprovision_brakes.engaged_at, now())",
        )
        .bind::<Text, _>(org)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Per held organization: events held, oldest and newest hold, and a sample of users.
#[derive(Debug, Clone, QueryableByName, serde::Serialize)]
pub struct HeldOrganization {
    #[diesel(sql_type = Text)]
    pub organization_id: String,
    #[diesel(sql_type = BigInt)]
    pub held: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub engaged_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_held_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Array<Text>)]
    pub sample: Vec<String>,
}

pub async fn held_organizations(
    conn: &mut AsyncPgConnection,
) -> diesel::QueryResult<Vec<HeldOrganization>> {
    diesel::sql_query(
        "SELECT h.organization_id, count(*) AS held, \
                coalesce(min(b.engaged_at), min(h.held_at)) AS engaged_at, max(h.held_at) AS last_held_at, \
                (array_agg(coalesce(h.email, h.directory_user_id) ORDER BY h.seq))[1:5] AS sample \
         FROM held_events h LEFT JOIN deprovision_brakes b USING (organization_id) \
         GROUP BY h.organization_id ORDER BY h.organization_id",
    )
    .load(conn)
    .await
}

/// One held event, for `brake show`.
#[derive(Debug, Clone, QueryableByName, serde::Serialize)]
pub struct HeldRow {
    #[diesel(sql_type = BigInt)]
    pub seq: i64,
    #[diesel(sql_type = Text)]
    pub event_id: String,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = Text)]
    pub directory_user_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub email: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub occurred_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub held_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    #[serde(skip)]
    pub source: String,
    #[diesel(sql_type = Nullable<Text>)]
    #[serde(skip)]
    pub webhook_id: Option<String>,
    #[diesel(sql_type = Jsonb)]
    #[serde(skip)]
    pub body: serde_json::Value,
}

/// Held events of `org` in arrival order: those after `after_seq`, up to `upto_seq`, at most
/// `limit`.
pub async fn held_events(
    conn: &mut AsyncPgConnection,
    org: &str,
    after_seq: i64,
    upto_seq: i64,
    limit: i64,
) -> diesel::QueryResult<Vec<HeldRow>> {
    diesel::sql_query(
        "SELECT seq, event_id, event_type, directory_user_id, email, occurred_at, held_at, source, \
                webhook_id, body \
         FROM held_events WHERE organization_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
    )
    .bind::<Text, _>(org)
    .bind::<BigInt, _>(after_seq)
    .bind::<BigInt, _>(upto_seq)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

/// Removes held events (by id) and their `held` dedupe rows, so the apply path claims them
/// anew; in the caller's transaction. Returns how many were still held.
pub async fn unhold(
    conn: &mut AsyncPgConnection,
    event_ids: &[&str],
) -> diesel::QueryResult<usize> {
    let removed = diesel::sql_query("DELETE FROM held_events WHERE event_id = ANY($1)")
        .bind::<diesel::sql_types::Array<Text>, _>(event_ids)
        .execute(conn)
        .await?;
    diesel::sql_query("DELETE FROM processed_events WHERE event_id = ANY($1) AND outcome = 'held'")
        .bind::<diesel::sql_types::Array<Text>, _>(event_ids)
        .execute(conn)
        .await?;
    Ok(removed)
}

/// Disengages `org` when it holds nothing more; deactivations before now stop counting.
/// Returns whether it was disengaged (events held meanwhile keep it engaged).
pub async fn disengage(conn: &mut AsyncPgConnection, org: &str) -> diesel::QueryResult<bool> {
    let done = diesel::sql_query(
        "UPDATE deprovision_brakes SET engaged_at = NULL, released_at = now() \
         WHERE organization_id = $1 \
           AND NOT EXISTS (SELECT 1 FROM held_events WHERE organization_id = $1)",
    )
    .bind::<Text, _>(org)
    .execute(conn)
    .await?;
    Ok(done > 0)
}

/// Drops held events (by id); their dedupe rows stay, with outcome `discarded`.
pub async fn discard(conn: &mut AsyncPgConnection, event_ids: &[&str]) -> diesel::QueryResult<()> {
    diesel::sql_query("DELETE FROM held_events WHERE event_id = ANY($1)")
        .bind::<diesel::sql_types::Array<Text>, _>(event_ids)
        .execute(conn)
        .await?;
    diesel::sql_query(
        "UPDATE processed_events SET outcome = 'discarded' WHERE event_id = ANY($1) AND outcome = 'held'",
    )
    .bind::<diesel::sql_types::Array<Text>, _>(event_ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// Events held per organization (for the gauges).
pub async fn held_counts(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<(String, i64)>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        organization_id: String,
        #[diesel(sql_type = BigInt)]
        held: i64,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT organization_id, count(*) AS held FROM held_events GROUP BY organization_id",
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.organization_id, r.held))
        .collect())
}
