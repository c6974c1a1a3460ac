//! One sync of an organization's directories: list groups and users page by page, publish a
//! snapshot event for each (the normal apply path does the writing), then — only after a
//! complete listing — deactivate the stored users that were not listed.

use super::client::{ClientError, ScalekitClient};
use super::listing::{Incomplete, Listing};
use super::progress::{Progress, Summary};
use super::snapshot::{self, Change};
use super::store;
use crate::service::apply::user::store::{Key, load_users};
use crate::service::db::{Pool, PoolError};
use crate::service::records::{self, SyncRun};
use futures_util::future::try_join_all;
use shared::amqp::{BrokerLink, PublishError, properties, publish_confirmed};
use shared::{MessageMeta, Source, Topology};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("Directory API")]
    Client(#[from] ClientError),
    #[error("incomplete listing, nothing deactivated")]
    Incomplete(#[from] Incomplete),
    #[error("publishing snapshot events")]
    Publish(#[from] PublishError),
    #[error("database")]
    Database(#[from] diesel::result::Error),
    #[error("database pool")]
    Pool(#[from] PoolError),
    #[error("directory {0} is not one of the organization's directories")]
    UnknownDirectory(String),
    #[error("organization {0} has no directory")]
    NoDirectory(String),
    #[error("a sync of {0} is already running")]
    AlreadyRunning(String),
    #[error("cancelled (the worker is stopping), nothing deactivated")]
    Cancelled,
}

pub struct Syncer {
    pub client: ScalekitClient,
    pub link: BrokerLink,
    pub topology: Topology,
    pub pool: Pool,
    pub confirm_timeout: Duration,
    /// Bound on the pages of one listing (`SYNC_MAX_PAGES`).
    pub max_pages: usize,
    /// Cancelled on shutdown: a running sync stops before its next page (a page being read is
    /// abandoned), deactivates nobody, and is recorded `cancelled`.
    pub stop: CancellationToken,
}

impl Syncer {
    /// Syncs `directory`, or every directory of the organization.
    pub async fn sync_org(
        &self,
        org: &str,
        directory: Option<&str>,
        progress: &mut Progress,
    ) -> Result<Summary, SyncError> {
        let dirs = self
            .unless_stopped(self.client.list_directories(org))
            .await?;
        if dirs.is_empty() {
            return Err(SyncError::NoDirectory(org.to_owned()));
        }
        let single = dirs.len() == 1;
        let chosen: Vec<_> = match directory {
            Some(d) => {
                let found: Vec<_> = dirs.iter().filter(|x| x.id == d).cloned().collect();
                if found.is_empty() {
                    return Err(SyncError::UnknownDirectory(d.to_owned()));
                }
                found
            }
            None => dirs,
        };
        let mut total = Summary::default();
        for dir in &chosen {
            if self.stop.is_cancelled() {
                return Err(SyncError::Cancelled);
            }
            let s = self.sync_directory(org, &dir.id, single, progress).await?;
            total.directories += 1;
            total.pages += s.pages;
            total.groups += s.groups;
            total.seen += s.seen;
            total.created += s.created;
            total.updated += s.updated;
            total.unchanged += s.unchanged;
            total.deactivated += s.deactivated;
        }
        Ok(total)
    }

    /// A Directory API call, abandoned when the sync is cancelled.
    async fn unless_stopped<T>(
        &self,
        call: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, SyncError> {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => Err(SyncError::Cancelled),
            result = call => Ok(result?),
        }
    }

    async fn publish_all(
        &self,
        events: Vec<(String, Vec<u8>, &'static str)>,
        org: &str,
    ) -> Result<(), SyncError> {
        let channel = self.link.channel().map_err(PublishError::from)?;
        // Snapshots are bulk work (a first sync publishes one per user): they never queue in
        // front of other organizations' webhooks (`shared::lane`).
        let exchange = self.topology.bulk_exchange();
        let publishes = events.iter().map(|(id, body, event_type)| {
            let meta =
                MessageMeta::event(id.as_str(), *event_type, Some(org.to_owned()), Source::Sync);
            publish_confirmed(
                &channel,
                &exchange,
                event_type,
                body,
                properties(&meta),
                self.confirm_timeout,
            )
        });
        try_join_all(publishes).await?;
        Ok(())
    }

    /// One directory. Holds a session advisory lock so two replicas never sync it at once.
    pub async fn sync_directory(
        &self,
        org: &str,
        dir: &str,
        single_directory: bool,
        progress: &mut Progress,
    ) -> Result<Summary, SyncError> {
        let mut lock_conn = self.pool.get().await?;
        let key = format!("sync/{org}/{dir}");
        if !try_lock(&mut lock_conn, &key).await? {
            return Err(SyncError::AlreadyRunning(format!("{org}/{dir}")));
        }
        let started_at = chrono::Utc::now();
        let result = self
            .sync_directory_locked(org, dir, single_directory, progress)
            .await;
        let run = SyncRun {
            organization_id: org,
            directory_id: dir,
            started_at,
            outcome: match &result {
                Ok(_) => "ok",
                Err(SyncError::Cancelled) => "cancelled",
                Err(_) => "failed",
            },
            users_listed: result.as_ref().ok().map(|s| s.seen),
            users_changed: result
                .as_ref()
                .ok()
                .map(|s| s.created + s.updated + s.deactivated),
            detail: result.as_ref().err().map(|e| shared::Chain(e).to_string()),
        };
        if let Err(error) = records::sync_run(&mut lock_conn, &run).await {
            tracing::warn!(error = %shared::Chain(&error), "could not record the sync run for `worker status`");
        }
        let _ = unlock(&mut lock_conn, &key).await;
        result
    }

    async fn sync_directory_locked(
        &self,
        org: &str,
        dir: &str,
        single_directory: bool,
        progress: &mut Progress,
    ) -> Result<Summary, SyncError> {
        let mut s = Summary::default();
        let started = Instant::now();
        // Groups first, so memberships find them in the catalogue.
        let mut listing = Listing::new("groups", self.max_pages);
        while let Some(token) = listing.next_token() {
            let page = self
                .unless_stopped(self.client.groups_page(org, dir, token.as_deref()))
                .await?;
            let read_at = chrono::Utc::now();
            s.pages += 1;
            s.groups += page.items.len();
            let events = page
                .items
                .iter()
                .filter(|g| !g.id.is_empty())
                .map(|g| {
                    let (id, body) = snapshot::group_event(org, dir, g, read_at);
                    (id, body, shared::EventType::GroupUpdated.as_str())
                })
                .collect();
            self.publish_all(events, org).await?;
            listing.take(&page)?;
        }
        // Deactivations are stamped with this: any event about a user that occurred while the
        // listing ran (a user created after its pages were read) is newer and wins.
        let listing_started = chrono::Utc::now();
        let mut listing = Listing::new("users", self.max_pages);
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(token) = listing.next_token() {
            let page = self
                .unless_stopped(self.client.users_page(org, dir, token.as_deref()))
                .await?;
            let read_at = chrono::Utc::now();
            s.pages += 1;
            let keys: Vec<Key> = page
                .items
                .iter()
                .map(|u| (org.to_owned(), u.id.clone()))
                .collect();
            let stored = {
                let mut conn = self.pool.get().await?;
                load_users(&mut conn, &keys).await?
            };
            let mut events = Vec::with_capacity(page.items.len());
            for (user, key) in page.items.iter().zip(&keys) {
                if user.id.is_empty() || !seen.insert(user.id.clone()) {
                    continue;
                }
                let (id, body) = snapshot::user_event(org, dir, user, read_at);
                match snapshot::classify(org, stored.get(key), &body) {
                    Change::Created => s.created += 1,
                    Change::Updated => s.updated += 1,
                    Change::Unchanged => s.unchanged += 1,
                }
                events.push((id, body, shared::EventType::UserUpdated.as_str()));
            }
            s.seen = seen.len();
            self.publish_all(events, org).await?;
            progress.page(s.pages, s.seen, started.elapsed());
            listing.take(&page)?;
        }
        if self.stop.is_cancelled() {
            return Err(SyncError::Cancelled);
        }
        // The listing is complete (`Listing` said so): whoever is stored as active but was not listed is gone.
        let active = {
            let mut conn = self.pool.get().await?;
            store::active_users(&mut conn, org, dir, single_directory).await?
        };
        let gone: Vec<_> = active
            .iter()
            .filter(|(id, _)| !seen.contains(id))
            .map(|(id, version)| {
                let (eid, body) =
                    snapshot::deactivation_event(org, dir, id, version, listing_started);
                (eid, body, shared::EventType::UserDeleted.as_str())
            })
            .collect();
        s.deactivated = gone.len();
        for chunk in gone.chunks(256) {
            self.publish_all(chunk.to_vec(), org).await?;
        }
        let mut conn = self.pool.get().await?;
        store::mark_synced(&mut conn, org, dir).await?;
        progress.done(&s, started.elapsed());
        Ok(s)
    }
}

async fn try_lock(
    conn: &mut diesel_async::AsyncPgConnection,
    key: &str,
) -> diesel::QueryResult<bool> {
    use diesel::sql_types::{Bool, Text};
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = Bool)]
        locked: bool,
    }
    let r: Locked =
        diesel::sql_query("SELECT pg_try_advisory_lock(hashtextextended($1, 1)) AS locked")
            .bind::<Text, _>(key)
            .get_result(conn)
            .await?;
    Ok(r.locked)
}

async fn unlock(conn: &mut diesel_async::AsyncPgConnection, key: &str) -> diesel::QueryResult<()> {
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;
    diesel::sql_query("SELECT pg_advisory_unlock(hashtextextended($1, 1))")
        .bind::<Text, _>(key)
        .execute(conn)
        .await
        .map(|_| ())
}
