//! Paces publishes to a rate (`--rate N/s`) without drift: the k-th message waits until
//! start + k/N.

use std::time::Duration;
use tokio::time::Instant;

pub struct Pacer {
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl Pacer {
    pub fn new(rate_per_second: Option<f64>) -> Self {
        Self {
            interval: rate_per_second.map(|r| Duration::from_secs_f64(1.0 / r)),
            next: None,
        }
    }

    /// Waits for the next slot.
    pub async fn wait(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        let at = self.next.unwrap_or(now);
        if at > now {
            tokio::time::sleep_until(at).await;
        }
        self.next = Some(at.max(now) + interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_the_rate() {
        let mut p = Pacer::new(Some(50.0));
        let start = Instant::now();
        for _ in 0..101 {
            p.wait().await;
        }
        // 100 intervals of 20 ms.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((elapsed - 2.0).abs() < 0.4, "{elapsed}");
        let mut unpaced = Pacer::new(None);
        let start = Instant::now();
        for _ in 0..1000 {
            unpaced.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
