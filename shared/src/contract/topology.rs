//! Exchange and queue names derived from `AMQP_PREFIX`, the retry tiers and the change feed's
//! retention: the topology every binary declares or publishes into.

use super::{DEFAULT_PREFIX, RETRY_TIERS, RetryTier};
use std::time::Duration;

/// Exchange and queue names derived from `AMQP_PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    tiers: Vec<RetryTier>,
    /// The change feed (exchange and stream), with the stream's retention: declared by the
    /// worker only.
    changes_retention: Option<Duration>,
    /// Replicas a quorum queue starts with (`x-quorum-initial-group-size`), so one node's loss
    /// keeps a majority; a cluster smaller than this gives every node a replica.
    quorum_group_size: u32,
}

/// Replicas of each quorum queue by default: a three-node cluster keeps a majority through
/// the loss of one node.
pub const DEFAULT_QUORUM_GROUP_SIZE: u32 = 3;

impl Default for Topology {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Topology {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            tiers: RETRY_TIERS.to_vec(),
            changes_retention: None,
            quorum_group_size: DEFAULT_QUORUM_GROUP_SIZE,
        }
    }

    /// Replicas each quorum queue is declared with (at least 1).
    pub fn with_quorum_group_size(mut self, replicas: u32) -> Self {
        self.quorum_group_size = replicas.max(1);
        self
    }

    pub fn quorum_group_size(&self) -> u32 {
        self.quorum_group_size
    }

    /// Replaces the retry tiers (tests use short delays).
    pub fn with_tiers(mut self, tiers: Vec<RetryTier>) -> Self {
        self.tiers = tiers;
        self
    }

    /// Also declares the change feed: `{prefix}.changes` and its stream, whose messages are
    /// kept for `retention`.
    pub fn with_changes(mut self, retention: Duration) -> Self {
        self.changes_retention = Some(retention);
        self
    }

    pub fn changes_retention(&self) -> Option<Duration> {
        self.changes_retention
    }

    /// Topic exchange of the change feed; routing key = change kind.
    pub fn changes_exchange(&self) -> String {
        format!("{}.changes", self.prefix)
    }

    /// Stream bound to the changes exchange with `#`: the replayable feed.
    pub fn changes_stream(&self) -> String {
        format!("{}.changes.log", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// Topic exchange; routing key = event type.
    pub fn exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }
    /// Quorum queue bound with `#`.
    pub fn apply_queue(&self) -> String {
        format!("{}.events.apply", self.prefix)
    }
    /// Fanout exchange of the urgent path (deprovisionings, `crate::lane`), and the quorum
    /// queue of the same name bound to it.
    pub fn urgent_exchange(&self) -> String {
        format!("{}.events.urgent", self.prefix)
    }
    pub fn urgent_queue(&self) -> String {
        format!("{}.events.urgent", self.prefix)
    }
    /// Fanout exchange of bulk work (an organization over its fair share, sync snapshots),
    /// and its quorum queue of the same name.
    pub fn bulk_exchange(&self) -> String {
        format!("{}.events.bulk", self.prefix)
    }
    pub fn bulk_queue(&self) -> String {
        format!("{}.events.bulk", self.prefix)
    }
    /// Fanout dead-letter exchange.
    pub fn dead_exchange(&self) -> String {
        format!("{}.events.dlx", self.prefix)
    }
    pub fn dead_queue(&self) -> String {
        format!("{}.events.dead", self.prefix)
    }
    /// Headers exchange routing to the tier named in `x-retry-tier`.
    pub fn retry_exchange(&self) -> String {
        format!("{}.events.retry", self.prefix)
    }
    pub fn retry_queue(&self, tier: &RetryTier) -> String {
        format!("{}.events.retry.{}", self.prefix, tier.name)
    }
    pub fn tiers(&self) -> &[RetryTier] {
        &self.tiers
    }
    /// The tier for a message that has been retried `retry_count` times, or `None` when the
    /// tiers are exhausted and the message must be dead-lettered.
    pub fn next_tier(&self, retry_count: u32) -> Option<&RetryTier> {
        self.tiers.get(usize::try_from(retry_count).ok()?)
    }
}
