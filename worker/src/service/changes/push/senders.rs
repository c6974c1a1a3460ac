//! Each organization's sender: a task that posts the batches handed to it in order, each
//! until a 2xx, the next right after, so the leader's loop is never between an answer and the
//! next request; it ends when the leader drops its channel (nothing more handed).

use super::plan::{AHEAD, Batch};
use super::send::{self, Attempt, Target};
use std::collections::HashMap;
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

/// The organizations' senders of one endpoint, by organization.
#[derive(Default)]
pub(super) struct Senders(HashMap<String, mpsc::Sender<Batch>>);

/// What a sender posts with, and whose answers it reports.
pub(super) struct Origin<'a> {
    pub(super) target: &'a Arc<Target>,
    pub(super) endpoint: usize,
    pub(super) epoch: u64,
    pub(super) cancel: &'a CancellationToken,
}

impl Senders {
    /// Hands each batch (in order) to its organization's sender, started when it has none.
    pub(super) fn hand(
        &mut self,
        batches: Vec<Batch>,
        origin: &Origin<'_>,
        channels: &Channels,
        tasks: &mut JoinSet<()>,
    ) {
        for batch in batches {
            let batch = match self.0.get(&batch.organization_id) {
                Some(tx) => match tx.try_send(batch) {
                    Ok(()) => continue,
                    Err(
                        mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b),
                    ) => b,
                },
                None => batch,
            };
            let (tx, rx) = mpsc::channel(AHEAD);
            let org = batch.organization_id.clone();
            // A fresh channel has room for it.
            let _ = tx.try_send(batch);
            self.0.insert(org, tx);
            tasks.spawn(sender(
                Arc::clone(origin.target),
                origin.endpoint,
                origin.epoch,
                rx,
                channels.done.clone(),
                channels.failures.clone(),
                origin.cancel.clone(),
            ));
        }
    }

    /// The organization has nothing handed: its sender ends (a new one starts with its next
    /// batch).
    pub(super) fn idle(&mut self, organization_id: &str) {
        self.0.remove(organization_id);
    }

    /// Every sender ends (their batches are abandoned).
    pub(super) fn clear(&mut self) {
        self.0.clear();
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
