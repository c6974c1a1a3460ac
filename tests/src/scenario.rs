//! A stream under a fault, start to finish: the corpus sent like Scalekit (retried until 2xx)
//! in the background, then the checks every fault scenario makes — each event applied exactly
//! once, the end state equal to the in-order model, the change feed complete, in order and
//! schema-valid, and the example application converged.

use crate::corpus::{Corpus, delivery_order};
use std::sync::Arc;
use std::time::Duration;
use testkit::stack::{Delivery, Stack, send_all};

/// The sending task and its counts (`retried`: answers that were not 2xx).
pub struct Sender {
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub stats: Arc<Delivery>,
}

/// Starts sending the corpus (10 % duplicates, shuffled by `seed`) in the background.
pub fn send(stack: &Stack, corpus: &Corpus, seed: u64) -> Sender {
    send_bodies(stack, delivery_order(&corpus.events, 0.10, seed))
}

/// Starts sending these bodies in the background (part of a corpus's delivery order).
pub fn send_bodies(stack: &Stack, bodies: Vec<Vec<u8>>) -> Sender {
    crate::logs();
    let client = stack.client.clone();
    let url = stack.webhook_url();
    let stats = Arc::new(Delivery::default());
    let counts = Arc::clone(&stats);
    Sender {
        task: tokio::spawn(async move { send_all(&client, &url, bodies, 16, counts).await }),
        stats,
    }
}

/// Waits until at least `at_least` events were processed.
pub async fn wait_progress(stack: &Stack, at_least: i64) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while stack
        .count("SELECT count(*) AS n FROM processed_events")
        .await
        .unwrap_or(0)
        < at_least
    {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Waits for the sender and the pipeline, checks everything, tears the stack down.
pub async fn finish(
    stack: Stack,
    corpus: &Corpus,
    sender: Sender,
    apps: Vec<crate::app::RunningApp>,
) -> anyhow::Result<()> {
    sender.task.await??;
    stack
        .wait_processed(corpus.distinct_ids, Duration::from_secs(180))
        .await?;
    let mut got = stack.tables().await?;
    crate::corpus::sort(&mut got);
    anyhow::ensure!(got == corpus.expected, "end state differs from the model");
    let twice = stack
        .count("SELECT count(*) AS n FROM (SELECT event_id FROM audit_log WHERE action <> 'group_removed' GROUP BY event_id HAVING count(*) > 1) d")
        .await?;
    anyhow::ensure!(twice == 0, "{twice} events applied twice");
    let validator = jsonschema::validator_for(&crate::feed_check::schema())?;
    let report =
        crate::feed_check::check_feed(&stack, |m| validator.validate(m).map_err(|e| e.to_string()))
            .await?;
    eprintln!(
        "feed: {} changes, {} re-published",
        report.changes.len(),
        report.republished
    );
    for mut app in apps {
        app.converged(&stack.db).await?;
        if let Some(stats) = &app.stats {
            eprintln!(
                "{}: {} subscriptions, {} broker failures, {} silent resubscriptions, {} silence checks ({} suspected)",
                app.name,
                stats.subscriptions(),
                stats.broker_failures(),
                stats.silent_resubscriptions(),
                stats.silence_checks(),
                stats.suspected_silences()
            );
            // Converging is not enough: it must not have needed its silence check to get there
            // (a subscription that went silent while changes were pending).
            anyhow::ensure!(
                stats.silent_resubscriptions() == 0,
                "{}: {} subscriptions went silent while the feed moved on",
                app.name,
                stats.silent_resubscriptions()
            );
        }
        app.stop().await?;
    }
    stack.teardown().await;
    Ok(())
}
