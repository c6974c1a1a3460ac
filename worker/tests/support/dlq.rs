//! Dead-letter queue fixtures shared by the dlq suites.

use lapin::options::ConfirmSelectOptions;
use shared::amqp::{mark_dead, properties, publish_confirmed};
use shared::{DeadReason, MessageMeta, Source};
use std::time::Duration;
use testkit::worker::Broker;
use worker::ops::dlq::message::Filter;
use worker::ops::dlq::{ReplayOptions, list};

pub const TYPES: [&str; 4] = [
    "organization.directory.user_created",
    "organization.directory.user_updated",
    "organization.directory.group_created",
    "organization.directory.user_deleted",
];
pub const REASONS: [DeadReason; 3] = [
    DeadReason::Invalid,
    DeadReason::Malformed,
    DeadReason::RetriesExhausted,
];

pub struct Dead {
    pub id: String,
    pub event_type: &'static str,
    pub org: String,
    pub reason: DeadReason,
    pub replays: u32,
}

pub fn mixed(i: usize) -> Dead {
    Dead {
        id: format!("evt_dead_{i:04}"),
        event_type: TYPES[i % 4],
        org: format!("org_{}", i % 5),
        reason: REASONS[i % 3],
        replays: 0,
    }
}

pub async fn dead_letter(broker: &Broker, items: &[Dead]) {
    let ch = broker.tap.connection.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for d in items {
        let meta = MessageMeta {
            replay_count: d.replays,
            ..MessageMeta::event(
                d.id.as_str(),
                d.event_type,
                Some(d.org.clone()),
                Source::Webhook,
            )
            .with_webhook_id(format!("msg_{}", d.id))
        };
        let body = serde_json::to_vec(&serde_json::json!({"id": d.id})).unwrap();
        let props = mark_dead(properties(&meta), d.reason, "test");
        publish_confirmed(
            &ch,
            &broker.topology.dead_exchange(),
            d.event_type,
            &body,
            props,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    }
}

pub async fn ids_in_dlq(broker: &Broker) -> Vec<String> {
    let (all, _) = list(
        &testkit::amqp_url(),
        &broker.topology,
        &Filter::default(),
        usize::MAX,
    )
    .await
    .unwrap();
    all.into_iter().map(|m| m.event_id).collect()
}

pub fn opts(filter: Filter) -> ReplayOptions {
    ReplayOptions {
        filter,
        max: None,
        rate: None,
        dry_run: false,
        force: false,
        max_replays: 3,
    }
}

pub fn worker_cmd(broker: &Broker, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_worker"));
    cmd.args(args)
        .env("AMQP_URL", testkit::amqp_url())
        .env("AMQP_PREFIX", &broker.prefix)
        .env("WORKER_RETRY_TIERS", testkit::worker::RETRY_TIERS)
        .env("LOG_FORMAT", "pretty")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    cmd
}
