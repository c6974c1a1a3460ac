//! The change-feed checks every end-to-end and fault scenario makes at its end: the relay has
//! published everything, an independent reader of the stream finds every change once, in commit
//! order, valid against `docs/changes.schema.json`, rebuilding each user as the tables have it,
//! and no webhook (duplicates included) caused the same change twice.

use std::collections::BTreeSet;
use std::time::Duration;
use testkit::feed::{FeedReport, check_against_tables, check_order, read_stream, wait_published};
use testkit::stack::Stack;

/// The JSON Schema of a change, as committed.
pub fn schema() -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/changes.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// Runs every check; `validate` is the schema check (a closure, so this crate's library does
/// not carry the validator).
pub async fn check_feed(
    stack: &Stack,
    validate: impl Fn(&serde_json::Value) -> Result<(), String>,
) -> anyhow::Result<FeedReport> {
    wait_published(&stack.db, Duration::from_secs(60)).await?;
    let messages = read_stream(&stack.amqp, &stack.topology).await?;
    anyhow::ensure!(!messages.is_empty(), "the stream is empty");
    for m in &messages {
        validate(m).map_err(|e| anyhow::anyhow!("{e}: {m}"))?;
    }
    let report = check_order(&messages)?;
    check_against_tables(&stack.db, &report).await?;
    // One event, one change per kind and entity: a duplicate webhook applied twice would show.
    let mut seen = BTreeSet::new();
    for c in &report.changes {
        let entity = c
            .payload
            .user
            .as_ref()
            .map(|u| u.directory_user_id.clone())
            .or_else(|| {
                c.payload
                    .group
                    .as_ref()
                    .map(|g| g.directory_group_id.clone())
            })
            .or_else(|| c.payload.directory.as_ref().map(|d| d.id.clone()))
            .unwrap_or_default();
        anyhow::ensure!(
            seen.insert((c.cause_event_id.clone(), c.kind, entity.clone())),
            "{} made {} of {entity} twice",
            c.cause_event_id,
            c.kind
        );
    }
    Ok(report)
}
