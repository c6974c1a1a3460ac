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

    /// Whether a deactivation may pass on an unlocked read of the budget: the brake is not
    /// engaged and there is room. Otherwise the batch takes the organization's brake lock
    /// before deciding (`false` here never holds anything by itself).
    pub fn take_unlocked(&mut self) -> bool {
        if !self.held && self.remaining > 0 {
            self.remaining -= 1;
            return true;
        }
        false
    }
}

/// The check a batch that passed `passed` deactivations of an organization on an unlocked
/// read makes at its end, under the organization's brake lock: `engaged`, `active` (its
/// active users as the batch leaves them) and `recent` (deactivations committed by others in
/// the window) as read then. True when the batch stays within the budget, exactly as if it had
/// held the lock from its first deactivation; false sends it back to do so.
pub fn confirms(
    settings: &BrakeSettings,
    engaged: bool,
    active: i64,
    recent: i64,
    passed: i64,
) -> bool {
    let done = recent.max(0) + passed.max(0);
    !engaged && done <= settings.allowed(active.max(0) + done)
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
    fn the_unlocked_read_passes_within_room_and_never_holds() {
        let mut b = Budget::new(&DEFAULT, false, 41, 8);
        assert!(b.take_unlocked());
        assert!(b.take_unlocked());
        assert!(
            !b.take_unlocked(),
            "no room: the batch must decide under the lock"
        );
        assert!(!b.engaged(), "an unlocked read holds nothing");
        assert!(!Budget::new(&DEFAULT, true, 1000, 0).take_unlocked());
    }

    #[test]
    fn the_end_check_matches_the_locked_decision() {
        // 50 users, none deactivated yet: the locked path passes 10.
        let locked = passed(&mut Budget::new(&DEFAULT, false, 50, 0), 30);
        assert_eq!(locked, 10);
        // The batch passed 10 without the lock (40 active as it leaves them): confirmed.
        assert!(confirms(&DEFAULT, false, 40, 0, 10));
        // Another batch committed 4 meanwhile (36 active): 14 > 10, sent back.
        assert!(!confirms(&DEFAULT, false, 36, 4, 10));
        // Room left but the brake was engaged meanwhile: sent back.
        assert!(!confirms(&DEFAULT, true, 990, 0, 10));
        // Large organization, far from the threshold.
        assert!(confirms(&DEFAULT, false, 900, 50, 50));
    }

    #[test]
    fn odd_inputs_do_not_overflow() {
        assert_eq!(DEFAULT.allowed(i64::MAX), i64::MAX / 100);
        assert_eq!(DEFAULT.allowed(-5), 10);
        let mut b = Budget::new(&DEFAULT, false, -1, -1);
        assert_eq!(passed(&mut b, 20), 10);
    }
}
