//! The brake's unlocked reads, remembered for a moment: a batch far from the threshold passes
//! its deactivations on the budget an earlier batch of this worker read (at its end, under the
//! lock) less than [`FRESH`] ago, instead of counting again. Only the optimistic read comes
//! from here; every batch still confirms under the lock, so a stale entry can only send a
//! batch back to run under the lock, never let one past the budget.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long remembered counts stand in for a read.
pub const FRESH: Duration = Duration::from_secs(1);

/// What the budget is computed from: engaged (or holding), active users, deactivations in the
/// window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub engaged: bool,
    pub active: i64,
    pub recent: i64,
}

/// Per organization, the counts as last read (and when); bounded by forgetting stale entries.
#[derive(Debug, Default)]
pub struct BudgetCache(Mutex<HashMap<String, (Counts, Instant)>>);

/// Entries kept before stale ones are dropped.
const KEEP: usize = 10_000;

impl BudgetCache {
    /// The counts of `org` if read less than [`FRESH`] before `now`.
    pub fn get(&self, org: &str, now: Instant) -> Option<Counts> {
        let map = self.0.lock().ok()?;
        let (counts, at) = map.get(org)?;
        (now.saturating_duration_since(*at) < FRESH).then_some(*counts)
    }

    /// Remembers `counts` of `org`, read at `now`.
    pub fn put(&self, org: &str, counts: Counts, now: Instant) {
        let Ok(mut map) = self.0.lock() else {
            return;
        };
        if map.len() >= KEEP && !map.contains_key(org) {
            map.retain(|_, (_, at)| now.saturating_duration_since(*at) < FRESH);
        }
        map.insert(org.to_owned(), (counts, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Counts = Counts {
        engaged: false,
        active: 100,
        recent: 3,
    };

    #[test]
    fn counts_stand_in_for_a_read_only_while_fresh() {
        let cache = BudgetCache::default();
        let t0 = Instant::now();
        assert_eq!(cache.get("org", t0), None);
        cache.put("org", C, t0);
        assert_eq!(cache.get("org", t0 + Duration::from_millis(900)), Some(C));
        assert_eq!(cache.get("org", t0 + FRESH), None);
        assert_eq!(cache.get("other", t0), None);
    }

    #[test]
    fn stale_entries_go_past_the_bound() {
        let cache = BudgetCache::default();
        let t0 = Instant::now();
        for o in 0..KEEP {
            cache.put(&format!("org_{o}"), C, t0);
        }
        let later = t0 + FRESH * 2;
        cache.put("org_new", C, later);
        assert_eq!(cache.0.lock().unwrap().len(), 1);
    }
}
