//! An application's endpoint for pushed changes, as a test needs it: it verifies each request
//! with the reference `standardwebhooks` crate (what an application would use), records what it
//! took, and answers as the test scripts it (accept, fail with a status, answer late). The
//! checks every push test makes are here: each organization's changes arrived in `seq` order
//! and none is missing.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How the endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 after `latency`.
    Accept,
    /// This status, without taking the batch.
    Fail(u16),
    /// Takes the batch, but answers 200 only after this long (a client with a shorter timeout
    /// gives up and sends it again).
    Slow(Duration),
}

/// One request the endpoint took.
#[derive(Debug, Clone)]
pub struct Taken {
    pub webhook_id: String,
    pub organization_id: String,
    pub seqs: Vec<i64>,
}

struct State {
    verifier: standardwebhooks::Webhook,
    mode: Mutex<Mode>,
    latency: Duration,
    taken: Mutex<Vec<Taken>>,
    attempts: AtomicUsize,
    bad_signatures: AtomicUsize,
    mixed_orgs: AtomicUsize,
    /// The `webhook-id` of every signed request, in arrival order.
    ids: Mutex<Vec<String>>,
    /// Changes taken, duplicates included.
    changes: AtomicUsize,
}

pub struct Receiver {
    pub url: String,
    state: Arc<State>,
    handle: actix_web::dev::ServerHandle,
}

async fn take(req: HttpRequest, body: web::Bytes, state: web::Data<Arc<State>>) -> HttpResponse {
    state.attempts.fetch_add(1, Ordering::Relaxed);
    let mut headers = http::HeaderMap::new();
    for (k, v) in req.headers() {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.as_str().as_bytes()),
            http::HeaderValue::from_bytes(v.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    if state.verifier.verify(&body, &headers).is_err() {
        state.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::Unauthorized().finish();
    }
    let id = req
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    state.ids.lock().unwrap().push(id.clone());
    let mode = *state.mode.lock().unwrap();
    if let Mode::Fail(status) = mode {
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
            .finish();
    }
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let changes = parsed["changes"].as_array().cloned().unwrap_or_default();
    let orgs: HashSet<&str> = changes
        .iter()
        .filter_map(|c| c["organization_id"].as_str())
        .collect();
    if orgs.len() != 1 {
        state.mixed_orgs.fetch_add(1, Ordering::Relaxed);
    }
    let taken = Taken {
        webhook_id: id,
        organization_id: orgs.iter().next().copied().unwrap_or_default().to_owned(),
        seqs: changes.iter().filter_map(|c| c["seq"].as_i64()).collect(),
    };
    state.changes.fetch_add(taken.seqs.len(), Ordering::Relaxed);
    state.taken.lock().unwrap().push(taken);
    let wait = match mode {
        Mode::Slow(d) => d,
        _ => state.latency,
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    HttpResponse::Ok().finish()
}

impl Receiver {
    /// Listens on a free port; verifies with `secret` (`whsec_…`); answers after `latency`.
    pub async fn start(secret: &str, latency: Duration) -> Self {
        Self::start_on(0, secret, latency).await
    }

    /// Listens on `port` (0: a free one); the path is always `/scim/changes`.
    pub async fn start_on(port: u16, secret: &str, latency: Duration) -> Self {
        let state = Arc::new(State {
            verifier: standardwebhooks::Webhook::new(secret).unwrap(),
            mode: Mutex::new(Mode::Accept),
            latency,
            taken: Mutex::new(Vec::new()),
            attempts: AtomicUsize::new(0),
            bad_signatures: AtomicUsize::new(0),
            mixed_orgs: AtomicUsize::new(0),
            ids: Mutex::new(Vec::new()),
            changes: AtomicUsize::new(0),
        });
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let url = format!("http://{}/scim/changes", listener.local_addr().unwrap());
        let data = web::Data::new(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .route("/scim/changes", web::post().to(take))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { url, state, handle }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Requests received (taken or not).
    pub fn attempts(&self) -> usize {
        self.state.attempts.load(Ordering::Relaxed)
    }

    /// Changes taken, duplicates included (cheap: a counter).
    pub fn changes_taken(&self) -> usize {
        self.state.changes.load(Ordering::Relaxed)
    }

    pub fn bad_signatures(&self) -> usize {
        self.state.bad_signatures.load(Ordering::Relaxed)
    }

    /// The `webhook-id` of every signed request, in arrival order (retries included).
    pub fn ids(&self) -> Vec<String> {
        self.state.ids.lock().unwrap().clone()
    }

    pub fn taken(&self) -> Vec<Taken> {
        self.state.taken.lock().unwrap().clone()
    }

    /// Distinct changes taken.
    pub fn distinct(&self) -> usize {
        self.taken()
            .iter()
            .flat_map(|t| t.seqs.iter().copied())
            .collect::<HashSet<_>>()
            .len()
    }

    /// Checks what was taken against `want` (each organization's `seq`, in order): every
    /// request of one organization, ascending within it; each organization's changes first
    /// seen in `seq` order (a change may come again after a crash or a timeout, never a later
    /// one before an earlier); none missing, none extra. How many were taken twice or more.
    pub fn check(&self, want: &BTreeMap<String, Vec<i64>>) -> anyhow::Result<usize> {
        anyhow::ensure!(
            self.state.mixed_orgs.load(Ordering::Relaxed) == 0,
            "a request mixed organizations"
        );
        anyhow::ensure!(self.bad_signatures() == 0, "a request was not signed right");
        let mut arrivals = Vec::new();
        for t in self.taken() {
            anyhow::ensure!(
                t.seqs.windows(2).all(|w| w[0] < w[1]),
                "request {} is not in seq order: {:?}",
                t.webhook_id,
                t.seqs
            );
            arrivals.extend(t.seqs.iter().map(|s| (t.organization_id.clone(), *s)));
        }
        check_arrivals(&arrivals, want)
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// Checks changes as they arrived (organization, `seq`) against `want` (each organization's
/// `seq`, in order): each organization's changes first seen in `seq` order (one may come again
/// after a crash or a timeout, never a later one before an earlier), none missing, none
/// extra. How many arrived again.
pub fn check_arrivals(
    arrivals: &[(String, i64)],
    want: &BTreeMap<String, Vec<i64>>,
) -> anyhow::Result<usize> {
    let mut seen: BTreeMap<&str, (Vec<i64>, HashSet<i64>)> = BTreeMap::new();
    let mut again = 0;
    for (org, seq) in arrivals {
        let (order, set) = seen.entry(org).or_default();
        match order.last() {
            Some(&last) if *seq <= last => {
                anyhow::ensure!(
                    set.contains(seq),
                    "{org}: seq {seq} arrived after {last} without having arrived before"
                );
                again += 1;
            }
            _ => {
                order.push(*seq);
                set.insert(*seq);
            }
        }
    }
    for (org, seqs) in want {
        let got = seen
            .remove(org.as_str())
            .map(|(o, _)| o)
            .unwrap_or_default();
        anyhow::ensure!(
            &got == seqs,
            "{org}: received {} changes, want {} (first missing: {:?})",
            got.len(),
            seqs.len(),
            seqs.iter().find(|s| !got.contains(s))
        );
    }
    anyhow::ensure!(
        seen.is_empty(),
        "changes of unexpected organizations: {:?}",
        seen.keys()
    );
    Ok(again)
}
