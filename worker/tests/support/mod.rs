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
        occurred_at: None,
        ..MessageMeta::of_envelope(&event.envelope, Source::Webhook)
            .with_webhook_id(format!("msg_{}", event.envelope.id))
    };
    (meta, event)
}

#[allow(unused_imports)] // each suite uses a part
pub use shared::testkit::{FIXTURES, fixture};
