//! A lean open-loop HTTP/1.1 load generator (hyper's connection API over a fixed set of
//! keep-alive connections). It shares the two cores with what it measures, so it does as little
//! as it can per request: requests are built before the clock starts, idle connections take the
//! next due request from one queue, and latency runs from each request's *scheduled* time, so
//! queueing inside the generator or the server shows in the percentiles.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One request to send: an id to report, and the request itself.
pub struct Job {
    pub id: String,
    pub request: Request<Full<Bytes>>,
}

/// What came back for one job.
pub struct Outcome {
    pub id: String,
    pub status: Option<u16>,
    /// From the scheduled send time to the end of the response body.
    pub latency_ms: f64,
    pub answered_at: chrono::DateTime<chrono::Utc>,
}

struct Due {
    at: Instant,
    job: Job,
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}

async fn send(sender: &mut Option<Sender>, addr: SocketAddr, job: Job) -> Option<u16> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = connect(addr).await;
    }
    let s = sender.as_mut()?;
    if s.ready().await.is_err() {
        *sender = None;
        return None;
    }
    match s.send_request(job.request).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            // Read the whole answer so the connection can carry the next request.
            if resp.into_body().collect().await.is_err() {
                *sender = None;
            }
            Some(status)
        }
        Err(_) => {
            *sender = None;
            None
        }
    }
}

/// Sends `jobs` to `addr`, job `i` at `start + i × interval`, over `connections` keep-alive
/// connections; returns every outcome (in completion order).
pub async fn run(
    addr: SocketAddr,
    jobs: Vec<Job>,
    interval: std::time::Duration,
    connections: usize,
) -> Vec<Outcome> {
    let n = jobs.len();
    let (tx, rx) = async_channel::bounded::<Due>(n.max(1));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections.max(1) {
        let rx = rx.clone();
        workers.spawn(async move {
            let mut sender = connect(addr).await;
            let mut out = Vec::new();
            while let Ok(due) = rx.recv().await {
                let id = due.job.id.clone();
                let status = send(&mut sender, addr, due.job).await;
                out.push(Outcome {
                    id,
                    status,
                    latency_ms: due.at.elapsed().as_secs_f64() * 1000.0,
                    answered_at: chrono::Utc::now(),
                });
            }
            out
        });
    }
    drop(rx);
    let start = Instant::now();
    for (i, job) in jobs.into_iter().enumerate() {
        let at = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        tokio::time::sleep_until(at).await;
        if tx.send(Due { at, job }).await.is_err() {
            break;
        }
    }
    tx.close();
    let mut outcomes = Vec::with_capacity(n);
    while let Some(done) = workers.join_next().await {
        if let Ok(mut out) = done {
            outcomes.append(&mut out);
        }
    }
    outcomes
}
