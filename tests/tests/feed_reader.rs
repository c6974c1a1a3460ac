//! The `change-feed` reader against a real stream: a subscription that receives nothing while
//! the stream has newer changes (here: a stored offset past the member's end, as after a
//! restarted member reused offsets) is found silent and replaced within seconds; a quiet
//! subscription with nothing pending is left alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use change_feed::{Application, Change, FeedConfig, Position};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use shared::amqp::lapin;
use shared::changes::{ChangeKind, ChangePayload, header};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::{amqp_url, delete_topology, unique_prefix, wait_until};
use tokio_util::sync::CancellationToken;

/// An application that keeps its applied seqs in memory, starting from `start`.
#[derive(Clone)]
struct Memory {
    start: Option<Position>,
    applied: Arc<Mutex<Vec<i64>>>,
}

type Never = std::convert::Infallible;

impl Application for Memory {
    type Error = Never;
    async fn position(&mut self) -> Result<Option<Position>, Never> {
        let applied = self.applied.lock().unwrap();
        Ok(match applied.last() {
            // The offset is not tracked here: any resubscription after the first goes by seq.
            Some(seq) => Some(Position {
                seq: *seq,
                offset: self.start.map_or(0, |p| p.offset),
            }),
            None => self.start,
        })
    }
    async fn apply(&mut self, change: &Change, _at: Position) -> Result<(), Never> {
        self.applied.lock().unwrap().push(change.seq);
        Ok(())
    }
}

fn change(seq: i64) -> Change {
    Change {
        id: format!("chg_{seq}"),
        seq,
        kind: ChangeKind::DirectoryEnabled,
        organization_id: "org_1".into(),
        cause_event_id: format!("evt_{seq}"),
        occurred_at: chrono::Utc::now(),
        committed_at: chrono::Utc::now(),
        payload: ChangePayload::default(),
    }
}

/// Publishes changes `seqs` to the feed's exchange as the relay does (confirmed).
async fn publish(
    connection: &lapin::Connection,
    exchange: &str,
    seqs: std::ops::RangeInclusive<i64>,
) {
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for seq in seqs {
        let mut headers = FieldTable::default();
        headers.insert(header::SEQ.into(), AMQPValue::LongLongInt(seq));
        let body = serde_json::to_vec(&change(seq)).unwrap();
        channel
            .basic_publish(
                exchange.into(),
                "directory.enabled".into(),
                BasicPublishOptions::default(),
                &body,
                lapin::BasicProperties::default().with_headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_subscription_is_replaced_and_a_quiet_one_is_not() {
    let prefix = unique_prefix("feed");
    let topology = shared::Topology::new(prefix.clone()).with_changes(Duration::from_secs(3600));
    let connection = shared::amqp::connect(&amqp_url(), "feed-reader-test")
        .await
        .unwrap();
    shared::amqp::declare_topology(&connection, &topology)
        .await
        .unwrap();
    publish(&connection, &topology.changes_exchange(), 1..=5).await;

    // Stored: seq 2 at an offset far past the stream's end. The subscription there is silent.
    let app = Memory {
        start: Some(Position {
            seq: 2,
            offset: 1_000_000,
        }),
        applied: Arc::default(),
    };
    let mut config = FeedConfig::new(amqp_url(), &prefix, "feed-reader-test");
    config.check_silence_after = Duration::from_secs(1);
    let stats = config.stats.clone();
    let stop = CancellationToken::new();
    let reader = {
        let (mut app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move { change_feed::run(&config, &mut app, &stop).await })
    };
    assert!(
        wait_until(Duration::from_secs(15), || async {
            app.applied.lock().unwrap().as_slice() == [3, 4, 5]
        })
        .await,
        "the reader left its silent subscription: {:?}",
        app.applied.lock().unwrap()
    );
    assert_eq!(stats.silent_resubscriptions(), 1, "found silent once");

    // Caught up and quiet: checks find nothing newer and leave the subscription alone; what
    // comes next arrives on it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(stats.silence_checks() >= 2, "quiet spells were checked");
    assert_eq!(stats.silent_resubscriptions(), 1);
    publish(&connection, &topology.changes_exchange(), 6..=7).await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            app.applied.lock().unwrap().as_slice() == [3, 4, 5, 6, 7]
        })
        .await
    );
    assert_eq!(
        stats.subscriptions(),
        2,
        "no resubscription while nothing was pending"
    );

    stop.cancel();
    reader.await.unwrap().unwrap();
    let _ = connection.close(200, "done".into()).await;
    let _ = delete_topology(&amqp_url(), &topology, &[]).await;
}
