//! One pass of the engine: the inputs, the status being built, people's commands, and the plan
//! it ends in. What a pass does is split by concern: `steering`, `gates`, `retiring`, `finishing`.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions;
use super::{Action, Event, EventReason, Input, InvalidSpec, Plan, ValidSpec};
use crate::api::{PauseCondition, PauseReason, RolloutPhase, RolloutStatus, StrategyKind, WorkloadKind};
use crate::engine::revision;

/// Seconds without progress before a rollout is reported stuck, when the spec does not say.
pub fn default_progress_deadline() -> Duration {
    Duration::from_secs(600)
}

/// The longest wait a plan asks for: a pause of months is looked at again hourly, which costs
/// nothing and keeps every timer the caller sets well inside what timers can hold.
pub(super) const MAX_REQUEUE: Duration = Duration::from_secs(3600);
/// The most replicas the engine reasons about, as the CRD bounds them: every count it derives
/// (surges, shares, sums) then stays far from `i32` overflow.
pub const MAX_REPLICAS: i32 = 100_000;

/// `at` plus `by`, saturating at the end of time instead of overflowing.
pub(super) fn later(at: Timestamp, by: Duration) -> Timestamp {
    SignedDuration::try_from(by).ok().and_then(|by| at.checked_add(by).ok()).unwrap_or(Timestamp::MAX)
}

/// A replica count as the engine uses it: within `0..=MAX_REPLICAS` whatever was written or observed.
pub(super) fn bounded(replicas: i32) -> i32 {
    replicas.clamp(0, MAX_REPLICAS)
}

pub(super) struct Pass<'a> {
    pub input: Input<'a>,
    /// The spec's workload and strategy as validation parsed them; `None` when the spec is invalid.
    pub workload: Option<WorkloadKind<'a>>,
    pub strategy: Option<StrategyKind<'a>>,
    pub status: RolloutStatus,
    pub actions: Vec<Action>,
    pub events: Vec<Event>,
    requeue: Option<Duration>,
    /// Replicas at full capacity.
    pub replicas: i32,
    pub update: String,
    pub stable: String,
    pub phase: RolloutPhase,
    pub message: String,
    /// The rollout waits on replicas or traffic, so the progress deadline counts.
    pub deadline_applies: bool,
    pub promote_requested: Option<bool>,
    pub abort_requested: bool,
    /// The id of a promote request for the candidate that no strategy has acted on yet.
    pub promote_unanswered: Option<String>,
}

/// Sets the InvalidSpec condition; the event only when the reason is new, so a rollout left
/// invalid does not repeat itself every pass.
pub(super) fn flag_invalid(before: &RolloutStatus, status: &mut RolloutStatus, message: &str, now: Timestamp) -> Option<Event> {
    let known = before.conditions.iter().any(|c| c.type_ == conditions::INVALID_SPEC && c.message == message);
    conditions::set(&mut status.conditions, conditions::INVALID_SPEC, true, "InvalidSpec", message, now);
    (!known).then(|| Event { reason: EventReason::InvalidSpec, message: message.to_string() })
}

impl<'a> Pass<'a> {
    pub fn new(input: Input<'a>, valid: Option<&ValidSpec<'a>>) -> Self {
        Self {
            input,
            workload: valid.map(|v| v.workload),
            strategy: valid.map(|v| v.strategy),
            status: input.status.clone(),
            actions: Vec::new(),
            events: Vec::new(),
            requeue: None,
            replicas: bounded(super::capacity::full_size(&input)),
            update: String::new(),
            stable: String::new(),
            phase: RolloutPhase::Progressing,
            message: String::new(),
            deadline_applies: false,
            promote_requested: None,
            abort_requested: false,
            promote_unanswered: None,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.input.now
    }

    /// Every event names the revision it is about, so the same decision for two revisions never
    /// reads, or folds in `kubectl get events`, as one.
    pub fn event(&mut self, reason: EventReason, message: impl Into<String>) {
        let message = message.into();
        let message = match self.update.is_empty() || message.contains(&self.update) {
            true => message,
            false => format!("{message} (revision {})", self.update),
        };
        self.events.push(Event { reason, message });
    }

    pub fn requeue_in(&mut self, after: Duration) {
        let after = after.min(MAX_REQUEUE);
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    pub fn requeue_at(&mut self, at: Timestamp) {
        let after = at.duration_since(self.now());
        self.requeue_in(Duration::try_from(after).unwrap_or(Duration::ZERO));
    }

    pub fn outcome(&mut self, phase: RolloutPhase, message: impl Into<String>) {
        self.phase = phase;
        self.message = message.into();
    }

    /// Waiting on replicas or traffic: progress is expected, so the deadline counts.
    pub fn wait(&mut self, message: impl Into<String>) {
        self.outcome(RolloutPhase::Progressing, message);
        self.deadline_applies = true;
    }

    pub fn invalid_spec(&mut self, invalid: &InvalidSpec) {
        let message = format!("invalid spec: {invalid}");
        let now = self.now();
        self.events.extend(flag_invalid(self.input.status, &mut self.status, &message, now));
        self.status.observed_generation = self.input.generation;
        self.outcome(RolloutPhase::Degraded, message);
    }

    /// Settles the revision roles, acts on people's requests and notices a new revision.
    pub fn begin(&mut self) {
        self.status.observed_generation = self.input.generation;
        conditions::remove(&mut self.status.conditions, conditions::INVALID_SPEC);
        conditions::remove(&mut self.status.conditions, conditions::RECONCILE_ERROR);
        conditions::remove(&mut self.status.conditions, conditions::SCALED_TO_ZERO);
        self.update = revision::of(&self.input.spec.workload);
        self.stable = match &self.input.status.stable_revision {
            Some(stable) => stable.clone(),
            None => {
                self.event(EventReason::RolloutStarted, format!("first revision {} goes straight to stable", self.update));
                self.update.clone()
            }
        };
        self.status.stable_revision = Some(self.stable.clone());
        self.take_commands();
        self.notice_new_revision();
        self.status.update_revision = Some(self.update.clone());
    }

    pub(super) fn restart_attempt(&mut self) {
        self.status.abort = false;
        self.status.aborted_at = None;
        self.status.aborted_from_weight = None;
        self.status.abort_reason = None;
        self.status.attempt = self.status.attempt.saturating_add(1);
        self.reset_progress();
    }

    /// Forget the progress of the previous candidate: a new one starts from the first step.
    pub fn reset_progress(&mut self) {
        self.status.current_step_index = matches!(self.strategy, Some(StrategyKind::Canary(_))).then_some(0);
        self.status.pause_conditions.clear();
        self.status.promote_full = false;
        self.status.fast_tracked = false;
        self.status.promoted = false;
        self.status.preview_approved = false;
        self.status.preview_ready_at = None;
        self.status.switched = false;
    }

    fn notice_new_revision(&mut self) {
        let previous = self.input.status.update_revision.as_deref();
        if previous == Some(self.update.as_str()) || self.update == self.stable {
            return;
        }
        let replaced = previous.filter(|p| *p != self.stable);
        self.status.abort_reason = None;
        let message = match replaced {
            Some(old) => format!("revision {} replaces {old} mid-rollout; starting again from the first step", self.update),
            None => format!("rolling out revision {} over stable {}", self.update, self.stable),
        };
        self.status.abort = false;
        self.status.aborted_at = None;
        self.status.aborted_from_weight = None;
        self.reset_progress();
        let message = match self.fast_track_rollback() {
            Some(ago) => format!(
                "{message}: it was stable {ago} promotion{} ago, inside the rollback window, so it is fast-tracked to 100% with no \
                 steps or analysis",
                if ago == 1 { "" } else { "s" }
            ),
            None => message,
        };
        self.event(EventReason::NewRevision, message);
    }

    pub fn at_rest(&self) -> bool {
        self.update == self.stable
    }

    pub fn observed(&self, revision: &str) -> Option<&super::RevisionObservation> {
        self.input.observed.revisions.iter().find(|r| r.revision == revision)
    }

    pub fn ready(&self, revision: &str) -> i32 {
        // A revision scaled down still reports the pods it is deleting as ready until its status
        // catches up: never count more ready than it is asked to run.
        self.observed(revision).map_or(0, |r| bounded(r.ready).min(bounded(r.replicas)))
    }

    pub fn current(&self, revision: &str) -> i32 {
        self.observed(revision).map_or(0, |r| bounded(r.replicas))
    }

    pub fn pause_started(&mut self, reason: PauseReason) -> Timestamp {
        if let Some(existing) = self.status.pause_conditions.iter().find(|p| p.reason == reason) {
            return existing.start_time.0;
        }
        self.status.pause_conditions.push(PauseCondition { reason, start_time: Time(self.now()) });
        self.event(EventReason::Paused, format!("paused: {reason:?}"));
        self.now()
    }

    pub fn unpause(&mut self, reason: PauseReason) {
        self.status.pause_conditions.retain(|p| p.reason != reason);
    }

    /// Starts the abort: traffic goes back to stable now; the candidate is scaled down later.
    pub fn abort(&mut self, reason: &str) {
        if self.status.abort {
            return;
        }
        self.status.abort = true;
        self.status.aborted_at = Some(Time(self.now()));
        self.status.aborted_from_weight = self.observed_weight();
        self.status.pause_conditions.clear();
        self.status.promote_full = false;
        self.status.promoted = false;
        self.event(EventReason::Aborted, format!("aborted revision {}: {reason}", self.update));
        self.status.abort_reason = Some(reason.to_string());
    }

    pub fn finish(mut self) -> Plan {
        if self.phase == RolloutPhase::Progressing && self.message.is_empty() {
            // Nothing named what the rollout waits for: still, it must not wait unseen.
            self.wait(format!("progressing to revision {}", self.update));
        }
        if self.status.fast_tracked {
            self.message = format!("fast-tracked rollback to revision {} (rollbackWindow): {}", self.update, self.message);
        }
        self.answer_unused_promote();
        self.sync_scale_downs();
        self.summarize_status();
        Plan { actions: self.actions, status: self.status, events: self.events, requeue_after: self.requeue, delivered: Vec::new() }
    }
}

/// Resolves `maxSurge` / `maxUnavailable` (a count or a percentage of `replicas`).
pub(super) fn resolve_count(
    value: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    replicas: i32,
    default_percent: i32,
    round_up: bool,
) -> i32 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let percent = match value {
        Some(IntOrString::Int(count)) => return bounded(*count),
        Some(IntOrString::String(text)) => text.trim_end_matches('%').parse::<i64>().unwrap_or(i64::from(default_percent)),
        None => i64::from(default_percent),
    };
    let scaled = i64::from(bounded(replicas)) * percent.clamp(0, 10_000);
    let count = if round_up { (scaled + 99) / 100 } else { scaled / 100 };
    count.min(i64::from(MAX_REPLICAS)) as i32
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::fixture::{Fixture, STABLE};

    fn canary() -> serde_json::Value {
        json!({"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}})
    }

    #[test]
    fn a_revision_that_replaces_a_candidate_mid_rollout_starts_again_from_the_first_step() {
        let mut fixture = Fixture::new(2, canary());
        fixture.status.update_revision = Some("older-rev".into());
        fixture.status.current_step_index = Some(1);
        let mut pass = fixture.unset_pass();
        pass.begin();
        assert_eq!(pass.stable, STABLE);
        assert_eq!(pass.status.current_step_index, Some(0));
        let update = revision::of(&fixture.spec.workload);
        let said: Vec<_> = pass.events.iter().map(|e| (e.reason, e.message.as_str())).collect();
        let message = format!("revision {update} replaces older-rev mid-rollout; starting again from the first step");
        assert_eq!(said, [(EventReason::NewRevision, message.as_str())]);
    }

    #[test]
    fn a_pass_asks_to_be_woken_at_the_soonest_time_and_never_later_than_an_hour() {
        let fixture = Fixture::new(2, canary());
        let mut pass = fixture.pass();
        pass.outcome(RolloutPhase::Paused, "paused");
        pass.requeue_in(Duration::from_secs(90));
        pass.requeue_in(Duration::from_secs(30));
        pass.requeue_in(Duration::from_secs(60));
        assert_eq!(pass.finish().requeue_after, Some(Duration::from_secs(30)));
        let mut pass = fixture.pass();
        pass.outcome(RolloutPhase::Paused, "paused");
        pass.requeue_in(Duration::from_secs(30 * 24 * 3600));
        assert_eq!(pass.finish().requeue_after, Some(MAX_REQUEUE));
    }
}
