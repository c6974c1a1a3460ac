//! `worker brake list | show | release | discard`: what the brake holds, and the operator's two
//! ways out of it.

use crate::service::apply::audit::{self, AuditRow};
use crate::service::apply::{Applier, ApplyError, Outcome};
use crate::service::brake::store::{self, HeldOrganization, HeldRow};
use crate::service::db::{Pool, PoolError};
use diesel_async::AsyncConnection;
use shared::{MessageMeta, Source, WebhookEvent};

/// Held events released or discarded per transaction.
const CHUNK: i64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum BrakeError {
    #[error("database")]
    Database(#[from] diesel::result::Error),
    #[error("database pool")]
    Pool(#[from] PoolError),
    #[error("applying released events")]
    Apply(#[from] ApplyError),
    #[error("held event {event_id} is not a readable event: {reason}")]
    Corrupt { event_id: String, reason: String },
}

/// What a release or discard did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Released {
    pub events: usize,
    pub applied: usize,
    /// Superseded by a newer event meanwhile (the ordering rules keep the newer state).
    pub stale: usize,
    /// Whether the organization is no longer held (events held during the release keep it).
    pub disengaged: bool,
}

pub async fn list(pool: &Pool) -> Result<Vec<HeldOrganization>, BrakeError> {
    let mut conn = pool.get().await?;
    Ok(store::held_organizations(&mut conn).await?)
}

/// The held events of `org`, in order.
pub async fn show(pool: &Pool, org: &str) -> Result<Vec<HeldRow>, BrakeError> {
    let mut conn = pool.get().await?;
    Ok(store::held_events(&mut conn, org, 0, i64::MAX, i64::MAX).await?)
}

fn parsed(row: &HeldRow) -> Result<(MessageMeta, WebhookEvent), BrakeError> {
    let corrupt = |reason: String| BrakeError::Corrupt {
        event_id: row.event_id.clone(),
        reason,
    };
    let bytes = serde_json::to_vec(&row.body).map_err(|e| corrupt(e.to_string()))?;
    let event = WebhookEvent::parse(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let source = Source::parse(&row.source).unwrap_or(Source::Webhook);
    let mut meta = MessageMeta::of_envelope(&event.envelope, source);
    meta.webhook_id = row.webhook_id.clone();
    Ok((meta, event))
}

/// The newest held seq of `org` when the operator decided: events held after it stay held.
async fn last_seq(pool: &Pool, org: &str) -> Result<i64, BrakeError> {
    let mut conn = pool.get().await?;
    let rows = store::held_events(&mut conn, org, 0, i64::MAX, i64::MAX).await?;
    Ok(rows.last().map_or(0, |r| r.seq))
}

/// Applies the events held for `org` (those held when the release began), in order, through
/// the normal apply path, then disengages the brake for it.
pub async fn release(pool: &Pool, applier: &Applier, org: &str) -> Result<Released, BrakeError> {
    let upto = last_seq(pool, org).await?;
    let mut done = Released::default();
    let mut after = 0;
    loop {
        let rows = {
            let mut conn = pool.get().await?;
            store::held_events(&mut conn, org, after, upto, CHUNK).await?
        };
        let Some(last) = rows.last() else { break };
        after = last.seq;
        let items = rows.iter().map(parsed).collect::<Result<Vec<_>, _>>()?;
        for outcome in applier.apply_released(&items).await? {
            done.events += 1;
            match outcome {
                Outcome::Applied => done.applied += 1,
                Outcome::Stale => done.stale += 1,
                _ => {}
            }
        }
    }
    let mut conn = pool.get().await?;
    done.disengaged = store::disengage(&mut conn, org).await?;
    tracing::info!(organization_id = %org.escape_debug(), events = done.events, applied = done.applied, "brake released");
    Ok(done)
}

/// Drops the events held for `org` (those held when the discard began): their dedupe rows stay
/// (outcome `discarded`), so a redelivery is still a duplicate, and each leaves an audit row.
pub async fn discard(pool: &Pool, org: &str) -> Result<Released, BrakeError> {
    let upto = last_seq(pool, org).await?;
    let mut done = Released::default();
    let mut after = 0;
    let mut conn = pool.get().await?;
    loop {
        let rows = store::held_events(&mut conn, org, after, upto, CHUNK).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        let ids: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
        let audits: Vec<AuditRow> = rows
            .iter()
            .map(|r| AuditRow {
                event_id: r.event_id.clone(),
                organization_id: org.to_owned(),
                entity_type: "user",
                entity_id: r.directory_user_id.clone(),
                action: "brake_discarded",
                before: None,
                after: serde_json::json!({
                    "event_type": r.event_type,
                    "occurred_at": r.occurred_at,
                    "held_at": r.held_at,
                }),
            })
            .collect();
        conn.transaction::<_, BrakeError, _>(async |conn| {
            store::discard(conn, &ids).await?;
            audit::write(conn, &audits).await?;
            Ok(())
        })
        .await?;
        done.events += rows.len();
    }
    done.disengaged = store::disengage(&mut conn, org).await?;
    tracing::info!(organization_id = %org.escape_debug(), events = done.events, "brake discarded");
    Ok(done)
}
