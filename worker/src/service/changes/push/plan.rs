//! What to deliver next to one endpoint, decided without I/O: the changes read from the outbox
//! (in `seq` order) wait in a queue per organization. An organization's batches are handed, in
//! order, to one sender that posts them one at a time (the next only after a 2xx for the one
//! before), so its changes reach the endpoint strictly in `seq` order; up to [`AHEAD`] batches
//! are handed at once (the second only when full), so the next one leaves as soon as the
//! previous is answered.
//! Organizations go concurrently. Memory is bounded: an organization keeps at most `per_org` changes and the
//! endpoint `total`; past that the organization is marked `truncated` and, once its queue is
//! empty, refilled from the table (`refill_from`) up to what the scan has passed.
//!
//! The floor (every change at or below it is delivered, or not for this endpoint) is what a
//! new leader starts from; organizations with a stored position above it skip what they had.

use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};

/// Batches handed to an organization's sender at once: the one on the wire and the next.
pub const AHEAD: usize = 2;

/// Bounds of a plan.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Changes per request (`CHANGES_WEBHOOK_BATCH`).
    pub batch: usize,
    /// Changes kept in memory per organization.
    pub per_org: usize,
    /// Changes kept in memory for the endpoint.
    pub total: usize,
}

/// A change waiting for delivery: its `seq`, commit time and contract JSON.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: i64,
    pub committed_at: DateTime<Utc>,
    pub body: Vec<u8>,
}

/// One request's worth: changes of one organization, in `seq` order.
#[derive(Debug, Clone)]
pub struct Batch {
    pub organization_id: String,
    pub first: i64,
    pub last: i64,
    pub count: usize,
    pub oldest: DateTime<Utc>,
    /// `{"changes":[…]}`.
    pub body: Vec<u8>,
}

impl Batch {
    /// The `webhook-id` of this batch: the same on every retry of it.
    pub fn webhook_id(&self) -> String {
        format!(
            "batch_{}_{}_{}",
            self.first, self.last, self.organization_id
        )
    }
}

#[derive(Debug, Default)]
struct Org {
    delivered: i64,
    /// The highest `seq` queued or sent: a refill reads after it.
    read_through: i64,
    pending: VecDeque<Pending>,
    truncated: bool,
    /// The oldest commit time of each batch handed to the sender and not yet answered, in
    /// order.
    handed: VecDeque<DateTime<Utc>>,
}

/// One endpoint's deliveries.
#[derive(Debug)]
pub struct Plan {
    limits: Limits,
    scan: i64,
    kept: usize,
    orgs: HashMap<String, Org>,
}

impl Plan {
    /// A plan starting at `floor`, with the positions stored above it.
    pub fn new(
        floor: i64,
        positions: impl IntoIterator<Item = (String, i64)>,
        limits: Limits,
    ) -> Self {
        let orgs = positions
            .into_iter()
            .map(|(org, delivered)| {
                (
                    org,
                    Org {
                        delivered,
                        read_through: delivered,
                        ..Org::default()
                    },
                )
            })
            .collect();
        Self {
            limits,
            scan: floor,
            kept: 0,
            orgs,
        }
    }

    /// The highest `seq` read so far.
    pub fn scanned(&self) -> i64 {
        self.scan
    }

    /// Whether the scan should read more (memory left).
    pub fn wants_more(&self) -> bool {
        self.kept < self.limits.total
    }

    /// Whether [`Plan::offer`] would keep a change of this organization now (its body need not
    /// be built otherwise); a change it would not keep must still be offered, or passed.
    pub fn keeps(&self, organization_id: &str, seq: i64) -> bool {
        let total_full = self.kept >= self.limits.total;
        match self.orgs.get(organization_id) {
            Some(org) => {
                seq > org.delivered
                    && !org.truncated
                    && !total_full
                    && org.pending.len() < self.limits.per_org
            }
            None => !total_full,
        }
    }

    /// A change the scan read but did not keep: its organization is marked for a refill.
    pub fn skip(&mut self, organization_id: &str, seq: i64) {
        self.scan = self.scan.max(seq);
        let org = self.orgs.entry(organization_id.to_owned()).or_default();
        if seq > org.delivered {
            org.truncated = true;
        }
    }

    /// The bounds it was made with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A row the scan passed that is not for this endpoint (or at all).
    pub fn pass(&mut self, seq: i64) {
        self.scan = self.scan.max(seq);
    }

    /// A row the scan read for this endpoint (rows come in `seq` order).
    pub fn offer(&mut self, organization_id: &str, change: Pending) {
        self.scan = self.scan.max(change.seq);
        let total_full = self.kept >= self.limits.total;
        let org = self.orgs.entry(organization_id.to_owned()).or_default();
        if change.seq <= org.delivered {
            return;
        }
        if org.truncated || total_full || org.pending.len() >= self.limits.per_org {
            org.truncated = true;
            return;
        }
        org.read_through = org.read_through.max(change.seq);
        org.pending.push_back(change);
        self.kept += 1;
    }

    /// Organizations to refill from the table: truncated, with less than two batches queued
    /// (refilled ahead, so the next batch is ready when the one in flight is answered); with
    /// the `seq` to read after and up to which (the scan).
    pub fn refills(&self) -> Vec<(String, i64, i64)> {
        let low = self.limits.batch * 2;
        self.orgs
            .iter()
            .filter(|(_, o)| o.truncated && o.pending.len() < low)
            .map(|(id, o)| (id.clone(), o.read_through.max(o.delivered), self.scan))
            .collect()
    }

    /// The rows a refill read (seq above the organization's position, up to `through`, in
    /// order, at most `per_org`).
    pub fn refill(&mut self, organization_id: &str, rows: Vec<Pending>, through: i64) {
        let per_org = self.limits.per_org;
        let Some(org) = self.orgs.get_mut(organization_id) else {
            return;
        };
        let full = rows.len() >= per_org;
        let last = rows.last().map(|r| r.seq);
        for r in rows {
            if r.seq > org.delivered.max(org.read_through) && r.seq <= through {
                org.read_through = r.seq;
                org.pending.push_back(r);
                self.kept += 1;
            }
        }
        // Rows above the last one read and up to `through` are still to read when the refill
        // was cut at `per_org`; otherwise the organization has everything up to the scan.
        org.truncated = full && last.is_some_and(|l| l < through);
    }

    /// The next batches, oldest first: for organizations with fewer than [`AHEAD`] batches
    /// handed, at most `room` of them organizations with none handed yet (the others are
    /// already counted as in flight).
    pub fn next_batches(&mut self, room: usize) -> Vec<Batch> {
        let mut ready: Vec<(&String, bool, i64)> = self
            .orgs
            .iter()
            .filter(|(_, o)| o.handed.len() < AHEAD)
            .filter_map(|(id, o)| o.pending.front().map(|p| (id, o.handed.is_empty(), p.seq)))
            .collect();
        ready.sort_by_key(|(_, _, seq)| *seq);
        let mut room = room;
        let mut chosen = Vec::new();
        for (id, new, _) in ready {
            if new {
                if room == 0 {
                    continue;
                }
                room -= 1;
            }
            chosen.push(id.clone());
        }
        let mut out = Vec::with_capacity(chosen.len());
        for id in chosen {
            let Some(org) = self.orgs.get_mut(&id) else {
                continue;
            };
            // A batch beyond the one on the wire is handed only when full: a partial one is
            // better cut when the previous is answered, with what arrived meanwhile.
            while org.handed.len() < AHEAD
                && !org.pending.is_empty()
                && (org.handed.is_empty() || org.pending.len() >= self.limits.batch)
            {
                let n = org.pending.len().min(self.limits.batch);
                let taken: Vec<Pending> = org.pending.drain(..n).collect();
                self.kept -= taken.len();
                let (Some(first), Some(last)) = (taken.first(), taken.last()) else {
                    break;
                };
                let oldest = first.committed_at;
                let (first, last) = (first.seq, last.seq);
                let mut body =
                    Vec::with_capacity(16 + taken.iter().map(|p| p.body.len() + 1).sum::<usize>());
                body.extend_from_slice(b"{\"changes\":[");
                for (i, p) in taken.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(&p.body);
                }
                body.extend_from_slice(b"]}");
                org.handed.push_back(oldest);
                out.push(Batch {
                    organization_id: id.clone(),
                    first,
                    last,
                    count: taken.len(),
                    oldest,
                    body,
                });
            }
        }
        out
    }

    /// The endpoint answered 2xx for the organization's batch up to `last`.
    pub fn delivered(&mut self, organization_id: &str, last: i64) {
        if let Some(org) = self.orgs.get_mut(organization_id) {
            org.delivered = org.delivered.max(last);
            org.handed.pop_front();
            if org.pending.is_empty() && !org.truncated && org.handed.is_empty() {
                // Nothing waits: forget it (its position is stored).
                self.orgs.remove(organization_id);
            }
        }
    }

    /// Every change at or below it is delivered or not for this endpoint.
    pub fn floor(&self) -> i64 {
        self.orgs
            .values()
            .filter(|o| !o.pending.is_empty() || o.truncated || !o.handed.is_empty())
            .map(|o| o.delivered)
            .min()
            .map_or(self.scan, |d| d.min(self.scan))
    }

    /// The commit time of the oldest change known and not delivered.
    pub fn oldest_undelivered(&self) -> Option<DateTime<Utc>> {
        self.orgs
            .values()
            .filter_map(|o| match (o.handed.front(), o.pending.front()) {
                (Some(f), _) => Some(*f),
                (None, Some(p)) => Some(p.committed_at),
                (None, None) => None,
            })
            .min()
    }

    /// Organizations with batches handed and not answered.
    pub fn in_flight(&self) -> usize {
        self.orgs.values().filter(|o| !o.handed.is_empty()).count()
    }

    /// Whether the organization has batches handed and not answered.
    pub fn is_in_flight(&self, organization_id: &str) -> bool {
        self.orgs
            .get(organization_id)
            .is_some_and(|o| !o.handed.is_empty())
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
