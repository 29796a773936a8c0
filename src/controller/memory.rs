//! What the controller remembers of each Rollout between passes, keyed `namespace/name`: the
//! resourceVersion of its last status write, its phase for the per-phase gauge, and when it asked
//! to be looked at again. Lost on restart, which is safe (a new process starts from a fresh list);
//! forgotten when the Rollout is deleted, so neither memory nor the gauges count Rollouts gone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::metrics::{Metrics, PhaseLabel};
use crate::api::RolloutPhase;

#[derive(Default)]
struct Remembered {
    written: Option<u64>,
    phase: Option<RolloutPhase>,
    wake: Option<Instant>,
}

#[derive(Default)]
pub struct Memory(Mutex<HashMap<String, Remembered>>);

const PHASES: [RolloutPhase; 4] = [RolloutPhase::Progressing, RolloutPhase::Paused, RolloutPhase::Healthy, RolloutPhase::Degraded];

impl Memory {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Remembered>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A status write of `key` answered with `version`, in `phase`.
    pub fn wrote(&self, key: &str, version: Option<u64>, phase: Option<RolloutPhase>, metrics: &Metrics) {
        let mut memory = self.lock();
        let remembered = memory.entry(key.to_string()).or_default();
        if version.is_some() {
            remembered.written = version;
        }
        if phase.is_some() {
            remembered.phase = phase;
        }
        count_phases(&memory, metrics);
    }

    /// The resourceVersion of `key`'s last status write.
    pub fn written(&self, key: &str) -> Option<u64> {
        self.lock().get(key).and_then(|r| r.written)
    }

    pub fn wake_at(&self, key: &str, at: Instant) {
        self.lock().entry(key.to_string()).or_default().wake = Some(at);
    }

    /// When `key` asked to be looked at again, forgetting it.
    pub fn take_wake(&self, key: &str) -> Option<Instant> {
        self.lock().get_mut(key).and_then(|r| r.wake.take())
    }

    /// Forgets every Rollout for which `exists` is false.
    pub fn retain(&self, exists: impl Fn(&str) -> bool, metrics: &Metrics) {
        let mut memory = self.lock();
        memory.retain(|key, _| exists(key));
        count_phases(&memory, metrics);
    }

    pub fn forget(&self, key: &str, metrics: &Metrics) {
        let mut memory = self.lock();
        memory.remove(key);
        count_phases(&memory, metrics);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn count_phases(memory: &HashMap<String, Remembered>, metrics: &Metrics) {
    for phase in PHASES {
        let count = memory.values().filter(|r| r.phase == Some(phase)).count();
        metrics.rollouts.get_or_create(&PhaseLabel { phase: phase.to_string() }).set(count as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(metrics: &Metrics, phase: RolloutPhase) -> i64 {
        metrics.rollouts.get_or_create(&PhaseLabel { phase: phase.to_string() }).get()
    }

    #[test]
    fn a_deleted_rollout_is_forgotten_and_leaves_the_phase_gauges() {
        let metrics = Metrics::new(&mut Default::default(), false);
        let memory = Memory::default();
        memory.wrote("shop/a", Some(7), Some(RolloutPhase::Healthy), &metrics);
        memory.wrote("shop/b", Some(9), Some(RolloutPhase::Healthy), &metrics);
        memory.wake_at("shop/b", Instant::now());
        assert_eq!((gauge(&metrics, RolloutPhase::Healthy), memory.written("shop/a")), (2, Some(7)));
        memory.forget("shop/a", &metrics);
        assert_eq!((gauge(&metrics, RolloutPhase::Healthy), memory.written("shop/a"), memory.len()), (1, None, 1));
        memory.retain(|key| key != "shop/b", &metrics);
        assert!(memory.is_empty());
        assert_eq!(gauge(&metrics, RolloutPhase::Healthy), 0);
    }

    #[test]
    fn a_write_without_a_phase_keeps_the_last_phase() {
        let metrics = Metrics::new(&mut Default::default(), false);
        let memory = Memory::default();
        memory.wrote("shop/a", Some(1), Some(RolloutPhase::Paused), &metrics);
        memory.wrote("shop/a", Some(2), None, &metrics);
        assert_eq!((gauge(&metrics, RolloutPhase::Paused), memory.written("shop/a")), (1, Some(2)));
    }
}
