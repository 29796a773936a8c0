//! Traffic drift: the split read back is neither what Sluice verified last nor what it asked
//! for, so something else changed the weights or the forward action (a person in the console,
//! infrastructure code). The pass says so once, with a warning event and the `TrafficDrift`
//! condition, and its steering restores the planned weight. A forward action that no longer
//! holds both target groups is taken back only then: never on a rule Sluice has not verified.

use super::context::Pass;
use super::{EventReason, conditions};

/// What a pass read that Sluice did not set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Drift {
    /// The canary's share, where both target groups are still in the forward action.
    Weight(i32),
    /// The forward action no longer holds exactly the rollout's two target groups.
    ForwardAction,
}

impl Pass<'_> {
    /// The drift this pass reads, judged against the last pass's status, and only where that
    /// pass verified a weight on the same canary target group (ECS swaps the roles' groups).
    pub(super) fn drift(&self) -> Option<Drift> {
        let traffic = self.input.observed.traffic.as_ref()?;
        let before = self.input.status;
        let verified = before.verified_weight?;
        let groups = self.target_groups()?;
        if before.canary_target_group.as_deref() != Some(groups.canary.as_str()) {
            return None;
        }
        match traffic.canary_weight {
            None => Some(Drift::ForwardAction),
            Some(weight) if weight == verified || weight == before.canary_weight || traffic.last_written == Some(weight) => None,
            Some(weight) => Some(Drift::Weight(weight)),
        }
    }

    /// Records drift in the status and the events: `TrafficDrift` is True from the pass that
    /// reads it until the planned weight is read back, then False with reason `Restored`. A
    /// rollout that never drifted has no such condition.
    pub(super) fn note_drift(&mut self) {
        let planned = self.status.canary_weight;
        let now = self.now();
        let drift = self.drift().filter(|d| *d != Drift::Weight(planned));
        let Some(drift) = drift else {
            let list = &mut self.status.conditions;
            let drifted = list.iter().find(|c| c.type_ == conditions::TRAFFIC_DRIFT && c.status == "True").map(|c| c.message.clone());
            if let Some(found) = drifted
                && self.observed_weight() == Some(planned)
            {
                let message = format!("restored to {planned}% after {found}");
                conditions::set(&mut self.status.conditions, conditions::TRAFFIC_DRIFT, false, "Restored", &message, now);
            }
            return;
        };
        let found = match drift {
            Drift::Weight(weight) => format!("canary weight {weight}%"),
            Drift::ForwardAction => "a forward action that no longer holds both target groups".to_string(),
        };
        let message = format!("traffic changed outside Sluice: read {found} where {planned}% is planned; restoring {planned}%");
        let known = self.status.conditions.iter().any(|c| c.type_ == conditions::TRAFFIC_DRIFT && c.message == message);
        conditions::set(&mut self.status.conditions, conditions::TRAFFIC_DRIFT, true, "DriftDetected", &message, now);
        if !known {
            self.event(EventReason::TrafficDrift, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::engine::fixture::{CANARY_GROUP, Fixture, STABLE};
    use crate::engine::{Action, EventReason, conditions};

    fn steps() -> serde_json::Value {
        json!({"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}})
    }

    /// Paused at 20 % with 20 % verified on the canary group, the router now reading `weight`.
    fn paused_at_20_reading(weight: Option<i32>) -> Fixture {
        let fixture = Fixture::with_router(4, steps(), 20);
        let update = crate::engine::revision::of(&fixture.spec.workload);
        let mut fixture = fixture.running(STABLE, 4, 4).running(&update, 1, 1);
        fixture.status.update_revision = Some(update);
        fixture.status.current_step_index = Some(1);
        fixture.status.canary_weight = 20;
        fixture.status.verified_weight = Some(20);
        fixture.status.canary_target_group = Some(CANARY_GROUP.into());
        fixture.observed.traffic.as_mut().expect("traffic").canary_weight = weight;
        fixture
    }

    fn set_weights(plan: &crate::engine::Plan) -> Vec<(i32, bool)> {
        let set = |a: &Action| match a {
            Action::SetWeight { canary_weight, reclaim, .. } => Some((*canary_weight, *reclaim)),
            _ => None,
        };
        plan.actions.iter().filter_map(set).collect()
    }

    fn drift_condition(plan: &crate::engine::Plan) -> Option<(String, String, String)> {
        let condition = plan.status.conditions.iter().find(|c| c.type_ == conditions::TRAFFIC_DRIFT)?;
        Some((condition.status.clone(), condition.reason.clone(), condition.message.clone()))
    }

    #[test]
    fn a_weight_changed_outside_sluice_is_said_and_restored() {
        let fixture = paused_at_20_reading(Some(50));
        let plan = crate::engine::step(fixture.input());
        assert_eq!(set_weights(&plan), [(20, false)]);
        let (status, reason, message) = drift_condition(&plan).expect("a TrafficDrift condition");
        assert_eq!((status.as_str(), reason.as_str()), ("True", "DriftDetected"));
        assert_eq!(message, "traffic changed outside Sluice: read canary weight 50% where 20% is planned; restoring 20%");
        let drifts: Vec<_> = plan.events.iter().filter(|e| e.reason == EventReason::TrafficDrift).collect();
        assert_eq!(drifts.len(), 1);
        assert!(EventReason::TrafficDrift.is_warning());
        assert!(!plan.events.iter().any(|e| e.reason == EventReason::WeightSet), "50% was read, not set: {:?}", plan.events);

        // The next pass reads the planned weight back: the condition turns False, said once.
        let mut restored = paused_at_20_reading(Some(20));
        restored.status = plan.status.clone();
        let plan = crate::engine::step(restored.input());
        assert!(set_weights(&plan).is_empty());
        let (status, reason, message) = drift_condition(&plan).expect("the condition stays");
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Restored"));
        assert!(message.starts_with("restored to 20% after traffic changed outside Sluice"), "{message}");
        assert!(plan.events.iter().all(|e| e.reason != EventReason::TrafficDrift));
    }

    #[test]
    fn the_weights_sluice_set_or_verified_are_no_drift() {
        for weight in [20, 5] {
            let mut fixture = paused_at_20_reading(Some(weight));
            // The last pass asked for 5 % and verified 20 %: both are Sluice's own.
            fixture.status.canary_weight = 5;
            let plan = crate::engine::step(fixture.input());
            assert_eq!(drift_condition(&plan), None, "read {weight}");
        }
    }

    #[test]
    fn no_drift_is_judged_before_sluice_verified_a_weight_on_that_group() {
        let mut fixture = paused_at_20_reading(Some(50));
        fixture.status.canary_target_group = Some("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/other/3".into());
        assert_eq!(drift_condition(&crate::engine::step(fixture.input())), None, "the roles' groups swapped since");
        let mut fixture = paused_at_20_reading(Some(50));
        fixture.status.verified_weight = None;
        assert_eq!(drift_condition(&crate::engine::step(fixture.input())), None, "never verified");
    }

    #[test]
    fn a_forward_action_rewritten_outside_sluice_is_reclaimed() {
        let fixture = paused_at_20_reading(None);
        let plan = crate::engine::step(fixture.input());
        assert_eq!(set_weights(&plan), [(20, true)]);
        let (status, _, message) = drift_condition(&plan).expect("a TrafficDrift condition");
        assert_eq!(status, "True");
        assert!(message.contains("a forward action that no longer holds both target groups"), "{message}");
        // Never verified there: the action is not Sluice's to take.
        let mut fixture = paused_at_20_reading(None);
        fixture.status.verified_weight = None;
        assert_eq!(set_weights(&crate::engine::step(fixture.input())), [(20, false)]);
    }
}
