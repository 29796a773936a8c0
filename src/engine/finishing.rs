//! Finishing a pass: the status fields every pass reports whatever the strategy decided (replica
//! counts, the weight in force, the progress deadline, phase and conditions).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::context::{Pass, bounded, default_progress_deadline, later};
use super::drift::Drift;
use super::{EventReason, RevisionObservation, conditions};
use crate::api::{RolloutPhase, StrategyKind, WorkloadKind};

impl Pass<'_> {
    pub(super) fn summarize_status(&mut self) {
        self.count_replicas();
        self.note_drift();
        // A weight read but set outside Sluice is said as drift, not as a weight Sluice set.
        if self.has_router()
            && self.status.verified_weight != self.input.status.verified_weight
            && let Some(weight) = self.status.verified_weight
            && self.drift() != Some(Drift::Weight(weight))
        {
            self.event(EventReason::WeightSet, format!("canary weight is {weight}%"));
        }
        let deadline_exceeded = self.check_progress_deadline();
        let paused = !self.status.pause_conditions.is_empty() || self.input.spec.paused;
        self.status.phase = Some(self.phase);
        self.status.message = Some(self.message.clone());
        conditions::summarize(&mut self.status, self.phase, paused, deadline_exceeded, self.input.now);
    }

    fn count_replicas(&mut self) {
        let revisions = &self.input.observed.revisions;
        self.status.desired_replicas = self.replicas;
        let total = |count: fn(&RevisionObservation) -> i32| revisions.iter().map(|r| bounded(count(r))).fold(0, i32::saturating_add);
        self.status.replicas = total(|r| r.replicas);
        self.status.ready_replicas = total(|r| r.ready);
        self.status.available_replicas = total(|r| r.available);
        self.status.updated_replicas = self.observed(&self.update.clone()).map_or(0, |r| r.ready);
        self.status.verified_weight = if self.has_router() {
            self.observed_weight()
        } else if matches!(self.strategy, Some(StrategyKind::BlueGreen(_))) {
            let active = self.input.observed.services.stable.as_deref();
            Some(if !self.at_rest() && active == Some(self.update.as_str()) { 100 } else { 0 })
        } else {
            let canary = if self.at_rest() { 0 } else { i64::from(self.ready(&self.update.clone())) };
            let total = i64::from(self.status.ready_replicas.max(1));
            Some(((canary * 100 + total / 2) / total).clamp(0, 100) as i32)
        };
        self.status.canary_target_group = match &self.input.observed.traffic {
            Some(traffic) if traffic.canary_weight.is_some() => self.target_groups().map(|groups| groups.canary),
            _ => None,
        };
        self.status.weight = Some(self.status.weight_shown());
        if let Some(WorkloadKind::Kubernetes(kubernetes)) = self.workload {
            let labels = kubernetes.selector.match_labels.clone().unwrap_or_default();
            let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            self.status.selector = Some(selector.join(","));
        }
    }

    /// True once the rollout has gone without progress past its deadline.
    fn check_progress_deadline(&mut self) -> bool {
        let before = self.input.status;
        let moved = before.current_step_index != self.status.current_step_index
            || before.stable_revision != self.status.stable_revision
            || before.update_revision != self.status.update_revision
            || before.ready_replicas != self.status.ready_replicas
            || before.updated_replicas != self.status.updated_replicas
            || before.verified_weight != self.status.verified_weight
            || before.abort != self.status.abort;
        let counting = self.deadline_applies && self.phase == RolloutPhase::Progressing && !self.input.spec.paused;
        if !counting {
            // Cleared rather than stamped, so a rollout at rest writes the same status every pass.
            self.status.last_progress_at = None;
            return false;
        }
        if moved || self.status.last_progress_at.is_none() {
            self.status.last_progress_at = Some(Time(self.now()));
            self.requeue_in(self.deadline());
            return false;
        }
        let since = self.status.last_progress_at.as_ref().map_or(self.now(), |t| t.0);
        let deadline = later(since, self.deadline());
        if self.now() < deadline {
            self.requeue_at(deadline);
            return false;
        }
        let already = before.conditions.iter().any(|c| c.type_ == conditions::PROGRESSING && c.reason == "ProgressDeadlineExceeded");
        let stuck = format!("no progress for {}s: {}", self.deadline().as_secs(), self.message);
        if !already {
            self.event(EventReason::ProgressDeadlineExceeded, stuck.clone());
        }
        if self.input.spec.progress_deadline_abort {
            self.abort(&stuck);
            self.requeue_in(Duration::ZERO);
        }
        self.phase = RolloutPhase::Degraded;
        self.message = stuck;
        true
    }

    fn deadline(&self) -> Duration {
        self.input.spec.progress_deadline_seconds.map_or_else(default_progress_deadline, |s| Duration::from_secs(s.max(1) as u64))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::Plan;
    use crate::engine::fixture::{Fixture, STABLE, UPDATE};

    fn canary() -> serde_json::Value {
        json!({"canary": {"steps": [{"setWeight": 20}]}})
    }

    fn waiting(fixture: &Fixture) -> Plan {
        let mut pass = fixture.pass();
        pass.wait("waiting for canary revision");
        pass.finish()
    }

    #[test]
    fn a_rollout_without_progress_past_its_deadline_is_degraded_and_said_once() {
        let mut fixture = Fixture::new(2, canary()).running(STABLE, 2, 2);
        fixture.spec.progress_deadline_seconds = Some(60);
        let first = waiting(&fixture);
        assert_eq!(first.requeue_after, Some(Duration::from_secs(60)), "woken when the deadline passes");
        fixture.status = first.status;
        fixture.now = later(fixture.now, Duration::from_secs(61));
        let stuck = waiting(&fixture);
        assert_eq!(stuck.status.phase, Some(RolloutPhase::Degraded));
        assert_eq!(stuck.status.message.as_deref(), Some("no progress for 60s: waiting for canary revision"));
        let reasons: Vec<_> = stuck.events.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, [EventReason::ProgressDeadlineExceeded]);
        fixture.status = stuck.status;
        fixture.now = later(fixture.now, Duration::from_secs(10));
        assert!(waiting(&fixture).events.is_empty());
    }

    #[test]
    fn the_progress_deadline_counts_only_while_the_rollout_waits_on_replicas_or_traffic() {
        let fixture = Fixture::new(2, canary()).running(STABLE, 2, 2);
        let mut pass = fixture.pass();
        pass.outcome(RolloutPhase::Paused, "paused until promoted");
        let plan = pass.finish();
        assert_eq!(plan.status.last_progress_at, None);
        assert_eq!(plan.requeue_after, None);
    }

    #[test]
    fn without_a_router_the_verified_weight_is_the_canarys_share_of_ready_replicas() {
        let fixture = Fixture::new(3, canary()).running(STABLE, 3, 3).running(UPDATE, 1, 1);
        let plan = waiting(&fixture);
        assert_eq!(plan.status.verified_weight, Some(25));
        assert_eq!((plan.status.replicas, plan.status.ready_replicas, plan.status.updated_replicas), (4, 4, 1));
    }
}
