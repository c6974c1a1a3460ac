//! Applying one event to PostgreSQL exactly once: the dedupe row and the change share one
//! transaction; one handler per event kind behind one exhaustive `match`.

mod audit;
mod batch;
mod batch_store;
pub mod catalog_plan;
mod catalog_store;
mod dedupe;
mod groups;
mod locks;
pub mod user_plan;
mod user_store;
mod users;
pub mod version;

#[cfg(test)]
mod catalog_plan_tests;
#[cfg(test)]
mod user_plan_tests;

use crate::db::{Pool, PoolError};
use crate::role_mapping::RoleMapping;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use shared::{Event, MessageMeta, WebhookEvent};
use std::sync::Arc;
use version::Version;

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Applied,
    /// Already applied (its id is in `processed_events`).
    Duplicate,
    /// Older than what is stored: recorded, nothing changed.
    Stale,
    /// A type this build does not know: recorded, nothing changed.
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
            Outcome::Ignored => "ignored",
        }
    }
}

/// What a handler did.
pub enum Applied {
    Changed,
    Stale,
}

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(#[from] PoolError),
    #[error("event has no organization id")]
    MissingOrganization,
    #[error("only user events are applied in batches")]
    NotBatchable,
}

/// Per-event context handed to the handlers.
pub struct ApplyContext<'a> {
    pub event_id: &'a str,
    pub organization_id: &'a str,
    pub mapping: &'a RoleMapping,
    pub hard_delete: bool,
}

/// Applies events; cheap to clone.
#[derive(Clone)]
pub struct Applier {
    pool: Pool,
    mapping: Arc<RoleMapping>,
    hard_delete: bool,
}

impl Applier {
    pub fn new(pool: Pool, mapping: Arc<RoleMapping>, hard_delete: bool) -> Self {
        Self {
            pool,
            mapping,
            hard_delete,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn mapping(&self) -> &RoleMapping {
        &self.mapping
    }

    pub fn hard_delete(&self) -> bool {
        self.hard_delete
    }

    /// Applies one parsed event in one transaction with its dedupe row.
    pub async fn apply(
        &self,
        meta: &MessageMeta,
        event: &WebhookEvent,
    ) -> Result<Outcome, ApplyError> {
        let mut conn = self.pool.get().await?;
        let org = event
            .organization_id()
            .map(|o| o.as_str().to_owned())
            .ok_or(ApplyError::MissingOrganization)?;
        let mapping = Arc::clone(&self.mapping);
        let hard_delete = self.hard_delete;
        let outcome = conn
            .transaction::<Outcome, ApplyError, _>(async |conn| {
                // Entity locks before the dedupe row: a batch holding the entity and inserting
                // the same event id can then never wait on us while we wait on it.
                lock_entities(conn, &org, &event.event).await?;
                if !dedupe::claim(conn, meta, event, &org).await? {
                    return Ok(Outcome::Duplicate);
                }
                let ctx = ApplyContext {
                    event_id: event.envelope.id.as_str(),
                    organization_id: &org,
                    mapping: &mapping,
                    hard_delete,
                };
                let outcome = dispatch(conn, &ctx, event).await?;
                if outcome != Outcome::Applied {
                    dedupe::set_outcome(conn, event.envelope.id.as_str(), outcome).await?;
                }
                Ok(outcome)
            })
            .await?;
        Ok(outcome)
    }
}

/// Whether `Applier::apply_batch` takes this kind of event (user events).
pub fn batchable(event: &Event) -> bool {
    matches!(
        event,
        Event::UserCreated(_) | Event::UserUpdated(_) | Event::UserDeleted(_)
    )
}

/// Takes the locks the event's handler will take, in the global order (groups, then users).
async fn lock_entities(
    conn: &mut AsyncPgConnection,
    org: &str,
    event: &Event,
) -> diesel::QueryResult<()> {
    match event {
        Event::UserCreated(u) | Event::UserUpdated(u) => {
            let mut groups: Vec<&str> = u.groups.iter().flatten().map(|g| g.id.as_str()).collect();
            groups.sort_unstable();
            groups.dedup();
            for g in groups {
                locks::lock_shared(conn, &locks::group_key(org, g)).await?;
            }
            locks::lock(conn, &locks::user_key(org, u.id.as_str())).await
        }
        Event::UserDeleted(u) => locks::lock(conn, &locks::user_key(org, u.id.as_str())).await,
        Event::GroupCreated(g) | Event::GroupUpdated(g) | Event::GroupDeleted(g) => {
            locks::lock(conn, &locks::group_key(org, g.id.as_str())).await
        }
        Event::DirectoryEnabled(d) | Event::DirectoryDisabled(d) => {
            locks::lock(conn, &locks::directory_key(org, d.id.as_str())).await
        }
        Event::Unknown { .. } => Ok(()),
    }
}

/// The one exhaustive `match`: a new event variant does not compile until it is handled here.
async fn dispatch(
    conn: &mut AsyncPgConnection,
    ctx: &ApplyContext<'_>,
    event: &WebhookEvent,
) -> Result<Outcome, ApplyError> {
    let version = Version::new(event.envelope.occurred_at, event.envelope.id.as_str());
    let raw = &event.envelope.data;
    let applied = match &event.event {
        Event::DirectoryEnabled(d) => groups::directory(conn, ctx, d, true, version).await?,
        Event::DirectoryDisabled(d) => groups::directory(conn, ctx, d, false, version).await?,
        Event::UserCreated(u) | Event::UserUpdated(u) => {
            users::upsert(conn, ctx, u, raw, version).await?
        }
        Event::UserDeleted(u) => users::delete(conn, ctx, u, raw, version).await?,
        Event::GroupCreated(g) | Event::GroupUpdated(g) => {
            groups::group(conn, ctx, g, raw, false, version).await?
        }
        Event::GroupDeleted(g) => groups::group(conn, ctx, g, raw, true, version).await?,
        Event::Unknown { .. } => return Ok(Outcome::Ignored),
    };
    Ok(match applied {
        Applied::Changed => Outcome::Applied,
        Applied::Stale => Outcome::Stale,
    })
}
