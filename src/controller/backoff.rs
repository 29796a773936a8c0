//! How long a failing pass waits before it is tried again: doubling from 5 s to 5 minutes, with
//! jitter so that many Rollouts failing on one cause (an AWS outage, an API server restart) do not
//! come back in lockstep.

use std::hash::{DefaultHasher, Hash, Hasher};
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

#[cfg(test)]
mod tests {
    use super::*;

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
