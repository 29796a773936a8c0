//! Finishing a pass: the status fields every pass reports whatever the strategy decided (replica
//! counts, the weight in force, the progress deadline, phase and conditions).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::context::{Pass, bounded, default_progress_deadline, later};
use super::{EventReason, RevisionObservation, conditions};
use crate::api::RolloutPhase;

impl Pass<'_> {
    pub(super) fn summarize_status(&mut self) {
        self.count_replicas();
        if self.has_router()
            && self.status.verified_weight != self.input.status.verified_weight
            && let Some(weight) = self.status.verified_weight
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
        } else if self.input.spec.strategy.blue_green.is_some() {
            let active = self.input.observed.services.stable.as_deref();
            Some(if !self.at_rest() && active == Some(self.update.as_str()) { 100 } else { 0 })
        } else {
            let canary = if self.at_rest() { 0 } else { i64::from(self.ready(&self.update.clone())) };
            let total = i64::from(self.status.ready_replicas.max(1));
            Some(((canary * 100 + total / 2) / total).clamp(0, 100) as i32)
        };
        if let Some(kubernetes) = &self.input.spec.workload.kubernetes {
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
