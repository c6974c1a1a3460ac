//! Fair share between organizations: each organization may send `INGEST_FAIR_RATE` events a
//! second (with bursts of `INGEST_FAIR_BURST`) to the apply queue from this ingest instance;
//! what it sends beyond goes to the bulk queue (`shared::lane::Lane::Bulk`), which the worker
//! consumes on lanes of their own. An onboarding burst of one customer then fills the bulk
//! queue, while every other customer's provisioning keeps the apply queue to itself.
//!
//! A token bucket per organization (`admit`, pure), in a map bounded by forgetting buckets
//! that are full again (an organization idle long enough has its whole burst back anyway).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The buckets kept before full ones are forgotten.
const KEEP: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Refills `bucket` for the time since it was last seen and takes one token: `true` when the
/// event is within the organization's share.
fn admit(bucket: &mut Bucket, now: Instant, rate: f64, burst: f64) -> bool {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
    bucket.at = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        true
    } else {
        false
    }
}

/// Every organization's bucket in this ingest instance.
pub struct FairShare {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl FairShare {
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an event of `organization_id` is within its share now (`false`: bulk).
    pub fn admit(&self, organization_id: &str, now: Instant) -> bool {
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        if let Some(bucket) = buckets.get_mut(organization_id) {
            return admit(bucket, now, self.rate, self.burst);
        }
        if buckets.len() >= KEEP {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
                b.tokens + elapsed * rate < burst
            });
        }
        let mut bucket = Bucket {
            tokens: self.burst,
            at: now,
        };
        let admitted = admit(&mut bucket, now, self.rate, self.burst);
        buckets.insert(organization_id.to_owned(), bucket);
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_past_its_share_goes_to_bulk_then_the_share_refills() {
        let fair = FairShare::new(50, 500);
        let t0 = Instant::now();
        let admitted = (0..2000).filter(|_| fair.admit("org_big", t0)).count();
        assert_eq!(admitted, 500, "the burst allowance, then bulk");
        // Another organization is unaffected.
        assert!(fair.admit("org_small", t0));
        // One second later: 50 more.
        let t1 = t0 + Duration::from_secs(1);
        let admitted = (0..100).filter(|_| fair.admit("org_big", t1)).count();
        assert_eq!(admitted, 50);
        // Idle for a long time: the whole burst again, never more.
        let t2 = t1 + Duration::from_secs(3600);
        let admitted = (0..1000).filter(|_| fair.admit("org_big", t2)).count();
        assert_eq!(admitted, 500);
    }

    #[test]
    fn a_steady_organization_within_its_rate_is_never_bulk() {
        let fair = FairShare::new(50, 500);
        let t0 = Instant::now();
        for i in 0..10_000u64 {
            // 40 events a second, for 250 s.
            let t = t0 + Duration::from_millis(i * 25);
            assert!(fair.admit("org_steady", t), "event {i}");
        }
    }

    #[test]
    fn the_map_forgets_full_buckets_past_its_bound() {
        let fair = FairShare::new(50, 500);
        let t0 = Instant::now();
        for o in 0..KEEP {
            fair.admit(&format!("org_{o}"), t0);
        }
        // A minute later every one of them is full again: the next new organization clears
        // them; one busy since keeps its (far from full) bucket.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..490 {
            fair.admit("org_busy", later);
        }
        fair.admit("org_new", later);
        let buckets = fair.buckets.lock().unwrap();
        assert_eq!(buckets.len(), 2);
        assert!(buckets.contains_key("org_busy") && buckets.contains_key("org_new"));
        assert!(buckets["org_busy"].tokens < 11.0);
    }
}
