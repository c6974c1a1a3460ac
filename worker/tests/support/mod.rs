#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod apply;
pub mod db;
pub mod dlq;
pub mod env;
pub mod fake_scalekit;

use shared::{MessageMeta, Source, WebhookEvent};

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

#[allow(unused_imports)] // each suite uses a part
pub use shared::testkit::{FIXTURES, fixture};
