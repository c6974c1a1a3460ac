//! Applying events to PostgreSQL exactly once. There is one way in, [`Applier::apply_batch`]
//! (a single event is a batch of one, [`Applier::apply`]), and every transaction does the same
//! steps: take its advisory locks ([`locks`]), claim its dedupe rows ([`claim`]), plan and write
//! the changes, write their audit rows ([`audit`]) and their net changes to the change feed's
//! outbox (`crate::service::apply::outbox`), all before it commits.
//!
//! - user events ([`user`]) of a batch share one transaction, set-based: one load of every
//!   user involved, the pure planner folded over each user's events in memory, one write per
//!   table;
//! - group and directory events ([`catalog`]) each get a transaction of their own, because a
//!   group deletion locks its members, which are known only once the group is locked.
//!
//! Any error fails the whole transaction; the caller then applies the batch's events one by one,
//! which isolates a bad event and classifies its failure (see `crate::service::delivery`).

pub mod audit;
pub mod catalog;
mod claim;
pub mod locks;
pub mod outbox;
pub mod user;
pub mod version;

use crate::service::brake::BrakeSettings;
use crate::service::db::{Pool, PoolError};
use crate::service::role_mapping::RoleMapping;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use outbox::plan::PlannedChange;
use shared::{Event, MessageMeta, WebhookEvent};
use std::sync::Arc;

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
    /// A deactivation the deprovisioning brake holds (`held_events`): recorded, not applied.
    Held,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
            Outcome::Ignored => "ignored",
            Outcome::Held => "held",
        }
    }
}

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("database")]
    Database(#[from] diesel::result::Error),
    #[error("database pool")]
    Pool(#[from] PoolError),
    #[error("event has no organization id")]
    MissingOrganization,
    /// A batch that passed deactivations on an unlocked read of the brake's budget found at
    /// its end that concurrent batches used the room: it is rolled back and run again under
    /// the brake lock, at once (never reaches the caller).
    #[error("deprovisioning brake budget contended")]
    BrakeContended,
}

/// One event on its way in: its message metadata, the parsed event and its organization.
#[derive(Clone, Copy)]
pub struct Item<'a> {
    pub meta: &'a MessageMeta,
    pub event: &'a WebhookEvent,
    pub organization_id: &'a str,
}

impl<'a> Item<'a> {
    fn new(meta: &'a MessageMeta, event: &'a WebhookEvent) -> Result<Self, ApplyError> {
        let organization_id = event
            .organization_id()
            .map(|o| o.as_str())
            .ok_or(ApplyError::MissingOrganization)?;
        Ok(Self {
            meta,
            event,
            organization_id,
        })
    }

    fn all(items: &'a [(MessageMeta, WebhookEvent)]) -> Result<Vec<Self>, ApplyError> {
        items
            .iter()
            .map(|(meta, event)| Item::new(meta, event))
            .collect()
    }

    fn event_id(&self) -> &'a str {
        self.event.envelope.id.as_str()
    }
}

/// Settings every plan needs.
pub struct Rules<'a> {
    pub mapping: &'a RoleMapping,
    pub hard_delete: bool,
    /// The deprovisioning brake, when on (and not bypassed by a release).
    pub brake: Option<BrakeSettings>,
    /// Read the brake's budget under its lock from the first deactivation (after a batch
    /// found its unlocked read contended), instead of optimistically.
    pub strict_brake: bool,
    /// The last counts per organization, for the optimistic read (`crate::service::brake::cache`).
    pub brake_cache: &'a crate::service::brake::cache::BudgetCache,
}

/// Applies events; cheap to clone.
#[derive(Clone)]
pub struct Applier {
    pool: Pool,
    mapping: Arc<RoleMapping>,
    hard_delete: bool,
    brake: BrakeSettings,
    brake_cache: Arc<crate::service::brake::cache::BudgetCache>,
    /// Counts committed changes (`scim_changes_written_total`), when the worker runs.
    written: Option<prometheus_client::metrics::counter::Counter>,
}

/// Whether the event is a user event (applied set-based, many to a transaction).
pub fn is_user_event(event: &Event) -> bool {
    matches!(
        event,
        Event::UserCreated(_) | Event::UserUpdated(_) | Event::UserDeleted(_)
    )
}

impl Applier {
    pub fn new(pool: Pool, mapping: Arc<RoleMapping>, hard_delete: bool) -> Self {
        Self {
            pool,
            mapping,
            hard_delete,
            brake: BrakeSettings::OFF,
            brake_cache: Arc::default(),
            written: None,
        }
    }

    /// Applies with the deprovisioning brake (`BrakeSettings::OFF` by default).
    pub fn with_brake(mut self, brake: BrakeSettings) -> Self {
        self.brake = brake;
        self
    }

    /// Counts the changes it commits on `counter`.
    pub fn counting_changes(
        mut self,
        counter: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        self.written = Some(counter);
        self
    }

    fn changes_written(&self, n: usize) {
        if let Some(c) = &self.written {
            c.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn mapping(&self) -> &RoleMapping {
        &self.mapping
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            mapping: &self.mapping,
            hard_delete: self.hard_delete,
            brake: self.brake.enabled().then_some(self.brake),
            strict_brake: false,
            brake_cache: &self.brake_cache,
        }
    }

    /// Applies one event: a batch of one.
    pub async fn apply(
        &self,
        meta: &MessageMeta,
        event: &WebhookEvent,
    ) -> Result<Outcome, ApplyError> {
        let item = Item::new(meta, event)?;
        if is_user_event(&event.event) {
            Ok(self.apply_users(&[item]).await?[0])
        } else {
            self.apply_catalog(item).await
        }
    }

    /// Applies events of any kind; outcomes in input order. User events share one transaction;
    /// each group, directory or unknown event has its own, applied before the user events.
    pub async fn apply_batch(
        &self,
        items: &[(MessageMeta, WebhookEvent)],
    ) -> Result<Vec<Outcome>, ApplyError> {
        let items = Item::all(items)?;
        let mut outcomes = vec![Outcome::Duplicate; items.len()];
        let (users, others): (Vec<usize>, Vec<usize>) =
            (0..items.len()).partition(|&i| is_user_event(&items[i].event.event));
        for i in others {
            outcomes[i] = self.apply_catalog(items[i]).await?;
        }
        if !users.is_empty() {
            let batch: Vec<Item<'_>> = users.iter().map(|&i| items[i]).collect();
            for (i, outcome) in users.into_iter().zip(self.apply_users(&batch).await?) {
                outcomes[i] = outcome;
            }
        }
        Ok(outcomes)
    }

    /// Applies events the brake held (`worker brake release`), past the brake: in one
    /// transaction, they leave `held_events` and their `held` dedupe rows, and go through the
    /// normal user apply (ordering rules, audit, change feed). Outcomes in input order.
    pub async fn apply_released(
        &self,
        items: &[(MessageMeta, WebhookEvent)],
    ) -> Result<Vec<Outcome>, ApplyError> {
        let items = Item::all(items)?;
        let rules = Rules {
            brake: None,
            ..self.rules()
        };
        let ids: Vec<&str> = items.iter().map(Item::event_id).collect();
        self.users_in_transaction(&items, rules, Some(&ids)).await
    }

    /// User events in one transaction: optimistic about the brake's budget first, under its
    /// lock when that found the budget contended.
    async fn apply_users(&self, items: &[Item<'_>]) -> Result<Vec<Outcome>, ApplyError> {
        match self.users_in_transaction(items, self.rules(), None).await {
            Err(ApplyError::BrakeContended) => {
                tracing::debug!(
                    size = items.len(),
                    "brake budget contended; the batch runs again under the brake lock"
                );
                let rules = Rules {
                    strict_brake: true,
                    ..self.rules()
                };
                self.users_in_transaction(items, rules, None).await
            }
            other => other,
        }
    }

    /// User events in one transaction; `unhold`: held events to take out of the brake first.
    async fn users_in_transaction(
        &self,
        items: &[Item<'_>],
        rules: Rules<'_>,
        unhold: Option<&[&str]>,
    ) -> Result<Vec<Outcome>, ApplyError> {
        let mut conn = self.pool.get().await?;
        conn.transaction::<_, ApplyError, _>(async |conn| {
            if let Some(ids) = unhold {
                crate::service::brake::store::unhold(conn, ids).await?;
            }
            let claimed = Claimed::take(conn, items, &user::apply::locks(items)).await?;
            let (applied, changes) = user::apply::apply(conn, &claimed.fresh, &rules).await?;
            claimed.finish(conn, applied, &changes).await
        })
        .await
        .map(|(outcomes, written)| {
            self.changes_written(written);
            outcomes
        })
    }

    /// One group, directory or unknown event in its own transaction.
    async fn apply_catalog(&self, item: Item<'_>) -> Result<Outcome, ApplyError> {
        let mut conn = self.pool.get().await?;
        let rules = self.rules();
        let outcomes = conn
            .transaction::<_, ApplyError, _>(async |conn| {
                let items = [item];
                let claimed = Claimed::take(conn, &items, &catalog::apply::locks(&item)).await?;
                let mut applied = Vec::with_capacity(claimed.fresh.len());
                let mut changes = Vec::new();
                for fresh in &claimed.fresh {
                    let (outcome, made) = catalog::apply::apply(conn, fresh, &rules).await?;
                    applied.push(outcome);
                    changes.extend(made);
                }
                claimed.finish(conn, applied, &changes).await
            })
            .await?;
        self.changes_written(outcomes.1);
        Ok(outcomes.0[0])
    }
}

/// The first and last steps every transaction takes: its locks and dedupe claim before the
/// changes, the outcomes of the new events recorded after.
struct Claimed<'a> {
    /// The input items.
    items: &'a [Item<'a>],
    /// Per input item: whether it is new (claimed here) or a duplicate.
    new: Vec<bool>,
    /// The new items, in input order.
    fresh: Vec<Item<'a>>,
}

impl<'a> Claimed<'a> {
    async fn take(
        conn: &mut AsyncPgConnection,
        items: &'a [Item<'a>],
        locks: &locks::LockSet,
    ) -> Result<Self, ApplyError> {
        // Entity locks before the dedupe rows: a transaction holding an entity and inserting
        // the same event id can then never wait on us while we wait on it.
        locks.acquire(conn).await?;
        let new = claim::claim_all(conn, items).await?;
        let fresh = items
            .iter()
            .zip(&new)
            .filter(|(_, n)| **n)
            .map(|(i, _)| *i)
            .collect();
        Ok(Self { items, new, fresh })
    }

    /// Writes the changes to the outbox, records stale and ignored outcomes of the new events
    /// (`applied`, one each), and returns the outcome of every input item and how many changes
    /// were written.
    async fn finish(
        self,
        conn: &mut AsyncPgConnection,
        applied: Vec<Outcome>,
        changes: &[PlannedChange],
    ) -> Result<(Vec<Outcome>, usize), ApplyError> {
        let written = outbox::write(conn, changes).await?;
        let again: Vec<&str> = self
            .items
            .iter()
            .zip(&self.new)
            .filter(|(_, new)| !**new)
            .map(|(i, _)| i.event_id())
            .collect();
        claim::count_duplicates(conn, &again).await?;
        for outcome in [Outcome::Stale, Outcome::Ignored, Outcome::Held] {
            let ids: Vec<&str> = self
                .fresh
                .iter()
                .zip(&applied)
                .filter(|(_, o)| **o == outcome)
                .map(|(i, _)| i.event_id())
                .collect();
            claim::set_outcome(conn, &ids, outcome).await?;
        }
        let mut applied = applied.into_iter();
        let outcomes = self
            .new
            .iter()
            .map(|new| {
                if *new {
                    applied.next().unwrap_or(Outcome::Duplicate)
                } else {
                    Outcome::Duplicate
                }
            })
            .collect();
        Ok((outcomes, written))
    }
}
