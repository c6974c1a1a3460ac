#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod db;
pub mod dlq;
pub mod fake_scalekit;

use shared::{MessageMeta, Source, WebhookEvent};

pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/events")
        .join(name);
    std::fs::read(path).unwrap()
}

pub const FIXTURES: [&str; 8] = [
    "01_directory_enabled.json",
    "02_group_created.json",
    "03_user_created.json",
    "04_user_updated.json",
    "05_group_updated.json",
    "06_user_deleted.json",
    "07_group_deleted.json",
    "08_directory_disabled.json",
];

pub fn parsed(body: &[u8]) -> (MessageMeta, WebhookEvent) {
    let event = WebhookEvent::parse(body).unwrap();
    let meta = MessageMeta {
        message_id: event.envelope.id.as_str().to_owned(),
        webhook_id: Some(format!("msg_{}", event.envelope.id)),
        event_type: event.envelope.event_type.clone(),
        organization_id: event.organization_id().map(|o| o.as_str().to_owned()),
        occurred_at: None,
        source: Source::Webhook,
        retry_count: 0,
        replay_count: 0,
    };
    (meta, event)
}
