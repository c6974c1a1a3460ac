//! B_min: the least an ingest built on actix-web and lapin can do per webhook, for the bench's
//! step test. The same HTTP workers as ingest; each request's body is published, persistent and
//! mandatory, to the events exchange with a header table built once at start-up (the broker's
//! work per message is then ingest's), and answered 202 after the broker's confirm (503
//! otherwise). No verification, no parsing, no metrics, no coalescing, no reconnects: what is
//! left of ingest when everything of its own is taken out. Each HTTP worker thread publishes on
//! a confirm channel of its own over one connection, as ingest does.
//!
//! `min_ingest <port> <amqp url> <exchange> <routing key>`; stops on SIGTERM/SIGINT (actix-web's
//! own signal handling).

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use lapin::options::ConfirmSelectOptions;
use lapin::{BasicProperties, Channel};
use shared::amqp::{properties, publish_confirmed};
use shared::{MessageMeta, Source};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Ingest's default confirm timeout.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

struct Target {
    exchange: String,
    routing_key: String,
    properties: BasicProperties,
}

async fn accept(
    body: web::Bytes,
    channel: web::Data<Channel>,
    target: web::Data<Target>,
) -> HttpResponse {
    match publish_confirmed(
        &channel,
        &target.exchange,
        &target.routing_key,
        &body,
        target.properties.clone(),
        CONFIRM_TIMEOUT,
    )
    .await
    {
        Ok(()) => HttpResponse::Accepted().json(serde_json::json!({ "status": "queued" })),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let url = args
        .next()
        .context("usage: min_ingest <port> <amqp url> <exchange> <key>")?;
    let exchange = args.next().context("the exchange")?;
    let routing_key = args.next().context("the routing key")?;
    let workers = bench::stand_in_workers();
    let conn = shared::amqp::connect(&url, "bench-min-ingest").await?;
    let mut channels = Vec::with_capacity(workers);
    for _ in 0..workers {
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        channels.push(web::Data::new(ch));
    }
    // One header table, as ingest's for an event of the bench's kind.
    let meta = MessageMeta::event(
        "evt_min_ingest".to_owned(),
        &routing_key,
        Some("org_bench".to_owned()),
        Source::Webhook,
    )
    .with_webhook_id("msg_min_ingest".to_owned());
    let target = web::Data::new(Target {
        exchange,
        routing_key,
        properties: properties(&meta),
    });
    let next = Arc::new(AtomicUsize::new(0));
    HttpServer::new(move || {
        let channel = channels[next.fetch_add(1, Ordering::Relaxed) % channels.len()].clone();
        App::new()
            .app_data(channel)
            .app_data(target.clone())
            .configure(|c| bench::stand_in_routes(c, accept))
    })
    .workers(workers)
    .bind(("127.0.0.1", port))?
    .run()
    .await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}
