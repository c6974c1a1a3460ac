//! The ordering rule: every row remembers the (occurred_at, event id) of the event that last
//! changed it; an event that is not newer changes nothing. The event id breaks ties between
//! events with the same timestamp, so the end state never depends on arrival order.

use chrono::{DateTime, SubsecRound, Utc};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub at: DateTime<Utc>,
    pub event_id: String,
}

impl Version {
    /// `at` is truncated to microseconds, the precision PostgreSQL stores, so a version read
    /// back compares equal to the one written.
    pub fn new(at: DateTime<Utc>, event_id: impl Into<String>) -> Self {
        Self {
            at: at.trunc_subsecs(6),
            event_id: event_id.into(),
        }
    }

    /// True when `self` should replace `current` (none yet, or strictly newer).
    pub fn supersedes(&self, current: Option<&Version>) -> bool {
        current.is_none_or(|c| self > c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn v(secs: i64, micros: u32, id: &str) -> Version {
        Version::new(Utc.timestamp_opt(secs, micros * 1000).unwrap(), id)
    }

    #[test]
    fn newer_wins_older_and_equal_do_not() {
        assert!(v(10, 0, "evt_a").supersedes(None));
        assert!(v(10, 1, "evt_a").supersedes(Some(&v(10, 0, "evt_z"))));
        assert!(!v(10, 0, "evt_z").supersedes(Some(&v(10, 1, "evt_a"))));
        assert!(!v(10, 0, "evt_a").supersedes(Some(&v(10, 0, "evt_a"))));
        // Below the microsecond PostgreSQL keeps, instants are equal.
        let ns = |n| Version::new(Utc.timestamp_opt(10, n).unwrap(), "evt_a");
        assert_eq!(ns(1), ns(999));
        // Same instant: the event id decides, the same way whatever arrives first.
        assert!(v(10, 0, "evt_b").supersedes(Some(&v(10, 0, "evt_a"))));
        assert!(!v(10, 0, "evt_a").supersedes(Some(&v(10, 0, "evt_b"))));
    }
}
