//! What a fault scenario watches while it runs: every 100 ms, whether ingest is ready and how
//! many events are applied; at the end, how long ingest was not ready and the longest time
//! nothing was applied after the fault while events were still to apply.

use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::stack::Stack;
use tokio::sync::Mutex;

/// Samples, every 100 ms: ingest's readiness and the number of events applied.
pub struct Monitor {
    samples: Arc<Mutex<Vec<(Instant, bool, i64)>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl Monitor {
    pub fn start(stack: &Stack) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = tokio_util::sync::CancellationToken::new();
        let (out, token) = (Arc::clone(&samples), stop.clone());
        let ready_url = format!("http://127.0.0.1:{}/readyz", stack.ingest_port);
        let client = stack.client.clone();
        let db_url = stack.db.url.clone();
        tokio::spawn(async move {
            let db = testkit::db::TestDb {
                name: String::new(),
                url: db_url,
            };
            while !token.is_cancelled() {
                let ready = client
                    .get(&ready_url)
                    .timeout(Duration::from_millis(500))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                let applied = db
                    .try_count("SELECT count(*) AS n FROM processed_events")
                    .await
                    .unwrap_or(-1);
                out.lock().await.push((Instant::now(), ready, applied));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { samples, stop }
    }

    /// (seconds ingest was not ready, the longest the applied count stood still after `fault`
    /// while events were still to apply).
    pub async fn finish(self, fault: Instant) -> (f64, f64) {
        self.stop.cancel();
        let samples = self.samples.lock().await.clone();
        let unready = samples
            .windows(2)
            .filter(|w| !w[0].1)
            .map(|w| (w[1].0 - w[0].0).as_secs_f64())
            .sum();
        let total = samples.iter().map(|s| s.2).max().unwrap_or(0);
        let mut longest = 0.0f64;
        let mut since: Option<(Instant, i64)> = None;
        // A sample that could not count (the database away) is no progress.
        let mut known = samples
            .iter()
            .filter(|s| s.0 < fault && s.2 >= 0)
            .map(|s| s.2)
            .next_back()
            .unwrap_or(-1);
        for s in samples.iter().filter(|s| s.0 >= fault) {
            if s.2 >= 0 {
                known = s.2;
            }
            if known < 0 {
                continue;
            }
            match since {
                Some((t, n)) if known == n && n < total => {
                    longest = longest.max((s.0 - t).as_secs_f64());
                }
                _ => since = Some((s.0, known)),
            }
        }
        (unready, longest)
    }
}
