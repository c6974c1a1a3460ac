//! The bench's stand-in for ingest with nothing of ingest's own: actix-web with the same number
//! of HTTP workers, reading each POST body and answering 202 with a small JSON, no verification,
//! no parsing, no broker. What HTTP alone costs on this machine. `noop_http <port>`; stops on
//! SIGTERM/SIGINT (actix-web's own signal handling).

use actix_web::{App, HttpResponse, HttpServer, web};

async fn accept(body: web::Bytes) -> HttpResponse {
    HttpResponse::Accepted().json(serde_json::json!({
        "status": "queued",
        "event_id": "evt_noop",
        "bytes": body.len(),
    }))
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let workers = bench::stand_in_workers();
    HttpServer::new(|| App::new().configure(|c| bench::stand_in_routes(c, accept)))
        .workers(workers)
        .bind(("127.0.0.1", port))?
        .run()
        .await?;
    Ok(())
}
