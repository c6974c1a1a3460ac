//! B_inline: the seed's design, done right, in Rust — what the pipeline is measured against.
//! An actix-web server (one HTTP worker per core) whose handler verifies the webhook with the
//! same verifier as ingest, then, in one transaction per request, inserts the dedupe row and
//! upserts the user (newer `occurred_at` wins), and answers 201. No queue, no worker, no audit,
//! no change feed. Its statements are kept prepared per connection, like the worker's.
//! `inline_seed <port>`; `DATABASE_URL`, `SCALEKIT_WEBHOOK_SECRET`; stops on SIGTERM/SIGINT.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use diesel::sql_types::{Jsonb, Nullable, Text, Timestamptz};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared::{Event, Verifier, WebhookEvent, WebhookSecrets};
use worker::service::db::cached::cached;

struct State {
    verifier: Verifier,
    pool: Pool<AsyncPgConnection>,
}

fn bad(code: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(serde_json::json!({ "error": code }))
}

async fn webhook(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let headers: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let verified =
        match state
            .verifier
            .verify(headers.as_slice(), body, chrono::Utc::now().timestamp())
        {
            Ok(v) => v,
            Err(e) => return bad(e.code()),
        };
    let Ok(event) = WebhookEvent::parse(verified.body()) else {
        return bad("malformed");
    };
    let (Event::UserCreated(user) | Event::UserUpdated(user)) = &event.event else {
        // The bench sends only user events; anything else is acknowledged.
        return HttpResponse::Created().finish();
    };
    let Ok(mut conn) = state.pool.get().await else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    let envelope = &event.envelope;
    let data = envelope.data.clone();
    let written = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            // Both statements are kept prepared per connection, as the worker's are.
            let new = cached(diesel::sql_query(
                "INSERT INTO processed_events (event_id, webhook_id, event_type, organization_id, occurred_at, source, outcome) \
                 VALUES ($1, $2, $3, $4, $5, 'webhook', 'applied') ON CONFLICT (event_id) DO NOTHING",
            )
            .bind::<Text, _>(envelope.id.as_str())
            .bind::<Text, _>(verified.webhook_id())
            .bind::<Text, _>(envelope.event_type.as_str())
            .bind::<Text, _>(user.organization_id.as_str())
            .bind::<Timestamptz, _>(envelope.occurred_at))
            .execute(c)
            .await?;
            if new == 0 {
                return Ok(());
            }
            cached(diesel::sql_query(
                "INSERT INTO directory_users (organization_id, directory_user_id, email, given_name, family_name, \
                     display_name, active, attributes, source_updated_at, source_event_id, profile_updated_at, profile_event_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $9, $10) \
                 ON CONFLICT (organization_id, directory_user_id) DO UPDATE SET \
                     email = EXCLUDED.email, given_name = EXCLUDED.given_name, family_name = EXCLUDED.family_name, \
                     display_name = EXCLUDED.display_name, active = EXCLUDED.active, attributes = EXCLUDED.attributes, \
                     source_updated_at = EXCLUDED.source_updated_at, source_event_id = EXCLUDED.source_event_id, \
                     profile_updated_at = EXCLUDED.profile_updated_at, profile_event_id = EXCLUDED.profile_event_id, \
                     updated_at = now() \
                 WHERE directory_users.source_updated_at < EXCLUDED.source_updated_at",
            )
            .bind::<Text, _>(user.organization_id.as_str())
            .bind::<Text, _>(user.id.as_str())
            .bind::<Nullable<Text>, _>(user.email.as_deref())
            .bind::<Nullable<Text>, _>(user.given_name.as_deref())
            .bind::<Nullable<Text>, _>(user.family_name.as_deref())
            .bind::<Nullable<Text>, _>(user.name.as_deref())
            .bind::<diesel::sql_types::Bool, _>(user.active.unwrap_or(true))
            .bind::<Jsonb, _>(&data)
            .bind::<Timestamptz, _>(envelope.occurred_at)
            .bind::<Text, _>(envelope.id.as_str()))
            .execute(c)
            .await?;
            Ok(())
        })
        .await;
    match written {
        Ok(()) => HttpResponse::Created().finish(),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

async fn ready() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let url = std::env::var("DATABASE_URL")?;
    let secrets = WebhookSecrets::parse(&std::env::var("SCALEKIT_WEBHOOK_SECRET")?)?;
    let pool = Pool::builder()
        .max_size(16)
        .build(AsyncDieselConnectionManager::<AsyncPgConnection>::new(url))
        .await?;
    let state = web::Data::new(State {
        verifier: Verifier::new(secrets),
        pool,
    });
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(1 << 20))
            .route("/readyz", web::get().to(ready))
            .route("/{path:.*}", web::post().to(webhook))
    })
    .workers(workers)
    .bind(("127.0.0.1", port))?
    .run()
    .await?;
    Ok(())
}
