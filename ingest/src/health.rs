//! `/healthz` (process alive), `/readyz` (broker connection and confirm channels up), `/metrics`.

use crate::state::AppState;
use actix_web::{HttpResponse, web};
use serde_json::json;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.link.is_ready() {
        HttpResponse::Ok().json(json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({ "status": "not_ready", "broker": "down" }))
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state
        .metrics
        .broker_ready
        .set(i64::from(state.link.is_ready()));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
