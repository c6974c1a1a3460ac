//! The change feed from a test's side: wait until the relay has published everything, read the
//! whole stream back with a plain AMQP consumer of its own (independent of the product's
//! readers: `worker changes tail` and the `change-feed` crate skip re-published changes, this
//! one returns every message so that re-publishes can be checked), and check it against the
//! tables.

use crate::db::TestDb;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use shared::Topology;
use shared::changes::{Change, UserState};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Waits until no change in the test's outbox is unpublished.
pub async fn wait_published(db: &TestDb, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = db
            .try_count("SELECT count(*) AS n FROM changes WHERE published_at IS NULL")
            .await
            .unwrap_or(-1);
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{left} changes still unpublished after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every message of the stream, in stream order, as raw JSON values: from the first the stream
/// keeps until nothing arrived for 3 s.
pub async fn read_stream(
    amqp_url: &str,
    topology: &Topology,
) -> anyhow::Result<Vec<serde_json::Value>> {
    // Right after a node restarts, its replica of the stream may not be up yet ("does not
    // have a replica on the local node"): a reader tries again, as an application would.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match read_all(amqp_url, topology, Duration::from_secs(3)).await {
            Ok(messages) => return Ok(messages),
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("reading the stream: {e}; again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn read_all(
    amqp_url: &str,
    topology: &Topology,
    idle: Duration,
) -> anyhow::Result<Vec<serde_json::Value>> {
    // Connecting as every binary does (several nodes, TLS); the reading is its own.
    let connection = shared::amqp::connect(amqp_url, "test-stream-reader").await?;
    let channel = connection.create_channel().await?;
    channel.basic_qos(500, BasicQosOptions::default()).await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-stream-offset".into(),
        AMQPValue::LongString(LongString::from(b"first".to_vec())),
    );
    let mut consumer = channel
        .basic_consume(
            topology.changes_stream().as_str().into(),
            "test-stream-reader".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await?;
    let mut messages = Vec::new();
    while let Ok(Some(delivery)) = tokio::time::timeout(idle, consumer.next()).await {
        let delivery = delivery?;
        messages.push(serde_json::from_slice(&delivery.data)?);
        delivery.acker.ack(BasicAckOptions::default()).await?;
    }
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(messages)
}

/// What a stream reader sees, checked.
#[derive(Debug, Default)]
pub struct FeedReport {
    /// Changes after dropping re-published ones, in order.
    pub changes: Vec<Change>,
    /// Messages that were re-publishes of a change already read.
    pub republished: usize,
    /// The last user snapshot of each (organization, user).
    pub users: BTreeMap<(String, String), UserState>,
}

/// Reads the stream as an independent consumer would: a message whose `seq` is not above every
/// `seq` seen is a re-publish and must repeat that change exactly (same `id`, same body); the
/// rest must come in strictly increasing `seq`.
pub fn check_order(messages: &[serde_json::Value]) -> anyhow::Result<FeedReport> {
    let mut report = FeedReport::default();
    let mut first: BTreeMap<i64, serde_json::Value> = BTreeMap::new();
    let mut max_seq = 0;
    for m in messages {
        let change: Change = serde_json::from_value(m.clone())?;
        if change.seq <= max_seq {
            let earlier = first.get(&change.seq).ok_or_else(|| {
                anyhow::anyhow!("seq {} out of order, never seen before", change.seq)
            })?;
            anyhow::ensure!(earlier == m, "re-published seq {} differs", change.seq);
            report.republished += 1;
            continue;
        }
        max_seq = change.seq;
        first.insert(change.seq, m.clone());
        if let Some(user) = &change.payload.user {
            report.users.insert(
                (
                    change.organization_id.clone(),
                    user.directory_user_id.clone(),
                ),
                user.clone(),
            );
        }
        report.changes.push(change);
    }
    Ok(report)
}

#[derive(diesel::QueryableByName)]
struct OutboxRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
}

/// The feed holds exactly the outbox (every committed change, once), and the last snapshot of
/// every user equals the tables; users never provisioned are absent from it.
pub async fn check_against_tables(db: &TestDb, report: &FeedReport) -> anyhow::Result<()> {
    use diesel_async::RunQueryDsl;
    let mut conn = db.connect().await;
    let rows: Vec<OutboxRow> = diesel::sql_query("SELECT seq, id FROM changes ORDER BY seq")
        .load(&mut conn)
        .await?;
    let outbox: Vec<(i64, &str)> = rows.iter().map(|r| (r.seq, r.id.as_str())).collect();
    let fed: Vec<(i64, &str)> = report
        .changes
        .iter()
        .map(|c| (c.seq, c.id.as_str()))
        .collect();
    anyhow::ensure!(
        outbox == fed,
        "the feed ({} changes) is not the outbox ({} rows)",
        fed.len(),
        outbox.len()
    );
    let tables = crate::tables::read(&mut conn).await?;
    let provisioned: BTreeSet<(String, String)> = {
        #[derive(diesel::QueryableByName)]
        struct Key {
            #[diesel(sql_type = diesel::sql_types::Text)]
            organization_id: String,
            #[diesel(sql_type = diesel::sql_types::Text)]
            directory_user_id: String,
        }
        let keys: Vec<Key> = diesel::sql_query(
            "SELECT organization_id, directory_user_id FROM directory_users WHERE provisioned_at IS NOT NULL AND erased_at IS NULL",
        )
        .load(&mut conn)
        .await?;
        keys.into_iter()
            .map(|k| (k.organization_id, k.directory_user_id))
            .collect()
    };
    let mut roles: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (org, user, role, _) in &tables.roles {
        roles
            .entry((org.clone(), user.clone()))
            .or_default()
            .insert(role.clone());
    }
    let mut groups: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (org, user, group) in &tables.memberships {
        groups
            .entry((org.clone(), user.clone()))
            .or_default()
            .insert(group.clone());
    }
    for (org, user, email, given, family, display, active, _, erased, attributes) in &tables.users {
        let key = (org.clone(), user.clone());
        let Some(fed) = report.users.get(&key) else {
            anyhow::ensure!(
                !provisioned.contains(&key),
                "provisioned user {org}/{user} never appeared in the feed"
            );
            continue;
        };
        if *erased {
            continue;
        }
        let want = UserState {
            directory_user_id: user.clone(),
            email: email.clone(),
            given_name: given.clone(),
            family_name: family.clone(),
            display_name: display.clone(),
            external_id: attributes
                .get("dp_id")
                .and_then(serde_json::Value::as_str)
                .filter(|id| !id.is_empty())
                .map(str::to_owned),
            active: *active,
            roles: roles.remove(&key).unwrap_or_default().into_iter().collect(),
            groups: groups
                .remove(&key)
                .unwrap_or_default()
                .into_iter()
                .collect(),
        };
        anyhow::ensure!(
            *fed == want,
            "{org}/{user}: the feed says {fed:?}, the tables {want:?}"
        );
    }
    Ok(())
}
