//! `worker report slo [--since 30d]`: per organization, how long the directory's word took to
//! take effect — from the event's `occurred_at` to the change committed, and to the change
//! published to the application — p50 and p99, for provisioning (`user.provisioned`,
//! `user.reactivated`) and deprovisioning (`user.deprovisioned`, `user.erased`) apart. Read
//! from the `changes` outbox, so it covers what `CHANGES_RETENTION` keeps there.

use super::InspectError;
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Double, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

/// One organization's numbers for one class of change, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, diesel::QueryableByName)]
pub struct SloRow {
    #[diesel(sql_type = Text)]
    pub organization_id: String,
    /// `provisioning` or `deprovisioning`.
    #[diesel(sql_type = Text)]
    pub class: String,
    #[diesel(sql_type = BigInt)]
    pub changes: i64,
    #[diesel(sql_type = Nullable<Double>)]
    pub committed_p50: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    pub committed_p99: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    pub published_p50: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    pub published_p99: Option<f64>,
    /// Changes not published yet (left out of the published percentiles).
    #[diesel(sql_type = BigInt)]
    pub unpublished: i64,
}

/// The report for changes committed since `since`.
pub async fn report(
    conn: &mut AsyncPgConnection,
    since: DateTime<Utc>,
) -> Result<Vec<SloRow>, InspectError> {
    Ok(diesel::sql_query(
        "WITH c AS ( \
           SELECT organization_id, \
                  CASE WHEN kind IN ('user.provisioned', 'user.reactivated') THEN 'provisioning' \
                       ELSE 'deprovisioning' END AS class, \
                  EXTRACT(EPOCH FROM committed_at - occurred_at)::float8 AS committed_s, \
                  EXTRACT(EPOCH FROM published_at - occurred_at)::float8 AS published_s \
           FROM changes \
           WHERE committed_at >= $1 \
             AND kind IN ('user.provisioned', 'user.reactivated', 'user.deprovisioned', 'user.erased')) \
         SELECT organization_id, class, count(*) AS changes, \
                percentile_cont(0.5) WITHIN GROUP (ORDER BY committed_s) AS committed_p50, \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY committed_s) AS committed_p99, \
                percentile_cont(0.5) WITHIN GROUP (ORDER BY published_s) \
                    FILTER (WHERE published_s IS NOT NULL) AS published_p50, \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY published_s) \
                    FILTER (WHERE published_s IS NOT NULL) AS published_p99, \
                count(*) FILTER (WHERE published_s IS NULL) AS unpublished \
         FROM c GROUP BY organization_id, class ORDER BY organization_id, class DESC",
    )
    .bind::<Timestamptz, _>(since)
    .load(conn)
    .await?)
}
