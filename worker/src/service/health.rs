//! `WORKER_LISTEN`: `/healthz` (alive unless the consume loop is wedged), `/readyz` (broker
//! channel + consumer + database up), `/metrics`.

use crate::service::db::Pool;
use crate::service::metrics::Metrics;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::json;
use shared::amqp::BrokerLink;
use shared::contract::routes;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

/// Liveness and readiness facts the consume loop keeps up to date.
#[derive(Debug, Default)]
pub struct Health {
    last_tick_ms: AtomicI64,
    /// Lanes subscribed right now.
    lanes_up: AtomicUsize,
    /// Per lane settling a batch: since when. Ticks come only from progress (an idle lane
    /// waiting for deliveries, a batch finished), never while a batch is in hand, so a batch
    /// that hangs makes the worker not alive and Kubernetes restarts it.
    busy_since_ms: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

/// The consume loop ticks at least this often; no tick for `WEDGED_AFTER` means wedged.
pub const TICK: Duration = Duration::from_secs(1);
const WEDGED_AFTER_MS: i64 = 30_000;
/// A batch in hand longer than this is wedged: every database call is bounded well below it
/// (`DATABASE_STATEMENT_TIMEOUT`, `DATABASE_LOCK_TIMEOUT`, the pool's connect timeout).
pub const BATCH_WEDGED_AFTER: Duration = Duration::from_secs(300);

impl Health {
    pub fn tick(&self) {
        self.last_tick_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Release);
    }
    pub fn lane_up(&self) {
        self.lanes_up.fetch_add(1, Ordering::AcqRel);
    }
    pub fn lane_down(&self) {
        let _ = self
            .lanes_up
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
    /// Whether at least one lane is subscribed.
    pub fn consuming(&self) -> bool {
        self.lanes_up.load(Ordering::Acquire) > 0
    }
    pub fn batch_started(&self, lane: &str) {
        if let Ok(mut busy) = self.busy_since_ms.lock() {
            busy.insert(lane.to_owned(), chrono::Utc::now().timestamp_millis());
        }
    }
    pub fn batch_finished(&self, lane: &str) {
        if let Ok(mut busy) = self.busy_since_ms.lock() {
            busy.remove(lane);
        }
        self.tick();
    }
    pub fn alive(&self) -> bool {
        self.alive_at(chrono::Utc::now().timestamp_millis())
    }
    /// Alive at `now_ms`: ticked recently, and no lane stuck on one batch.
    pub fn alive_at(&self, now_ms: i64) -> bool {
        let last = self.last_tick_ms.load(Ordering::Acquire);
        let ticking = last == 0 || now_ms - last < WEDGED_AFTER_MS;
        let limit = i64::try_from(BATCH_WEDGED_AFTER.as_millis()).unwrap_or(i64::MAX);
        let stuck = self
            .busy_since_ms
            .lock()
            .map(|busy| busy.values().any(|since| now_ms - since >= limit))
            .unwrap_or(false);
        ticking && !stuck
    }
}

pub struct HealthState {
    pub health: Arc<Health>,
    /// The consuming and the publishing connection: ready when both are.
    pub links: [BrokerLink; 2],
    pub pool: Pool,
    pub metrics: Arc<Metrics>,
}

async fn database_up(pool: &Pool) -> bool {
    use diesel_async::RunQueryDsl;
    let check = async {
        let mut conn = pool.get().await.ok()?;
        diesel::sql_query("SELECT 1").execute(&mut *conn).await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Some(_))
    )
}

async fn healthz(state: web::Data<HealthState>) -> HttpResponse {
    if state.health.alive() {
        HttpResponse::Ok().json(json!({ "status": "ok" }))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({ "status": "wedged" }))
    }
}

async fn readyz(state: web::Data<HealthState>) -> HttpResponse {
    let broker = state.links.iter().all(BrokerLink::is_ready);
    let consumer = state.health.consuming();
    let database = database_up(&state.pool).await;
    let ready = broker && consumer && database;
    state.metrics.ready.set(i64::from(ready));
    let body = json!({ "broker": broker, "consumer": consumer, "database": database });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(state: web::Data<HealthState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

/// The small HTTP server; signals are handled by the worker, not by actix.
pub fn server(
    listener: TcpListener,
    state: HealthState,
) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(state);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route(routes::HEALTHZ, web::get().to(healthz))
            .route(routes::READYZ, web::get().to(readyz))
            .route(routes::METRICS, web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consuming_while_any_lane_is_subscribed() {
        let h = Health::default();
        assert!(!h.consuming());
        h.lane_up();
        h.lane_up();
        h.lane_down();
        assert!(h.consuming(), "one lane still up");
        h.lane_down();
        assert!(!h.consuming());
        h.lane_down();
        assert!(!h.consuming(), "never below zero");
        h.lane_up();
        assert!(h.consuming());
    }

    #[test]
    fn a_batch_in_hand_too_long_is_not_alive_even_while_other_lanes_tick() {
        let h = Health::default();
        let now = chrono::Utc::now().timestamp_millis();
        h.tick();
        h.batch_started("lane-0");
        let limit = i64::try_from(BATCH_WEDGED_AFTER.as_millis()).unwrap();
        assert!(
            h.alive_at(now + 1_000),
            "a batch in hand for a second is fine"
        );
        // Another lane keeps ticking: the stuck lane still counts.
        h.tick();
        assert!(!h.alive_at(now + limit + 1_000), "stuck on one batch");
        h.batch_finished("lane-0");
        assert!(
            h.alive_at(chrono::Utc::now().timestamp_millis()),
            "settled: alive again"
        );
        assert!(
            !h.alive_at(chrono::Utc::now().timestamp_millis() + WEDGED_AFTER_MS + 1),
            "and no tick for too long is not alive either"
        );
    }
}
