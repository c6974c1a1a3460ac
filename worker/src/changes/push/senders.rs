//! Each organization's sender: a task that posts the batches handed to it in order, each
//! until a 2xx, the next right after, so the leader's loop is never between an answer and the
//! next request; it ends when the leader drops its channel (nothing more handed).

use super::PushSettings;
use super::live::Live;
use super::plan::{AHEAD, Batch};
use super::send::{self, Attempt, Target};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What a delivery task returns.
pub(super) struct Done {
    pub(super) endpoint: usize,
    pub(super) epoch: u64,
    pub(super) organization_id: String,
    pub(super) last: i64,
    pub(super) count: usize,
    pub(super) delivered: bool,
}

/// Where delivery tasks report.
pub(super) struct Channels {
    pub(super) failures: mpsc::UnboundedSender<Attempt>,
    pub(super) done: mpsc::UnboundedSender<Done>,
}

/// Hands each batch the plan has ready to its organization's sender (started when it has
/// none).
pub(super) fn start(
    settings: &PushSettings,
    index: usize,
    live: &mut Live,
    channels: &Channels,
    tasks: &mut JoinSet<()>,
) {
    let Some(plan) = live.plan.as_mut() else {
        return;
    };
    let room = settings.concurrency.saturating_sub(plan.in_flight());
    for batch in plan.next_batches(room) {
        let batch = match live.senders.get(&batch.organization_id) {
            Some(tx) => match tx.try_send(batch) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b)) => b,
            },
            None => batch,
        };
        let (tx, rx) = mpsc::channel(AHEAD);
        let org = batch.organization_id.clone();
        // A fresh channel has room for it.
        let _ = tx.try_send(batch);
        live.senders.insert(org, tx);
        tasks.spawn(sender(
            Arc::clone(&live.target),
            index,
            live.epoch,
            rx,
            channels.done.clone(),
            channels.failures.clone(),
            live.cancel.clone(),
        ));
    }
}

/// One organization's sender: posts its batches in order, each until a 2xx (or `cancel`),
/// the next right after; ends when the leader drops its channel (nothing more handed).
async fn sender(
    target: Arc<Target>,
    index: usize,
    epoch: u64,
    mut batches: mpsc::Receiver<Batch>,
    done: mpsc::UnboundedSender<Done>,
    failures: mpsc::UnboundedSender<Attempt>,
    cancel: CancellationToken,
) {
    loop {
        let batch = tokio::select! {
            () = cancel.cancelled() => return,
            b = batches.recv() => match b {
                Some(b) => b,
                None => return,
            },
        };
        let delivered = send::deliver(&target, index, &batch, &failures, &cancel).await;
        let _ = done.send(Done {
            endpoint: index,
            epoch,
            organization_id: batch.organization_id,
            last: batch.last,
            count: batch.count,
            delivered,
        });
        if !delivered {
            return;
        }
    }
}
