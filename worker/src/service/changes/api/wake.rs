//! Wakes long-polls when changes commit: one connection per worker listens on the channel every
//! transaction that writes changes notifies at commit (`crate::service::apply::outbox`), and bumps a
//! counter the waiting requests watch. While it is down, requests fall back to polling.

use crate::service::apply::outbox::NOTIFY_CHANNEL;
use crate::service::db::Timeouts;
use diesel_async::RunQueryDsl;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often a waiting request looks again without a notification (the listener may be down).
pub const FALLBACK_POLL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Wake {
    commits: watch::Sender<u64>,
}

impl Default for Wake {
    fn default() -> Self {
        Self {
            commits: watch::channel(0).0,
        }
    }
}

impl Wake {
    /// A receiver that sees every commit after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Listens until `stop`, reconnecting (1 s, then up to 10 s apart) when the connection fails.
    pub async fn run(&self, database_url: &str, timeouts: Timeouts, stop: CancellationToken) {
        let mut delay = Duration::from_secs(1);
        while !stop.is_cancelled() {
            match self.listen(database_url, &timeouts, &stop).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, ?delay, "changes API: commit listener failed; requests poll meanwhile");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    /// Listens until `stop` (`Ok`) or the connection fails (why, for the log).
    async fn listen(
        &self,
        database_url: &str,
        timeouts: &Timeouts,
        stop: &CancellationToken,
    ) -> Result<(), String> {
        let connect = crate::service::db::connect(database_url, timeouts);
        let mut conn = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| "no database connection within 5s".to_owned())?
            .map_err(|e| shared::Chain(&e).to_string())?;
        diesel::sql_query(format!("LISTEN {NOTIFY_CHANNEL}"))
            .execute(&mut conn)
            .await
            .map_err(|e| shared::Chain(&e).to_string())?;
        // Anything committed while the listener was away is found by the first look of each
        // request; one wake now covers the gap for those already waiting.
        self.commits.send_modify(|n| *n += 1);
        let mut notifications = std::pin::pin!(conn.notifications_stream());
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                next = notifications.next() => match next {
                    Some(Ok(_)) => self.commits.send_modify(|n| *n += 1),
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("the notification stream ended".to_owned()),
                },
            }
        }
    }
}
