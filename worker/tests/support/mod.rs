//! Worker-only helpers (the shared ones are the `testkit` crate): driving the applier directly,
//! filling the dead-letter queue, a fake Directory API and a syncer wired to it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod apply;
pub mod changes;
pub mod dlq;
pub mod fake_scalekit;
pub mod syncer;

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

/// A user event of `org` about user `i`: `kind` (`user_created`, …), its id suffix, time and
/// data.
pub fn user_event(
    org: &str,
    i: usize,
    kind: &str,
    suffix: &str,
    at: &str,
    data: serde_json::Value,
) -> Vec<u8> {
    let mut data = data;
    data["id"] = format!("diruser_{org}_{i:03}").into();
    data["organization_id"] = org.into();
    serde_json::to_vec(&serde_json::json!({
        "id": format!("evt_{org}_{suffix}{i:03}"), "type": format!("organization.directory.{kind}"),
        "object": "DirectoryUser", "spec_version": "1", "environment_id": "env_1",
        "organization_id": org, "occurred_at": at, "data": data
    }))
    .unwrap()
}

/// `user_deleted` of `org`'s user `i` (at 11:00 on 2026-01-01).
pub fn user_deleted(org: &str, i: usize) -> Vec<u8> {
    user_event(
        org,
        i,
        "user_deleted",
        "d",
        "2026-01-01T11:00:00Z",
        serde_json::json!({}),
    )
}

/// Runs a command (the worker binary, say) to its end and asserts that it succeeded, showing
/// its stderr otherwise.
pub async fn succeeded(
    mut cmd: impl std::borrow::BorrowMut<tokio::process::Command>,
) -> std::process::Output {
    let out = cmd.borrow_mut().output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[allow(unused_imports)] // each suite uses a part
pub use testkit::{FIXTURES, fixture};
