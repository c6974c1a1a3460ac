//! Erasure beyond the user's own row: in the transaction that erases a user (`HARD_DELETE`),
//! every copy of its personal data that an index leads to loses it — earlier audit summaries,
//! deactivations the brake holds, the error text of its dead-lettered events — and the user is
//! noted in `erasures_pending`, from which the retention pass scrubs its earlier states in the
//! `changes` outbox ([`crate::service::changes::prune::scrub_erased`]). Ids, times and kinds stay.

use super::plan::PERSONAL_FIELDS;
use crate::service::apply::audit;
use crate::service::db::cached::cached;
use diesel::QueryResult;
use diesel::sql_types::{Array, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// The keys of a held event's `data` that stay: ids and the state, no profile.
pub const KEPT_EVENT_KEYS: [&str; 5] = ["id", "organization_id", "directory_id", "active", "dp_id"];

/// What a dead-lettered event's error text becomes (it may quote the body).
pub const SCRUBBED_DETAIL: &str = "(removed: the user was erased)";

/// Scrubs the users erased by this transaction, given as (organization, user) pairs.
pub async fn scrub(conn: &mut AsyncPgConnection, users: &[(String, String)]) -> QueryResult<()> {
    if users.is_empty() {
        return Ok(());
    }
    audit::redact_users(conn, users, &PERSONAL_FIELDS).await?;
    let (orgs, ids): (Vec<&str>, Vec<&str>) =
        users.iter().map(|(o, u)| (o.as_str(), u.as_str())).unzip();
    cached(
        diesel::sql_query(
            "UPDATE held_events h SET email = NULL, body = jsonb_set(h.body, '{data}', \
               (SELECT COALESCE(jsonb_object_agg(d.k, d.v), '{}'::jsonb) \
                  FROM jsonb_each(CASE WHEN jsonb_typeof(h.body->'data') = 'object' \
                                       THEN h.body->'data' ELSE '{}'::jsonb END) AS d(k, v) \
                 WHERE d.k = ANY($3::text[]))) \
             FROM unnest($1::text[], $2::text[]) AS u(org, id) \
             WHERE h.organization_id = u.org AND h.directory_user_id = u.id",
        )
        .bind::<Array<Text>, _>(&orgs)
        .bind::<Array<Text>, _>(&ids)
        .bind::<Array<Text>, _>(&KEPT_EVENT_KEYS[..]),
    )
    .execute(conn)
    .await?;
    cached(
        diesel::sql_query(
            "UPDATE dead_lettered_events d SET detail = $3 \
             FROM unnest($1::text[], $2::text[]) AS u(org, id) \
             WHERE d.organization_id = u.org AND d.subject_id = u.id \
               AND d.detail IS DISTINCT FROM $3",
        )
        .bind::<Array<Text>, _>(&orgs)
        .bind::<Array<Text>, _>(&ids)
        .bind::<Text, _>(SCRUBBED_DETAIL),
    )
    .execute(conn)
    .await?;
    cached(
        diesel::sql_query(
            "INSERT INTO erasures_pending (organization_id, directory_user_id) \
             SELECT * FROM unnest($1::text[], $2::text[]) \
             ON CONFLICT (organization_id, directory_user_id) DO UPDATE SET erased_at = now()",
        )
        .bind::<Array<Text>, _>(&orgs)
        .bind::<Array<Text>, _>(&ids),
    )
    .execute(conn)
    .await?;
    Ok(())
}
