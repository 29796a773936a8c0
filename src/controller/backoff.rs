//! How long a failing pass waits before it is tried again: doubling from 5 s to 5 minutes, with
//! jitter so that many objects failing on one cause (an AWS outage, an API server restart) do not
//! come back in lockstep. Rollouts and AnalysisRuns back off the same way, each kind with its own
//! [`Failures`].

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

const FIRST: Duration = Duration::from_secs(5);
const LONGEST: Duration = Duration::from_secs(300);

/// The wait after `failures` failed passes in a row of the object called `key`: within ±20 % of
/// 5 s × 2^(failures − 1), at most 5 minutes.
pub fn after_failures(failures: u32, key: &str) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let base = FIRST.saturating_mul(1 << doublings).min(LONGEST);
    let mut hasher = DefaultHasher::new();
    (key, failures).hash(&mut hasher);
    // A spread from 0.8 to 1.2, the same for the same object and count (no clock, no RNG).
    let spread = 0.8 + (hasher.finish() % 401) as f64 / 1000.0;
    base.mul_f64(spread)
}

/// Consecutive failed passes per object (`namespace/name`) of one kind. Lost on restart, which
/// only shortens the next wait.
#[derive(Default)]
pub struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    /// Counts a pass of `key`: a failure adds one, a success clears the count. Returns the count.
    pub fn record(&self, key: &str, failed: bool) -> u32 {
        let mut counts = self.0.lock().expect("failures lock");
        if !failed {
            counts.remove(key);
            return 0;
        }
        let count = counts.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    /// Forgets every object for which `exists` is false.
    pub fn retain(&self, exists: impl Fn(&str) -> bool) {
        self.0.lock().expect("failures lock").retain(|key, _| exists(key));
    }

    /// The wait before `key`'s next pass, after the failures recorded so far (at least one: this is
    /// asked after a failure).
    pub fn wait(&self, key: &str) -> Duration {
        let failures = self.0.lock().expect("failures lock").get(key).copied().unwrap_or(1);
        after_failures(failures, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_per_object_and_cleared_by_a_success() {
        let failures = Failures::default();
        assert_eq!(failures.record("shop/a", true), 1);
        assert_eq!(failures.record("shop/a", true), 2);
        assert_eq!(failures.record("shop/b", true), 1, "each object counts alone");
        assert_eq!(failures.wait("shop/a"), after_failures(2, "shop/a"));
        assert_eq!(failures.record("shop/a", false), 0);
        assert_eq!(failures.wait("shop/a"), after_failures(1, "shop/a"), "a success starts over");
    }

    #[test]
    fn failing_passes_back_off_exponentially_up_to_five_minutes() {
        let waits: Vec<Duration> = (1..=10).map(|n| after_failures(n, "shop/checkout")).collect();
        assert!(waits[0] >= Duration::from_secs(4) && waits[0] <= Duration::from_secs(6), "{waits:?}");
        assert!(waits[3] >= Duration::from_secs(32) && waits[3] <= Duration::from_secs(48), "{waits:?}");
        for wait in &waits {
            assert!(*wait <= Duration::from_secs(360), "{waits:?}");
        }
        assert!(after_failures(u32::MAX, "x") <= Duration::from_secs(360));
    }

    #[test]
    fn rollouts_failing_together_come_back_apart() {
        let waits: std::collections::BTreeSet<Duration> = (0..50).map(|i| after_failures(3, &format!("ns/r{i}"))).collect();
        assert!(waits.len() > 40, "{} distinct waits of 50", waits.len());
    }
}
