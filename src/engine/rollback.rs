//! The rollback window (`spec.rollbackWindow`): a return to one of the last stable revisions is
//! fast-tracked to 100%, with no steps and no analysis. That revision ran in production moments
//! ago; gating it again only keeps the bad version longer. A ReplicaSet still inside its
//! scale-down delay is the one scaled back, so no pod is created.

use super::context::Pass;

/// Stable revisions remembered, the most `rollbackWindow.revisions` may name.
pub(super) const STABLE_HISTORY: usize = 10;

impl Pass<'_> {
    /// `old` stops being stable: it goes to the front of the history.
    pub(super) fn remember_stable(&mut self, old: &str) {
        let new = self.update.clone();
        let history = &mut self.status.stable_history;
        history.retain(|r| r != old && *r != new);
        history.insert(0, old.to_string());
        history.truncate(STABLE_HISTORY);
    }

    /// How many promotions ago the candidate was stable, when that is inside the window; the
    /// candidate is then promoted in full.
    pub(super) fn fast_track_rollback(&mut self) -> Option<usize> {
        let window = self.input.spec.rollback_window.as_ref()?;
        let depth = usize::try_from(window.revisions).unwrap_or(0).min(STABLE_HISTORY);
        let ago = self.status.stable_history.iter().take(depth).position(|r| *r == self.update)? + 1;
        self.status.promote_full = true;
        self.status.fast_tracked = true;
        Some(ago)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture::{Fixture, STABLE};
    use super::super::{Action, step};
    use crate::api::RolloutPhase;
    use crate::engine::revision;

    /// A 4-replica canary with analysis, whose stable history is `history`, asking for a revision
    /// that `history` may hold.
    fn rolling_back(window: Option<i32>, history: &[&str]) -> (Fixture, String) {
        let strategy = json!({"canary": {"steps": [{"setWeight": 25}, {"analysis": {"templates": [{"templateName": "errors"}]}},
            {"pause": {}}]}});
        let mut fixture = Fixture::new(4, strategy);
        fixture.spec.rollback_window = window.map(|revisions| crate::api::RollbackWindow { revisions });
        let back = revision::of(&fixture.spec.workload);
        fixture.status.stable_history = history.iter().map(|r| r.replace("BACK", &back)).collect();
        fixture.status.update_revision = Some(STABLE.into());
        // The revision rolled back to is still inside its scale-down delay: all its pods run.
        let fixture = fixture.running(STABLE, 4, 4).running(&back, 4, 4);
        (fixture, back)
    }

    #[test]
    fn a_rollback_to_a_recent_stable_revision_goes_straight_to_full_with_no_steps_or_analysis() {
        let (fixture, back) = rolling_back(Some(2), &["other", "BACK"]);
        let plan = step(fixture.input());
        assert!(plan.status.fast_tracked && plan.status.promote_full);
        assert!(!plan.actions.iter().any(|a| matches!(a, Action::CreateAnalysisRun { .. })), "{:?}", plan.actions);
        assert!(
            !plan.actions.iter().any(|a| matches!(a, Action::Scale { revision, .. } if *revision == back)),
            "its ReplicaSet is reused as it runs: no pod is created"
        );
        // Its pods are all ready: traffic leaves the bad revision at once (the replica ratio
        // moves it by scaling that one down), and the next pass marks the return stable.
        assert!(
            plan.actions.iter().any(|a| matches!(a, Action::Scale { revision, replicas: 0, .. } if revision == STABLE)),
            "{:?}",
            plan.actions
        );
        assert!(plan.status.message.unwrap().contains("fast-tracked"), "the status says so");
        assert!(plan.events.iter().any(|e| e.message.contains("2 promotions ago")), "{:?}", plan.events);
    }

    #[test]
    fn a_rollback_past_the_window_or_without_one_runs_every_step() {
        for (window, history) in [(Some(1), &["other", "BACK"]), (None, &["BACK", "other"])] {
            let (fixture, _) = rolling_back(window, history);
            let plan = step(fixture.input());
            assert!(!plan.status.fast_tracked && !plan.status.promote_full, "window {window:?}");
            assert_eq!(plan.status.phase, Some(RolloutPhase::Progressing));
        }
    }

    #[test]
    fn a_window_written_past_the_schema_is_bounded_by_the_history_kept() {
        // The CRD bounds revisions to 1..10; an object written past it looks at most 10 back,
        // and a negative window at none.
        let mut history: Vec<String> = (0..9).map(|i| format!("old-{i}")).collect();
        history.push("BACK".into());
        let history: Vec<&str> = history.iter().map(String::as_str).collect();
        let (fixture, _) = rolling_back(Some(i32::MAX), &history);
        assert!(step(fixture.input()).status.fast_tracked, "the tenth back is inside");
        let (fixture, _) = rolling_back(Some(-5), &["BACK"]);
        assert!(!step(fixture.input()).status.fast_tracked);
    }

    #[test]
    fn a_promotion_remembers_the_revision_it_replaces_newest_first() {
        let (mut fixture, _) = rolling_back(None, &["a", "b"]);
        fixture.status.stable_history.extend((0..12).map(|i| format!("old-{i}")));
        let mut pass = fixture.pass();
        pass.remember_stable("b");
        assert_eq!(pass.status.stable_history[..3], ["b".to_string(), "a".to_string(), "old-0".to_string()]);
        assert_eq!(pass.status.stable_history.len(), super::STABLE_HISTORY);
    }
}
