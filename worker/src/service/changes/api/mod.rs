//! The pull API: `GET /v1/changes?after=<seq>&limit=&kind=&organization_id=&wait=` on
//! `CHANGES_API_LISTEN`, for applications that would rather ask than consume a stream. It
//! answers from the outbox in `seq` order (commit order: a row is never visible before the rows
//! below it), `{"data": [<change>…], "next_after": <seq>, "has_more": <bool>}`, each change the
//! JSON of `docs/changes.md`; `wait` long-polls until a change past `after` commits. A cursor
//! below what retention kept is answered 410 `cursor_expired`, never with a silent gap.

pub mod auth;
pub mod params;
pub mod wake;

use crate::service::changes::body::{self, Row, message};
use crate::service::db::Pool;
use crate::service::db::schema::changes as c;
use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use auth::Tokens;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use params::Params;
use serde_json::json;
use std::net::TcpListener;
use std::sync::Arc;
use tokio::time::Instant;
use wake::Wake;

/// The route.
pub const PATH: &str = "/v1/changes";

/// What the handler needs.
pub struct ApiState {
    pub pool: Pool,
    pub tokens: Tokens,
    pub wake: Arc<Wake>,
}

/// The server on its own listener (not the metrics port: the two are exposed differently).
pub fn server(listener: TcpListener, state: ApiState) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(state);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route(PATH, web::get().to(changes))
            .default_service(web::to(|| async {
                HttpResponse::NotFound().json(json!({"error": "not_found"}))
            }))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}

/// One look at the outbox.
enum Look {
    Rows(Vec<Row>),
    /// `after` is below what retention kept: the reader must resync.
    Expired {
        oldest_after: i64,
    },
}

async fn look(pool: &Pool, p: &Params) -> Result<Look, String> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| shared::Chain(&e).to_string())?;
    let mut query = c::table
        .filter(c::seq.gt(p.after))
        .order(c::seq)
        .limit(p.limit + 1)
        .select(body::COLUMNS)
        .into_boxed();
    if !p.kinds.is_empty() {
        query = query.filter(c::kind.eq_any(p.kinds.iter().map(|k| k.as_str())));
    }
    if let Some(org) = &p.organization_id {
        query = query.filter(c::organization_id.eq(org));
    }
    let rows: Vec<Row> = query
        .load(&mut conn)
        .await
        .map_err(|e| shared::Chain(&e).to_string())?;
    // Read after the rows: a prune between the two reads shows here, so rows it took from
    // under this answer make it a 410, never a gap.
    #[derive(QueryableByName)]
    struct Pruned {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        pruned_through: i64,
    }
    let pruned: Option<Pruned> = diesel::sql_query("SELECT pruned_through FROM change_relay")
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(|e| shared::Chain(&e).to_string())?;
    match pruned {
        Some(Pruned { pruned_through }) if p.after < pruned_through => Ok(Look::Expired {
            oldest_after: pruned_through,
        }),
        _ => Ok(Look::Rows(rows)),
    }
}

fn error(status: actix_web::http::StatusCode, body: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

async fn changes(req: HttpRequest, state: web::Data<ApiState>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if !state.tokens.allows(authorization) {
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"scim-provisioning\""))
            .json(json!({"error": "unauthorized", "message": "Authorization: Bearer <token> from CHANGES_API_TOKENS"}));
    }
    let pairs = match web::Query::<Vec<(String, String)>>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_parameter", "parameter": "query", "message": "not a valid query string"}),
            );
        }
    };
    let params = match Params::parse(&pairs) {
        Ok(p) => p,
        Err(bad) => {
            return error(
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_parameter", "parameter": bad.parameter, "message": bad.to_string()}),
            );
        }
    };
    let deadline = Instant::now() + params.wait;
    // Subscribed before the first look: a commit between the look and the wait still wakes.
    let mut commits = state.wake.subscribe();
    loop {
        commits.borrow_and_update();
        let rows = match look(&state.pool, &params).await {
            Ok(Look::Rows(rows)) => rows,
            Ok(Look::Expired { oldest_after }) => {
                return error(
                    StatusCode::GONE,
                    json!({"error": "cursor_expired", "oldest_after": oldest_after,
                           "message": "changes after this cursor were pruned (CHANGES_RETENTION): resync, then read from oldest_after"}),
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "changes API: database unavailable");
                return HttpResponse::ServiceUnavailable()
                    .insert_header((header::RETRY_AFTER, "1"))
                    .json(
                        json!({"error": "unavailable", "message": "the database did not answer"}),
                    );
            }
        };
        let now = Instant::now();
        if !rows.is_empty() || now >= deadline {
            return answer(&rows, &params);
        }
        let nap = (deadline - now).min(wake::FALLBACK_POLL);
        tokio::select! {
            _ = commits.changed() => {}
            () = tokio::time::sleep(nap) => {}
        }
    }
}

/// `{"data": [...], "next_after": N, "has_more": B}` with each change's body spliced in as the
/// relay publishes it.
fn answer(rows: &[Row], params: &Params) -> HttpResponse {
    let limit = usize::try_from(params.limit).unwrap_or(usize::MAX);
    let has_more = rows.len() > limit;
    let rows = &rows[..rows.len().min(limit)];
    let mut out = Vec::with_capacity(64 + rows.len() * 512);
    out.extend_from_slice(b"{\"data\":[");
    for (i, row) in rows.iter().enumerate() {
        match message(row) {
            Ok(m) => {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&m.body);
            }
            Err(corrupt) => {
                tracing::error!(%corrupt, "changes API: an outbox row is not a change");
                return HttpResponse::InternalServerError()
                    .json(json!({"error": "corrupt_change", "seq": corrupt.seq}));
            }
        }
    }
    let next_after = rows.last().map_or(params.after, |r| r.0);
    out.extend_from_slice(
        format!("],\"next_after\":{next_after},\"has_more\":{has_more}}}").as_bytes(),
    );
    HttpResponse::Ok()
        .content_type("application/json")
        .body(out)
}
