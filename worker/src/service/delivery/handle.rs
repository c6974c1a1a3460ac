//! One delivery, start to finish: parse → apply (one transaction) → ack; or forward to a retry
//! tier / the dead-letter queue (confirmed) → ack. Nothing is acked before that.

use super::disposition::{
    Class, Disposition, after_failure, classify_apply, classify_parse, database_unavailable,
    retry_cause,
};
use super::forward;
use crate::service::apply::{Applier, Outcome};
use crate::service::metrics::Metrics;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use shared::amqp::{BrokerLink, meta_from_properties};
use shared::{Topology, WebhookEvent};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// What every delivery handler shares.
pub struct Handler {
    pub applier: Applier,
    pub link: BrokerLink,
    pub topology: Topology,
    pub metrics: Arc<Metrics>,
    /// Consecutive transient failures: handlers back off while the database is down
    /// instead of spinning messages through the retry tiers.
    pub transient_streak: AtomicU32,
    /// Where `directory_enabled` asks for a full sync (when the Directory API is configured).
    pub sync_trigger:
        Option<tokio::sync::mpsc::Sender<crate::service::sync::schedule::SyncRequest>>,
}

impl Handler {
    pub async fn handle(&self, delivery: Delivery) {
        let meta = meta_from_properties(&delivery.properties, delivery.routing_key.as_str());
        let span = tracing::info_span!(
            "event",
            event_id = %meta.message_id,
            event_type = %meta.event_type,
            organization_id = meta.organization_id.as_deref().unwrap_or(""),
            source = meta.source.as_str(),
            retry = meta.retry_count,
        );
        let _in_flight = self.in_flight(1);
        self.handle_inner(delivery, meta).instrument(span).await;
    }

    /// Counts `n` deliveries in flight (`scim_worker_in_flight`) until the guard drops.
    fn in_flight(&self, n: usize) -> InFlight<'_> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics.in_flight.inc_by(n);
        InFlight {
            gauge: &self.metrics.in_flight,
            n,
        }
    }

    async fn pause_if_failing(&self) {
        let streak = self.transient_streak.load(Ordering::Relaxed);
        if streak > 0 {
            let ms = 100u64.saturating_mul(1 << streak.min(6)).min(5_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// Applies a batch of deliveries (see `Applier::apply_batch`); parse failures and, when the
    /// batch fails, every event fall back to [`Handler::handle`].
    /// The deliveries must come from one channel whose earlier deliveries are all settled (a
    /// consume lane): the applied batch is acknowledged with one `multiple` ack.
    pub async fn handle_batch(&self, deliveries: Vec<Delivery>) {
        if deliveries.len() == 1 {
            for d in deliveries {
                self.handle(d).await;
            }
            return;
        }
        let mut parsed = Vec::with_capacity(deliveries.len());
        let mut items = Vec::with_capacity(deliveries.len());
        let mut unparsed = Vec::new();
        for d in deliveries {
            match WebhookEvent::parse(&d.data) {
                Ok(event) => {
                    items.push((
                        meta_from_properties(&d.properties, d.routing_key.as_str()),
                        event,
                    ));
                    parsed.push(d);
                }
                // Bodies that do not parse are classified (and forwarded) one by one.
                Err(_) => unparsed.push(d),
            }
        }
        for d in unparsed {
            self.handle(d).await;
        }
        if parsed.is_empty() {
            return;
        }
        self.pause_if_failing().await;
        let started = Instant::now();
        let result = {
            let _in_flight = self.in_flight(parsed.len());
            self.applier.apply_batch(&items).await
        };
        match result {
            Ok(outcomes) => {
                let per_event = started.elapsed().as_secs_f64() / parsed.len() as f64;
                for ((_, event), outcome) in items.iter().zip(&outcomes) {
                    self.metrics.apply_seconds.observe(per_event);
                    self.after_apply(event, *outcome);
                }
                // One `multiple` ack for the batch: this lane's earlier deliveries (earlier
                // batches, and this batch's events handled one by one above) are all settled,
                // so everything up to the newest tag here is exactly this batch.
                let newest = parsed.iter().max_by_key(|d| d.delivery_tag);
                let acked = match newest {
                    Some(d) => d
                        .acker
                        .ack(BasicAckOptions { multiple: true })
                        .await
                        .map_err(|e| shared::Chain(&e).to_string()),
                    None => Ok(true),
                };
                match acked {
                    Ok(_) => {
                        for ((meta, _), outcome) in items.iter().zip(&outcomes) {
                            self.metrics.count(&meta.event_type, outcome.as_str());
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, size = items.len(), "batch ack failed; its messages will be redelivered (and deduplicated)");
                    }
                }
                tracing::debug!(size = items.len(), "batch applied");
            }
            // The database is away: the whole batch goes to its retry tier now (each copy
            // confirmed before its original is acked), instead of event by event with pauses
            // that would outlast the broker's consumer timeout.
            Err(error) if database_unavailable(&error) => {
                tracing::warn!(error = %shared::Chain(&error), size = parsed.len(), "database unavailable; the batch goes to the retry tier");
                self.transient_streak.fetch_add(1, Ordering::Relaxed);
                for (d, (meta, _)) in parsed.into_iter().zip(items) {
                    let disposition = self.after_error(Class::Transient, &error, &meta);
                    self.settle(d, &meta, disposition).await;
                }
            }
            Err(error) => {
                tracing::warn!(error = %shared::Chain(&error), size = parsed.len(), "batch failed; applying its events one by one");
                for d in parsed {
                    self.handle(d).await;
                }
            }
        }
    }

    /// The bookkeeping of an event the apply path took (batch or single): the database
    /// answered, so the failure streak ends; an applied event's lag is observed and a
    /// `directory_enabled` asks for a sync.
    fn after_apply(&self, event: &WebhookEvent, outcome: Outcome) {
        self.transient_streak.store(0, Ordering::Relaxed);
        if outcome == Outcome::Applied {
            self.trigger_sync(event);
            let lag = chrono::Utc::now() - event.envelope.occurred_at;
            self.metrics
                .lag_seconds
                .observe(lag.num_milliseconds().max(0) as f64 / 1000.0);
        }
    }

    /// What a failed apply becomes (batch or single): its retry tier or the dead-letter
    /// queue, with the error's chain as the reason; a retry is counted by cause.
    fn after_error(
        &self,
        class: Class,
        error: &crate::service::apply::ApplyError,
        meta: &shared::MessageMeta,
    ) -> Disposition {
        let next = after_failure(
            class,
            shared::Chain(error).to_string(),
            meta.retry_count,
            &self.topology,
        );
        if matches!(next, Disposition::Retry { .. }) {
            self.metrics.count_retry(retry_cause(error));
        }
        next
    }

    fn trigger_sync(&self, event: &WebhookEvent) {
        let (Some(trigger), shared::Event::DirectoryEnabled(dir)) =
            (&self.sync_trigger, &event.event)
        else {
            return;
        };
        let req = crate::service::sync::schedule::SyncRequest {
            organization_id: dir.organization_id.as_str().to_owned(),
            directory_id: Some(dir.id.as_str().to_owned()),
        };
        if trigger.try_send(req).is_err() {
            tracing::warn!("sync queue full; the directory will be synced by the next run");
        }
    }

    async fn handle_inner(&self, delivery: Delivery, meta: shared::MessageMeta) {
        let started = Instant::now();
        let disposition = match WebhookEvent::parse(&delivery.data) {
            Err(e) => after_failure(
                classify_parse(&e),
                shared::Chain(&e).to_string(),
                meta.retry_count,
                &self.topology,
            ),
            Ok(event) => {
                self.pause_if_failing().await;
                match self.applier.apply(&meta, &event).await {
                    Ok(outcome) => {
                        self.after_apply(&event, outcome);
                        Disposition::Ack(outcome)
                    }
                    Err(e) => {
                        let class = classify_apply(&e);
                        if class == Class::Transient {
                            self.transient_streak.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::warn!(error = %shared::Chain(&e), ?class, "apply failed");
                        self.after_error(class, &e, &meta)
                    }
                }
            }
        };
        self.metrics
            .apply_seconds
            .observe(started.elapsed().as_secs_f64());
        self.settle(delivery, &meta, disposition).await;
    }

    /// Carries out a disposition: forwards the copy (confirmed) when there is one, then acks the
    /// original; when the copy cannot be made safe, the original goes back to the queue.
    async fn settle(
        &self,
        delivery: Delivery,
        meta: &shared::MessageMeta,
        disposition: Disposition,
    ) {
        let routing_key = delivery.routing_key.as_str();
        let forwarded = match &disposition {
            Disposition::Ack(_) => Ok(()),
            Disposition::Retry { tier, retry_count } => {
                forward::to_retry(
                    &self.link,
                    &self.topology,
                    tier,
                    *retry_count,
                    routing_key,
                    &delivery.data,
                    &delivery.properties,
                )
                .await
            }
            Disposition::Dead { reason, error } => {
                tracing::error!(%reason, %error, "dead-lettering event");
                forward::to_dead(
                    &self.link,
                    &self.topology,
                    *reason,
                    error,
                    routing_key,
                    &delivery.data,
                    &delivery.properties,
                )
                .await
            }
        };
        if let Err(e) = forwarded {
            // The copy is not safe yet: give the original back to the queue, after a pause
            // that grows while forwarding keeps failing (no hot loop through the queue).
            tracing::error!(error = %shared::Chain(&e), "could not forward; requeueing");
            self.link.report_failure();
            self.transient_streak.fetch_add(1, Ordering::Relaxed);
            self.pause_if_failing().await;
            let _ = delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await;
            return;
        }
        if let Disposition::Dead { reason, error } = &disposition {
            let detail: String = error.chars().take(500).collect();
            self.record_dead_letter(meta, &delivery.data, reason.as_str(), &detail)
                .await;
        }
        let outcome = match &disposition {
            Disposition::Ack(o) => o.as_str(),
            Disposition::Retry { .. } => "retried",
            Disposition::Dead { .. } => "dead_lettered",
        };
        match delivery.acker.ack(BasicAckOptions::default()).await {
            Ok(_) => {
                self.metrics.count(&meta.event_type, outcome);
                tracing::debug!(outcome, "event handled");
            }
            // The broker will redeliver it; dedupe makes that harmless.
            Err(e) => {
                tracing::warn!(error = %shared::Chain(&e), outcome, "ack failed; message will be redelivered")
            }
        }
    }

    /// Writes the dead-lettered event down for `worker explain` (best effort: the copy is in
    /// the dead-letter queue already, which stays the source of truth).
    async fn record_dead_letter(
        &self,
        meta: &shared::MessageMeta,
        body: &[u8],
        reason: &str,
        detail: &str,
    ) {
        let recorded = match self.applier.pool().get().await {
            Ok(mut conn) => {
                crate::service::records::dead_lettered(&mut conn, meta, body, reason, detail)
                    .await
                    .map_err(|e| shared::Chain(&e).to_string())
            }
            Err(e) => Err(shared::Chain(&e).to_string()),
        };
        if let Err(error) = recorded {
            tracing::warn!(%error, "could not record the dead-lettered event for `worker explain`");
        }
    }
}

/// Deliveries counted in flight; uncounted when dropped (also when the future is dropped).
struct InFlight<'a> {
    gauge: &'a prometheus_client::metrics::gauge::Gauge,
    n: i64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.gauge.dec_by(self.n);
    }
}
