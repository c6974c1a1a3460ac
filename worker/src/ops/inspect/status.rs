//! `worker status`: the deployment at a glance — each queue (apply, retry tiers, dead) with
//! its depth, rates and consumers; dead-lettered events by reason; the change relay's lag and
//! leader; the deprovisioning brake per organization; each directory's last sync; and whether
//! the database and the broker answer. Every part is read on its own: an unreachable broker
//! still leaves the database's parts, and the other way round.

use super::broker_api::ManagementApi;
use crate::service::changes::{leader, relay};
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shared::Topology;
use std::time::Duration;

/// How long each dependency may take to answer.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub checked_at: DateTime<Utc>,
    pub database: Reach,
    pub broker: Reach,
    pub queues: Vec<QueueStatus>,
    /// Where the rates come from, or why there are none.
    pub rates: String,
    pub dead_letters: Vec<DeadReasonCount>,
    pub relay: Option<RelayStatus>,
    pub brakes: Vec<BrakeStatus>,
    pub syncs: Vec<SyncStatus>,
}

impl Status {
    /// Both dependencies answered.
    pub fn healthy(&self) -> bool {
        self.database.ok && self.broker.ok
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Reach {
    pub ok: bool,
    pub error: Option<String>,
}

impl Reach {
    fn from<T, E: std::fmt::Display>(r: &Result<T, E>) -> Self {
        match r {
            Ok(_) => Self {
                ok: true,
                error: None,
            },
            Err(e) => Self {
                ok: false,
                error: Some(e.to_string()),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueStatus {
    pub name: String,
    /// `apply`, `retry <delay>` or `dead`.
    pub role: String,
    /// Ready messages, now (AMQP).
    pub messages: u64,
    /// Delivered to a consumer, not yet acknowledged (management API: up to 5 s old).
    pub unacked: Option<u64>,
    pub consumers: u64,
    /// Messages per second in and acknowledged, from the management API.
    pub publish_rate: Option<f64>,
    pub ack_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize, diesel::QueryableByName)]
pub struct DeadReasonCount {
    #[diesel(sql_type = Text)]
    pub reason: String,
    #[diesel(sql_type = BigInt)]
    pub events: i64,
    #[diesel(sql_type = Timestamptz)]
    pub last_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RelayStatus {
    pub unpublished: i64,
    /// Age of the oldest unpublished change (0 when none).
    pub lag_seconds: f64,
    /// Some worker holds the relay's leader lock.
    pub leader: bool,
    pub last_published_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BrakeStatus {
    pub organization_id: String,
    pub held: i64,
    pub engaged_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, diesel::QueryableByName)]
pub struct SyncStatus {
    #[diesel(sql_type = Text)]
    pub organization_id: String,
    #[diesel(sql_type = Text)]
    pub directory_id: String,
    /// As the last directory event said; `None` when no directory event was stored.
    #[diesel(sql_type = Nullable<Bool>)]
    pub enabled: Option<bool>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub finished_at: Option<DateTime<Utc>>,
    /// `ok`, `failed`, or `None` when it never ran.
    #[diesel(sql_type = Nullable<Text>)]
    pub outcome: Option<String>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub users_listed: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub users_changed: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    pub detail: Option<String>,
}

/// Where to look.
pub struct Sources<'a> {
    pub amqp_url: &'a str,
    pub management_url: Option<&'a str>,
    pub topology: &'a Topology,
    pub database_url: &'a str,
    pub timeouts: &'a crate::service::db::Timeouts,
}

/// Reads everything; never fails (what could not be read says why).
pub async fn collect(src: &Sources<'_>) -> Status {
    let (broker, queues, rates) = broker_part(src).await;
    let db = tokio::time::timeout(
        REACH_TIMEOUT,
        crate::service::db::connect(src.database_url, src.timeouts),
    )
    .await
    .map_err(|_| format!("no connection within {REACH_TIMEOUT:?}"))
    .and_then(|r| r.map_err(|e| shared::Chain(&e).to_string()));
    let mut status = Status {
        checked_at: Utc::now(),
        database: Reach::from(&db),
        broker,
        queues,
        rates,
        dead_letters: Vec::new(),
        relay: None,
        brakes: Vec::new(),
        syncs: Vec::new(),
    };
    if let Ok(mut conn) = db
        && let Err(e) = database_part(&mut conn, &mut status).await
    {
        status.database = Reach {
            ok: false,
            error: Some(shared::Chain(&e).to_string()),
        };
    }
    status
}

async fn broker_part(src: &Sources<'_>) -> (Reach, Vec<QueueStatus>, String) {
    let t = src.topology;
    let mut wanted = vec![(t.apply_queue(), "apply".to_owned())];
    for tier in t.tiers() {
        wanted.push((t.retry_queue(tier), format!("retry {}", tier.name)));
    }
    wanted.push((t.dead_queue(), "dead".to_owned()));
    let name = shared::amqp::connection_name("status");
    let connection =
        tokio::time::timeout(REACH_TIMEOUT, shared::amqp::connect(src.amqp_url, &name))
            .await
            .map_err(|_| format!("no connection within {REACH_TIMEOUT:?}"))
            .and_then(|r| r.map_err(|e| shared::Chain(&e).to_string()));
    let reach = Reach::from(&connection);
    let Ok(connection) = connection else {
        return (reach, Vec::new(), "broker unreachable".into());
    };
    let api = ManagementApi::new(src.amqp_url, src.management_url);
    let mut rates = match &api {
        Ok(api) => format!("management API at {}", api.address()),
        Err(e) => shared::Chain(&e).to_string(),
    };
    let mut queues = Vec::with_capacity(wanted.len());
    for (queue, role) in wanted {
        // A passive declare of a missing queue closes its channel: one channel each.
        let counts = match connection.create_channel().await {
            Ok(ch) => {
                let c = shared::amqp::queue_counts(&ch, &queue).await;
                let _ = ch.close(200, "status".into()).await;
                c.ok()
            }
            Err(_) => None,
        };
        let info = match &api {
            Ok(api) => match api.queue(&queue).await {
                Ok(info) => Some(info),
                Err(e) => {
                    rates = format!("no rates: {}", shared::Chain(&e));
                    None
                }
            },
            Err(_) => None,
        };
        let Some((ready, consumers)) = counts else {
            continue; // not declared (yet)
        };
        queues.push(QueueStatus {
            name: queue,
            role,
            messages: u64::from(ready),
            unacked: info.as_ref().map(|i| i.messages_unacknowledged),
            consumers: u64::from(consumers),
            publish_rate: info.as_ref().map(|i| i.message_stats.publish_details.rate),
            ack_rate: info.as_ref().map(|i| i.message_stats.ack_details.rate),
        });
    }
    let _ = connection.close(200, "status".into()).await;
    (reach, queues, rates)
}

async fn database_part(
    conn: &mut AsyncPgConnection,
    status: &mut Status,
) -> diesel::QueryResult<()> {
    // Dead-lettered events not applied since (a replay that applied one removes it here).
    status.dead_letters = diesel::sql_query(
        "SELECT reason, count(*) AS events, max(dead_lettered_at) AS last_at \
         FROM dead_lettered_events d \
         WHERE NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.event_id = d.event_id) \
         GROUP BY reason ORDER BY events DESC, reason",
    )
    .load(conn)
    .await?;
    // The backlog as the relay counts it; the lock as the leader takes it; the newest
    // published row from the top of the primary key.
    let backlog = relay::backlog(conn, None).await?;
    #[derive(diesel::QueryableByName)]
    struct Newest {
        #[diesel(sql_type = Nullable<Timestamptz>)]
        published_at: Option<DateTime<Utc>>,
    }
    let newest: Newest = diesel::sql_query(
        "SELECT (SELECT published_at FROM changes WHERE published_at IS NOT NULL \
                 ORDER BY seq DESC LIMIT 1) AS published_at",
    )
    .get_result(conn)
    .await?;
    status.relay = Some(RelayStatus {
        unpublished: backlog.changes,
        lag_seconds: backlog.lag_seconds,
        leader: leader::is_held(conn, relay::LEADER_LOCK).await?,
        last_published_at: newest.published_at,
    });
    status.brakes = crate::service::brake::store::held_organizations(conn)
        .await?
        .into_iter()
        .map(|b| BrakeStatus {
            organization_id: b.organization_id,
            held: b.held,
            engaged_at: b.engaged_at,
        })
        .collect();
    // Directories stored from events, and any a sync ran for.
    status.syncs = diesel::sql_query(
        "SELECT k.organization_id, k.directory_id, d.enabled, r.finished_at, r.outcome, \
                r.users_listed, r.users_changed, r.detail \
         FROM (SELECT organization_id, id AS directory_id FROM directories \
               UNION SELECT organization_id, directory_id FROM sync_runs \
                     WHERE directory_id IS NOT NULL) k \
         LEFT JOIN directories d ON d.organization_id = k.organization_id AND d.id = k.directory_id \
         LEFT JOIN LATERAL ( \
             SELECT finished_at, outcome, users_listed, users_changed, detail FROM sync_runs s \
             WHERE s.organization_id = k.organization_id AND s.directory_id = k.directory_id \
             ORDER BY finished_at DESC LIMIT 1) r ON true \
         ORDER BY k.organization_id, k.directory_id",
    )
    .load(conn)
    .await?;
    Ok(())
}
