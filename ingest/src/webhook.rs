//! `POST /webhooks/scalekit`: headers checked (no body read, no HMAC yet) → raw body (bounded in
//! size and time) → HMAC → publish with confirm → answer.

use crate::coalesce::Coalescer;
use crate::metrics::Outcome;
use crate::publish::{self, Published};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;
use shared::HeaderSource;
use tracing::Instrument;

struct ActixHeaders<'a>(&'a HeaderMap);

/// The signature headers' names, built once: looking a header up by `&str` parses the name on
/// every call.
static SIGNATURE_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static(shared::verify::HEADER_ID),
    HeaderName::from_static(shared::verify::HEADER_TIMESTAMP),
    HeaderName::from_static(shared::verify::HEADER_SIGNATURE),
];

impl ActixHeaders<'_> {
    fn values(&self, name: &str) -> std::slice::Iter<'_, header::HeaderValue> {
        match SIGNATURE_HEADERS
            .iter()
            .find(|known| known.as_str() == name)
        {
            Some(known) => self.0.get_all(known),
            None => self.0.get_all(name),
        }
    }
}

impl HeaderSource for ActixHeaders<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.values(name).next()?.to_str().ok()
    }

    fn present(&self, name: &str) -> bool {
        self.values(name).next().is_some()
    }

    fn repeated(&self, name: &str) -> bool {
        self.values(name).nth(1).is_some()
    }
}

/// The answers' bodies, serialized straight from these (no intermediate JSON tree).
#[derive(Serialize)]
#[serde(untagged)]
enum Answer<'a> {
    Queued {
        status: &'static str,
        event_id: &'a str,
    },
    DeadLettered {
        status: &'static str,
        webhook_id: &'a str,
        reason: &'static str,
    },
}

/// The first bytes a body's buffer is given, whatever `Content-Length` claims: an
/// unauthenticated client's claim buys it no memory; the buffer grows as bytes arrive.
const INITIAL_BODY_CAPACITY: usize = 16 * 1024;

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": code, "message": message.to_string() }))
}

enum BodyError {
    TooLarge,
    TimedOut,
    Read(String),
}

async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<bytes::Bytes, BodyError> {
    tokio::time::timeout(deadline, read_all(req, payload, limit))
        .await
        .map_err(|_| BodyError::TimedOut)?
}

async fn read_all(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<bytes::Bytes, BodyError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let mut body = BytesMut::with_capacity(
        declared
            .unwrap_or(INITIAL_BODY_CAPACITY)
            .min(INITIAL_BODY_CAPACITY),
    );
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The webhook endpoint.
pub async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    publisher: web::Data<Coalescer>,
) -> HttpResponse {
    let span = tracing::info_span!(
        "webhook",
        webhook_id = tracing::field::Empty,
        event_id = tracing::field::Empty,
        event_type = tracing::field::Empty,
        organization_id = tracing::field::Empty,
    );
    // Unverified: only a short, escaped prefix reaches the logs (built only when logged).
    if !span.is_disabled()
        && let Some(v) = ActixHeaders(req.headers())
            .values(shared::verify::HEADER_ID)
            .next()
    {
        let id = shared::redact::for_log(&String::from_utf8_lossy(v.as_bytes()));
        span.record("webhook_id", id.as_str());
    }
    state.metrics.in_flight.inc();
    let response = handle(req, payload, &state, &publisher)
        .instrument(span)
        .await;
    state.metrics.in_flight.dec();
    response
}

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: &AppState,
    publisher: &Coalescer,
) -> HttpResponse {
    let reject = |e: shared::VerifyError| {
        state.metrics.count(Outcome::from(&e));
        tracing::warn!(reason = e.code(), "webhook rejected");
        error(StatusCode::BAD_REQUEST, e.code(), e)
    };
    // Cheap checks first: a request whose headers cannot verify is answered before its body
    // is read or any HMAC computed.
    let signed = match state
        .verifier
        .check_headers(&ActixHeaders(req.headers()), chrono::Utc::now().timestamp())
    {
        Ok(signed) => signed,
        Err(e) => return reject(e),
    };
    let body = match read_body(&req, payload, state.max_body_bytes, state.body_timeout).await {
        Ok(body) => body,
        Err(BodyError::TimedOut) => {
            state.metrics.count(Outcome::BodyTimeout);
            tracing::warn!(
                seconds = state.body_timeout.as_secs(),
                "webhook rejected: body not received in time"
            );
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "body not received within {} s",
                    state.body_timeout.as_secs()
                ),
            );
        }
        Err(BodyError::TooLarge) => {
            state.metrics.count(Outcome::PayloadTooLarge);
            tracing::warn!(
                limit = state.max_body_bytes,
                "webhook rejected: body over the limit"
            );
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("body is larger than {} bytes", state.max_body_bytes),
            );
        }
        Err(BodyError::Read(e)) => {
            state.metrics.count(Outcome::BadBody);
            return error(StatusCode::BAD_REQUEST, "bad_body", e);
        }
    };
    let verified = match state.verifier.verify_body(signed, body) {
        Ok(v) => v,
        Err(e) => return reject(e),
    };
    let started = std::time::Instant::now();
    let result = publish::publish(state, publisher, &verified).await;
    state
        .metrics
        .publish_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(Published::Event { event_id, lane }) => {
            state.metrics.count(Outcome::Queued);
            match lane {
                shared::lane::Lane::Urgent => state.metrics.urgent.inc(),
                shared::lane::Lane::Bulk => state.metrics.bulk.inc(),
                shared::lane::Lane::Apply => 0,
            };
            tracing::info!(?lane, "webhook queued");
            HttpResponse::Accepted().json(Answer::Queued {
                status: "queued",
                event_id: &event_id,
            })
        }
        Ok(Published::Malformed { reason }) => {
            state.metrics.count(Outcome::Malformed);
            tracing::warn!(%reason, "signed body is not a valid envelope: dead-lettered");
            HttpResponse::Accepted().json(Answer::DeadLettered {
                status: "dead_lettered",
                webhook_id: verified.webhook_id(),
                reason: "malformed",
            })
        }
        Err(e) => {
            state.metrics.count(Outcome::BrokerUnavailable);
            state.link.report_failure();
            tracing::error!(error = %shared::Chain(&e), "publish failed: answering 503");
            let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable", e);
            if let Ok(v) = header::HeaderValue::from_str(&state.retry_after_seconds.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}
