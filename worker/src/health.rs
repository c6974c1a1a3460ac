//! `WORKER_LISTEN`: `/healthz` (alive unless the consume loop is wedged), `/readyz` (broker
//! channel + consumer + database up), `/metrics`.

use crate::db::Pool;
use crate::metrics::Metrics;
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
}

/// The consume loop ticks at least this often; no tick for `WEDGED_AFTER` means wedged.
pub const TICK: Duration = Duration::from_secs(1);
const WEDGED_AFTER_MS: i64 = 30_000;

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
    pub fn alive(&self) -> bool {
        let last = self.last_tick_ms.load(Ordering::Acquire);
        last == 0 || chrono::Utc::now().timestamp_millis() - last < WEDGED_AFTER_MS
    }
}

pub struct HealthState {
    pub health: Arc<Health>,
    pub link: BrokerLink,
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
    let broker = state.link.is_ready();
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
}
