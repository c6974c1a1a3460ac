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
    /// From when a connection took it to the end of the response body: what a sender with
    /// bounded concurrency (Scalekit) waits for each request.
    pub service_ms: f64,
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
/// connections; returns every outcome (in completion order). The generator runs on a
/// single-threaded runtime of its own thread: its connections never hand work across threads,
/// which costs less CPU per request than the caller's multi-threaded runtime (it needs less than
/// a core at the rates it offers).
pub async fn run(
    addr: SocketAddr,
    jobs: Vec<Job>,
    interval: std::time::Duration,
    connections: usize,
) -> Vec<Outcome> {
    let (done, outcomes) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("load-generator".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(_) => return,
            };
            let out = runtime.block_on(run_here(addr, jobs, interval, connections));
            let _ = done.send(out);
        });
    if spawned.is_err() {
        return Vec::new();
    }
    outcomes.await.unwrap_or_default()
}

async fn run_here(
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
                let taken = Instant::now();
                let status = send(&mut sender, addr, due.job).await;
                out.push(Outcome {
                    id,
                    status,
                    latency_ms: due.at.elapsed().as_secs_f64() * 1000.0,
                    service_ms: taken.elapsed().as_secs_f64() * 1000.0,
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A minimal HTTP/1.1 server answering every request with `status` (keep-alive).
    async fn server(status: &'static str) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One request: headers, then content-length bytes of body.
                        while let Some(end) = find(&buf, b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            if buf.len() < end + 4 + len {
                                break;
                            }
                            buf.drain(..end + 4 + len);
                            let answer =
                                format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\n{{}}");
                            if sock.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        addr
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    fn jobs(n: usize) -> Vec<Job> {
        (0..n)
            .map(|i| Job {
                id: format!("job{i}"),
                request: Request::post("/hook")
                    .header("host", "test")
                    .body(Full::new(Bytes::from(format!("{{\"i\":{i}}}"))))
                    .unwrap(),
            })
            .collect()
    }

    #[tokio::test]
    async fn every_job_gets_one_outcome_with_the_servers_status() {
        let addr = server("202 Accepted").await;
        let out = run(addr, jobs(300), std::time::Duration::from_micros(100), 8).await;
        assert_eq!(out.len(), 300);
        assert!(out.iter().all(|o| o.status == Some(202)));
        let mut ids: Vec<&str> = out.iter().map(|o| o.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 300, "each job answered once");
        assert!(out.iter().all(|o| o.latency_ms >= 0.0));
    }

    #[tokio::test]
    async fn other_statuses_and_refused_connections_are_not_counted_as_accepted() {
        let addr = server("503 Service Unavailable").await;
        let out = run(addr, jobs(20), std::time::Duration::from_micros(100), 4).await;
        assert!(out.iter().all(|o| o.status == Some(503)));
        // A port nobody listens on: every job comes back without a status.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let out = run(closed, jobs(5), std::time::Duration::from_micros(100), 2).await;
        assert_eq!(out.len(), 5);
        assert!(out.iter().all(|o| o.status.is_none()));
    }
}
