//! What a reader has been through, counted for the application's metrics and for tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a reader's life, for the application's metrics and for tests.
#[derive(Debug, Clone, Default)]
pub struct FeedStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    subscriptions: AtomicU64,
    silent: AtomicU64,
    broker_failures: AtomicU64,
    checks: AtomicU64,
    suspected: AtomicU64,
}

impl FeedStats {
    /// Subscriptions made (the first included).
    pub fn subscriptions(&self) -> u64 {
        self.0.subscriptions.load(Ordering::Relaxed)
    }
    /// Subscriptions replaced because they were silent while the feed had moved on.
    pub fn silent_resubscriptions(&self) -> u64 {
        self.0.silent.load(Ordering::Relaxed)
    }
    /// Connections or subscriptions lost to a broker error (then resumed with backoff).
    pub fn broker_failures(&self) -> u64 {
        self.0.broker_failures.load(Ordering::Relaxed)
    }
    /// Looks at the stream's newest change after a quiet spell.
    pub fn silence_checks(&self) -> u64 {
        self.0.checks.load(Ordering::Relaxed)
    }
    /// Checks that found the feed past the subscription with nothing arrived (looked at again
    /// a period later: silent only if still so; most turn out deliveries a moment behind).
    pub fn suspected_silences(&self) -> u64 {
        self.0.suspected.load(Ordering::Relaxed)
    }
}

impl FeedStats {
    pub(crate) fn count_subscription(&self) {
        self.0.subscriptions.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_silent(&self) {
        self.0.silent.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_broker_failure(&self) {
        self.0.broker_failures.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_check(&self) {
        self.0.checks.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_suspected(&self) {
        self.0.suspected.fetch_add(1, Ordering::Relaxed);
    }
}
