//! A `Syncer` wired to a fake Directory API, the test's broker and database.

use super::fake_scalekit::FakeScalekit;
use shared::amqp::BrokerLink;
use std::time::Duration;
use testkit::db::TestDb;
use testkit::worker::{Broker, cli};
use worker::service::sync::Syncer;

/// A syncer (own client, so its own token cache) and the broker link it publishes on.
pub async fn syncer(
    broker: &Broker,
    db: &TestDb,
    fake: &FakeScalekit,
    extra: &[&str],
) -> (Syncer, BrokerLink) {
    let mut args = fake.options().to_vec();
    args.extend_from_slice(extra);
    let run = cli(&broker.prefix, &db.url, &args);
    let link = BrokerLink::start(
        testkit::amqp_url(),
        "sync-test".into(),
        Some(run.broker.topology()),
        1,
    );
    assert!(link.wait_ready(Duration::from_secs(10)).await);
    let s = worker::service::startup::syncer(
        &run.scalekit,
        &run.broker,
        link.clone(),
        worker::service::db::pool(&db.url, 4),
        tokio_util::sync::CancellationToken::new(),
    )
    .unwrap();
    (s, link)
}
