//! How many deactivations an organization may take before the brake holds the rest.

use std::time::Duration;

/// `DEPROVISION_BRAKE_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrakeSettings {
    pub window: Duration,
    /// Percent of the organization's active users; 0 turns the brake off.
    pub percent: u32,
    /// Deactivations always allowed per window, whatever the percentage gives.
    pub min: u32,
}

impl BrakeSettings {
    pub const OFF: Self = Self {
        window: Duration::from_secs(3600),
        percent: 0,
        min: 0,
    };

    pub fn enabled(&self) -> bool {
        self.percent > 0
    }

    /// Deactivations allowed within one window for an organization that had `base` active
    /// users when the window began.
    pub fn allowed(&self, base: i64) -> i64 {
        let share = base.max(0).saturating_mul(i64::from(self.percent)) / 100;
        share.max(i64::from(self.min))
    }
}

/// One organization's budget within a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    held: bool,
    remaining: i64,
}

impl Budget {
    /// `engaged`: the brake already holds events of the organization (later deactivations
    /// queue behind them); `active`: its active users now; `recent`: deactivations committed in
    /// the window (so `active + recent` were active when it began).
    pub fn new(settings: &BrakeSettings, engaged: bool, active: i64, recent: i64) -> Self {
        let recent = recent.max(0);
        Self {
            held: engaged,
            remaining: settings.allowed(active.max(0) + recent) - recent,
        }
    }

    /// Whether one more deactivation may be applied; `false` holds it (and every later one).
    pub fn take(&mut self) -> bool {
        if !self.held && self.remaining > 0 {
            self.remaining -= 1;
            return true;
        }
        self.held = true;
        false
    }

    pub fn engaged(&self) -> bool {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: BrakeSettings = BrakeSettings {
        window: Duration::from_secs(3600),
        percent: 20,
        min: 10,
    };

    fn passed(budget: &mut Budget, n: usize) -> usize {
        (0..n).filter(|_| budget.take()).count()
    }

    #[test]
    fn fifty_users_let_ten_through_then_hold_everything() {
        let mut b = Budget::new(&DEFAULT, false, 50, 0);
        assert_eq!(passed(&mut b, 30), 10);
        assert!(b.engaged());
    }

    #[test]
    fn the_window_counts_what_already_passed() {
        // 7 of 50 deactivated earlier in the window (43 still active): 3 more pass.
        let mut b = Budget::new(&DEFAULT, false, 43, 7);
        assert_eq!(passed(&mut b, 5), 3);
    }

    #[test]
    fn large_organizations_get_their_percentage_small_ones_the_minimum() {
        assert_eq!(DEFAULT.allowed(1000), 200);
        assert_eq!(DEFAULT.allowed(5), 10);
        assert_eq!(passed(&mut Budget::new(&DEFAULT, false, 5, 0), 5), 5);
        assert_eq!(passed(&mut Budget::new(&DEFAULT, false, 1000, 0), 500), 200);
    }

    #[test]
    fn an_engaged_brake_holds_even_with_budget_left() {
        let mut b = Budget::new(&DEFAULT, true, 1000, 0);
        assert!(!b.take());
    }

    #[test]
    fn once_held_later_deactivations_queue_behind() {
        let mut b = Budget::new(&DEFAULT, false, 41, 9);
        assert!(b.take());
        assert!(!b.take());
        assert!(!b.take(), "stays held within the transaction");
    }

    #[test]
    fn odd_inputs_do_not_overflow() {
        assert_eq!(DEFAULT.allowed(i64::MAX), i64::MAX / 100);
        assert_eq!(DEFAULT.allowed(-5), 10);
        let mut b = Budget::new(&DEFAULT, false, -1, -1);
        assert_eq!(passed(&mut b, 20), 10);
    }
}
