//! Benchmark building blocks: baselines measured in the same run on the same machine, and the
//! measurements of the real binaries against them.

pub mod baseline;
pub mod burst;
pub mod ceiling;
pub mod cpu;
pub mod defaults;
pub mod e2e;
pub mod generator;
pub mod half_load;
pub mod ingest_half;
pub mod inline;
pub mod load;
pub mod pipeline;
pub mod prefill;
pub mod push;
pub mod relay;
pub mod report;
pub mod server;
pub mod sql_baseline;
pub mod sql_same_writes;
pub mod summary;
pub mod tenants;

use shared::amqp::properties;
use shared::{MessageMeta, Source, Topology};

/// The `count(*) AS n` (or any bigint named `n`) a query returns, over a kept connection: a new
/// connection per poll would cost the database a backend start inside the measurement.
pub async fn count(conn: &mut diesel_async::AsyncPgConnection, sql: &str) -> anyhow::Result<i64> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    Ok(diesel::sql_query(sql).get_result::<N>(conn).await?.n)
}

/// Changes the relay has not published yet (the worker's one backlog count).
pub async fn unpublished(conn: &mut diesel_async::AsyncPgConnection) -> anyhow::Result<i64> {
    Ok(worker::service::changes::relay::backlog(conn, None)
        .await?
        .changes)
}

/// HTTP worker threads of the bench's stand-in servers (`noop_http`, `min_ingest`): ingest's
/// `INGEST_HTTP_WORKERS` when set, else 2 (one per core here, as ingest's default).
pub fn stand_in_workers() -> usize {
    std::env::var("INGEST_HTTP_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .filter(|w| *w > 0)
        .unwrap_or(2)
}

/// The routes of a stand-in server: `GET /readyz` answers 200, and every `POST` (bodies up to
/// 1 MiB) goes to `accept`. `App::new().configure(|c| stand_in_routes(c, accept))`.
pub fn stand_in_routes<F, Args>(cfg: &mut actix_web::web::ServiceConfig, accept: F)
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    use actix_web::{HttpResponse, web};
    cfg.app_data(web::PayloadConfig::new(1 << 20))
        .route(
            "/readyz",
            web::get().to(|| async { HttpResponse::Ok().finish() }),
        )
        .route("/{path:.*}", web::post().to(accept));
}

pub fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_ms.len() as f64 - 1.0) * p).round() as usize;
    sorted_ms[i.min(sorted_ms.len() - 1)]
}

/// A body of about 1 KiB: a `user_updated` event with padding attributes.
pub fn event_body(i: usize, org: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "spec_version": "1", "id": format!("evt_bench_{i:09}"), "type": "organization.directory.user_updated",
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "environment_id": "env_bench", "organization_id": org, "object": "DirectoryUser",
        "data": {
            "id": format!("diruser_{:07}", i % 50_000), "organization_id": org, "active": true,
            "email": format!("user{i}@example.com"), "given_name": "Bench", "family_name": format!("User{i}"),
            "preferred_username": format!("u{i}"), "groups": [{"id": "dirgroup_bench", "name": "Bench"}],
            "roles": [{"role_name": "member"}],
            "custom_attributes": {"padding": "x".repeat(560)}, "raw_attributes": {}
        }
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A `user_created` of about 1 KiB for a user of its own (`diruser_c…` + `i`): the burst's
/// bodies.
pub fn created_body(i: usize, org: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "spec_version": "1", "id": format!("evt_bench_{i:09}"), "type": "organization.directory.user_created",
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "environment_id": "env_bench", "organization_id": org, "object": "DirectoryUser",
        "data": {
            "id": format!("diruser_c{i:09}"), "organization_id": org, "active": true,
            "email": format!("user{i}@example.com"), "given_name": "Bench", "family_name": format!("User{i}"),
            "preferred_username": format!("u{i}"), "groups": [{"id": "dirgroup_bench", "name": "Bench"}],
            "roles": [{"role_name": "member"}],
            "custom_attributes": {"padding": "x".repeat(560)}, "raw_attributes": {}
        }
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The event type the bench's webhooks carry (their routing key).
pub const EVENT_TYPE: &str = "organization.directory.user_updated";

/// One of ingest's messages for bench event `i`: as ingest would publish it.
pub fn ingest_message(topology: &Topology, i: usize) -> baseline::Message {
    let meta = MessageMeta {
        occurred_at: Some(chrono::Utc::now().to_rfc3339()),
        ..MessageMeta::event(
            format!("evt_bench_{i:09}"),
            EVENT_TYPE,
            Some("org_bench".to_owned()),
            Source::Webhook,
        )
        .with_webhook_id(format!("msg_bench_{i}"))
    };
    (
        topology.exchange(),
        EVENT_TYPE.to_owned(),
        event_body(i, "org_bench"),
        properties(&meta),
    )
}
