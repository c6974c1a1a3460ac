//! A fake Scalekit API speaking the spec's JSON: OAuth token endpoint with expiring tokens,
//! paginated users (30 a page) and groups, and scripted failures.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

pub const CLIENT_ID: &str = "skc_test";
pub const CLIENT_SECRET: &str = "test_secret_value";

/// Failures to inject, by users-page index (0-based).
#[derive(Debug, Default, Clone)]
pub struct Script {
    pub unauthorized_once_at_page: Option<usize>,
    pub throttle_once_at_page: Option<usize>,
    pub error_once_at_page: Option<usize>,
    pub fail_forever_from_page: Option<usize>,
    /// From this page on: no items, but a next page token.
    pub empty_page_with_token_from: Option<usize>,
    /// From this page on: the next page token is the one just sent (a loop).
    pub repeat_token_from: Option<usize>,
    /// Added to the `total_size` every users page reports.
    pub total_size_delta: i64,
    /// From this page on: a body of this many bytes (valid JSON, padded).
    pub body_bytes_from: Option<(usize, usize)>,
    /// Every users page: 429 with this `Retry-After`.
    pub retry_after_always: Option<&'static str>,
    /// Token lifetime in seconds (how long the fake honours a token; 0 = an hour).
    pub token_ttl: u64,
    /// The `expires_in` the token response reports (default: `token_ttl`).
    pub expires_in_reported: Option<u64>,
    /// The token endpoint answers 307 to this URL.
    pub redirect_token_to: Option<String>,
    /// Every users page takes this long to answer (a slow listing).
    pub page_delay: Option<std::time::Duration>,
}

#[derive(Default)]
pub struct State {
    pub org: String,
    pub dir: String,
    pub users: Vec<Value>,
    pub groups: Vec<Value>,
    pub script: Script,
    pub tokens: Vec<(String, std::time::Instant)>,
    pub token_requests: usize,
    /// Every call of the token endpoint, valid or not.
    pub token_calls: usize,
    /// The organization ids the directories endpoint was asked for (decoded).
    pub directory_lookups: Vec<String>,
    pub user_page_requests: usize,
    pub fired: Vec<&'static str>,
}

pub struct FakeScalekit {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    handle: actix_web::dev::ServerHandle,
}

impl FakeScalekit {
    pub async fn start(
        org: &str,
        dir: &str,
        users: Vec<Value>,
        groups: Vec<Value>,
        script: Script,
    ) -> Self {
        let state = Arc::new(Mutex::new(State {
            org: org.to_owned(),
            dir: dir.to_owned(),
            users,
            groups,
            script,
            ..State::default()
        }));
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/oauth/token", web::post().to(token))
                .route(
                    "/api/v1/organizations/{org}/directories",
                    web::get().to(directories),
                )
                .route(
                    "/api/v1/organizations/{org}/directories/{dir}/users",
                    web::get().to(users_page),
                )
                .route(
                    "/api/v1/organizations/{org}/directories/{dir}/groups",
                    web::get().to(groups_page),
                )
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://{addr}"),
            state,
            handle,
        }
    }

    /// The worker options that point the Directory API at this fake.
    pub fn options(&self) -> [&str; 6] {
        [
            "--scalekit-environment-url",
            self.url.as_str(),
            "--scalekit-client-id",
            CLIENT_ID,
            "--scalekit-client-secret",
            CLIENT_SECRET,
        ]
    }

    pub fn set_users(&self, users: Vec<Value>) {
        self.state.lock().unwrap().users = users;
    }

    pub fn set_script(&self, script: Script) {
        let mut s = self.state.lock().unwrap();
        s.script = script;
        s.user_page_requests = 0;
        s.fired.clear();
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

fn error(status: u16, code: i64, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(json!({
        "code": code, "message": message,
        "details": [{"@type": "type.googleapis.com/scalekit.v1.errdetails.ErrorInfo", "error_code": "X"}]
    }))
}

async fn token(
    state: web::Data<Mutex<State>>,
    form: web::Form<Vec<(String, String)>>,
) -> HttpResponse {
    let get = |k: &str| form.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    {
        let mut s = state.lock().unwrap();
        s.token_calls += 1;
        if let Some(to) = s.script.redirect_token_to.clone() {
            return HttpResponse::TemporaryRedirect()
                .insert_header(("Location", to))
                .finish();
        }
    }
    if get("grant_type").as_deref() != Some("client_credentials")
        || get("client_id").as_deref() != Some(CLIENT_ID)
        || get("client_secret").as_deref() != Some(CLIENT_SECRET)
    {
        return error(401, 16, "invalid client credentials");
    }
    let mut s = state.lock().unwrap();
    s.token_requests += 1;
    let ttl = if s.script.token_ttl == 0 {
        3600
    } else {
        s.script.token_ttl
    };
    let value = format!("tok_{}", s.token_requests);
    s.tokens.push((
        value.clone(),
        std::time::Instant::now() + std::time::Duration::from_secs(ttl),
    ));
    let expires_in = s.script.expires_in_reported.unwrap_or(ttl);
    HttpResponse::Ok().json(json!({"access_token": value, "token_type": "Bearer", "expires_in": expires_in, "scope": "openid"}))
}

fn authorized(req: &HttpRequest, s: &State) -> bool {
    let Some(auth) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(tok) = auth.strip_prefix("Bearer ") else {
        return false;
    };
    s.tokens
        .iter()
        .any(|(t, exp)| t == tok && *exp > std::time::Instant::now())
}

async fn directories(
    req: HttpRequest,
    state: web::Data<Mutex<State>>,
    path: web::Path<String>,
) -> HttpResponse {
    let mut s = state.lock().unwrap();
    if !authorized(&req, &s) {
        return error(401, 16, "unauthenticated");
    }
    s.directory_lookups.push(path.as_str().to_owned());
    if path.as_str() != s.org {
        return HttpResponse::Ok().json(json!({"directories": []}));
    }
    HttpResponse::Ok().json(json!({"directories": [{
        "id": s.dir, "name": "Okta", "directory_type": "SCIM", "organization_id": s.org,
        "enabled": true, "directory_provider": "OKTA", "total_users": s.users.len()
    }]}))
}

#[derive(serde::Deserialize)]
struct PageQuery {
    page_size: Option<usize>,
    page_token: Option<String>,
}

fn page_of(items: &[Value], q: &PageQuery) -> (Vec<Value>, String) {
    let size = q.page_size.unwrap_or(10).min(30);
    let offset: usize = q
        .page_token
        .as_deref()
        .and_then(|t| t.strip_prefix("off_"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let end = (offset + size).min(items.len());
    let next = if end < items.len() {
        format!("off_{end}")
    } else {
        String::new()
    };
    (items.get(offset..end).unwrap_or_default().to_vec(), next)
}

async fn users_page(
    req: HttpRequest,
    state: web::Data<Mutex<State>>,
    q: web::Query<PageQuery>,
) -> HttpResponse {
    let delay = state.lock().unwrap().script.page_delay;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut s = state.lock().unwrap();
    if q.page_size.unwrap_or(10) > 30 {
        return error(400, 3, "page_size: value must be less than or equal to 30");
    }
    let page = s.user_page_requests;
    if s.script.unauthorized_once_at_page == Some(page) && !s.fired.contains(&"401") {
        s.fired.push("401");
        s.tokens.clear(); // the token "expired"
    }
    if !authorized(&req, &s) {
        return error(401, 16, "unauthenticated");
    }
    s.user_page_requests += 1;
    if s.script.throttle_once_at_page == Some(page) && !s.fired.contains(&"429") {
        s.fired.push("429");
        s.user_page_requests -= 1;
        return HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", "1"))
            .json(json!({"code": 8, "message": "rate limited"}));
    }
    if s.script.error_once_at_page == Some(page) && !s.fired.contains(&"500") {
        s.fired.push("500");
        s.user_page_requests -= 1;
        return error(500, 13, "internal");
    }
    if s.script.fail_forever_from_page.is_some_and(|p| page >= p) {
        s.user_page_requests -= 1;
        return error(503, 14, "unavailable");
    }
    if let Some(after) = s.script.retry_after_always {
        return HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", after))
            .json(json!({"code": 8, "message": "rate limited"}));
    }
    let from = |p: Option<usize>| p.is_some_and(|p| page >= p);
    let (mut items, mut next) = page_of(&s.users, &q);
    if from(s.script.empty_page_with_token_from) {
        items.clear();
        next = q.page_token.clone().unwrap_or_else(|| "off_0".to_owned());
    }
    if from(s.script.repeat_token_from) {
        next = q.page_token.clone().unwrap_or_else(|| "off_0".to_owned());
    }
    let total = i64::try_from(s.users.len()).unwrap() + s.script.total_size_delta;
    let mut body = json!({"users": items, "next_page_token": next, "prev_page_token": "", "total_size": total});
    if let Some((_, bytes)) = s.script.body_bytes_from.filter(|(p, _)| page >= *p) {
        body["padding"] = "x".repeat(bytes).into();
    }
    HttpResponse::Ok().json(body)
}

async fn groups_page(
    req: HttpRequest,
    state: web::Data<Mutex<State>>,
    q: web::Query<PageQuery>,
) -> HttpResponse {
    let s = state.lock().unwrap();
    if !authorized(&req, &s) {
        return error(401, 16, "unauthenticated");
    }
    let (items, next) = page_of(&s.groups, &q);
    // proto3 JSON may omit an empty token: do so here.
    let mut body = json!({"groups": items, "total_size": s.groups.len()});
    if !next.is_empty() {
        body["next_page_token"] = next.into();
    }
    HttpResponse::Ok().json(body)
}

pub fn user(i: usize, group: &str) -> Value {
    json!({
        "id": format!("diruser_{i:05}"),
        "email": format!("user{i}@example.com"),
        "emails": [format!("user{i}@example.com")],
        "given_name": format!("User{i}"),
        "family_name": "Test",
        "preferred_username": format!("user{i}"),
        "updated_at": "2025-01-01T00:00:00Z",
        "groups": [{"id": group, "display_name": "Engineering"}],
        "user_detail": {"active": true}
    })
}

pub fn group(id: &str, name: &str) -> Value {
    json!({"id": id, "display_name": name, "total_users": 0, "updated_at": "2025-01-01T00:00:00Z", "group_detail": {}})
}
