//! One pass of the engine: the inputs, the status being built, and the helpers every strategy
//! uses to turn a goal into safe, idempotent actions.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions;
use super::target_groups::{self, TargetGroups};
use super::{Action, AnalysisPurpose, AnalysisRunObservation, Event, EventReason, Input, InvalidSpec, Plan, ServiceRole};
use crate::api::{
    AnalysisPhase, CommandRequest, PauseCondition, PauseReason, RolloutAnalysis, RolloutPhase, RolloutStatus, ScheduledScaleDown,
};
use crate::engine::revision;

/// Seconds without progress before a rollout is reported stuck, when the spec does not say.
pub fn default_progress_deadline() -> Duration {
    Duration::from_secs(600)
}

/// How often to look at a traffic router while waiting on it (it sends no watch events).
pub(super) const ROUTER_POLL: Duration = Duration::from_secs(5);
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
    deadline_exceeded: bool,
}

/// Sets the InvalidSpec condition; the event only when the reason is new, so a rollout left
/// invalid does not repeat itself every pass.
pub(super) fn flag_invalid(before: &RolloutStatus, status: &mut RolloutStatus, message: &str, now: Timestamp) -> Option<Event> {
    let known = before.conditions.iter().any(|c| c.type_ == conditions::INVALID_SPEC && c.message == message);
    conditions::set(&mut status.conditions, conditions::INVALID_SPEC, true, "InvalidSpec", message, now);
    (!known).then(|| Event { reason: EventReason::InvalidSpec, message: message.to_string() })
}

impl<'a> Pass<'a> {
    pub fn new(input: Input<'a>) -> Self {
        Self {
            input,
            status: input.status.clone(),
            actions: Vec::new(),
            events: Vec::new(),
            requeue: None,
            replicas: bounded(input.spec.workload.replicas()),
            update: String::new(),
            stable: String::new(),
            phase: RolloutPhase::Progressing,
            message: String::new(),
            deadline_applies: false,
            promote_requested: None,
            abort_requested: false,
            deadline_exceeded: false,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.input.now
    }

    pub fn event(&mut self, reason: EventReason, message: impl Into<String>) {
        self.events.push(Event { reason, message: message.into() });
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

    fn take_commands(&mut self) {
        let requested = self.input.commands.clone();
        let mut handled = self.status.handled_commands.clone().unwrap_or_default();
        let update = self.update.clone();
        let current = |r: &CommandRequest| r.revision.as_ref().is_none_or(|rev| *rev == update);
        if let Some(retry) = requested.retry.filter(|r| handled.retry.as_ref() != Some(&r.id)) {
            handled.retry = Some(retry.id.clone());
            if self.status.abort && current(&retry) {
                self.restart_attempt();
                self.event(EventReason::Retried, format!("retrying revision {} from the first step", self.update));
            }
        }
        if let Some(abort) = requested.abort.filter(|a| handled.abort.as_ref() != Some(&a.id)) {
            handled.abort = Some(abort.id.clone());
            self.abort_requested = current(&abort);
        }
        if let Some(promote) = requested.promote.filter(|p| handled.promote.as_ref() != Some(&p.id)) {
            handled.promote = Some(promote.id.clone());
            self.promote_requested = current(&promote).then_some(promote.full);
        }
        self.status.handled_commands = Some(handled);
    }

    fn restart_attempt(&mut self) {
        self.status.abort = false;
        self.status.aborted_at = None;
        self.status.abort_reason = None;
        self.status.attempt = self.status.attempt.saturating_add(1);
        self.reset_progress();
    }

    /// Forget the progress of the previous candidate: a new one starts from the first step.
    pub fn reset_progress(&mut self) {
        self.status.current_step_index = self.input.spec.strategy.canary.as_ref().map(|_| 0);
        self.status.pause_conditions.clear();
        self.status.promote_full = false;
        self.status.promoted = false;
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
        self.reset_progress();
        self.event(EventReason::NewRevision, message);
    }

    /// A router with nothing to route to: an update at 0 replicas would hand weight to a revision
    /// with no pods. It waits, weights untouched, until replicas are above 0.
    pub fn hold_at_zero_replicas(&mut self) {
        let (stable, update) = (self.stable.clone(), self.update.clone());
        self.scale(&stable, 0);
        self.scale(&update, 0);
        let name = self.input.name;
        let message = format!(
            "replicas is 0 and a traffic router splits traffic: no revision has pods to take weight, so revision {update} waits; \
             scale the rollout above 0 (`kubectl scale rollout {name} --replicas N`) to go on"
        );
        let now = self.now();
        conditions::set(&mut self.status.conditions, conditions::SCALED_TO_ZERO, true, "ZeroReplicasWithRouter", &message, now);
        self.outcome(RolloutPhase::Paused, message);
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

    /// Revisions the platform still runs that are neither stable nor the update.
    pub fn others(&self) -> Vec<String> {
        self.input
            .observed
            .revisions
            .iter()
            .filter(|r| r.revision != self.stable && r.revision != self.update && r.replicas > 0)
            .map(|r| r.revision.clone())
            .collect()
    }

    pub fn scale(&mut self, revision: &str, replicas: i32) {
        let current = self.observed(revision).map(|r| r.replicas);
        if current != Some(replicas) && !(current.is_none() && replicas == 0) {
            let registrations = &self.input.observed.registrations;
            let target_group = match registrations.contains_key(revision) {
                true => None,
                false => target_groups::for_new_revision(self.input.spec, revision, &self.stable, registrations),
            };
            self.actions.push(Action::Scale { revision: revision.to_string(), replicas, target_group });
        }
    }

    /// The target groups of the roles as they stand before this pass acts.
    pub fn target_groups(&self) -> Option<TargetGroups> {
        target_groups::roles(self.input.spec, self.input.status.stable_revision.as_deref(), &self.input.observed.registrations)
    }

    pub fn point_service(&mut self, role: ServiceRole, revision: &str) {
        self.actions.push(Action::PointService { role, revision: revision.to_string() });
    }

    /// The test listener and the header route reach the candidate while it runs and serves,
    /// and the stable revision otherwise. First in the plan: traffic leaves a revision before
    /// its capacity does.
    pub fn route_previews(&mut self) {
        let Some(alb) = self.input.spec.traffic.as_ref().and_then(|t| t.alb.as_ref()) else { return };
        let Some(groups) = self.target_groups() else { return };
        let emptied = self.actions.iter().any(|a| matches!(a, Action::Scale { revision, replicas: 0, .. } if *revision == self.update));
        // The canary target group follows the canary Service, which may still select a revision
        // being replaced.
        let selected = self.input.observed.services.canary.as_ref().is_none_or(|c| *c == self.update);
        let live = !self.at_rest() && !self.status.abort && !emptied && selected && self.ready(&self.update.clone()) > 0;
        let role = if live { ServiceRole::Canary } else { ServiceRole::Stable };
        let mut routes = Vec::new();
        if alb.test_listener_arn.is_some() || alb.test_rule_arn.is_some() {
            routes.push(Action::RouteTestTraffic { to: role, target_group: groups.of(role).to_string() });
        }
        if alb.header_route.is_some() {
            let to = live.then_some(ServiceRole::Canary);
            routes.push(Action::RouteHeader { to, target_group: to.map(|role| groups.of(role).to_string()) });
        }
        self.actions.splice(0..0, routes);
    }

    pub fn has_router(&self) -> bool {
        self.input.observed.traffic.is_some() || self.input.spec.traffic.is_some()
    }

    pub fn observed_weight(&self) -> Option<i32> {
        self.input.observed.traffic.as_ref().and_then(|t| t.canary_weight)
    }

    pub fn min_healthy_targets(&self) -> i32 {
        self.input.spec.traffic.as_ref().and_then(|t| t.alb.as_ref()).and_then(|a| a.min_healthy_targets).unwrap_or(1)
    }

    fn healthy_targets(&self, canary: bool) -> i32 {
        self.input.observed.traffic.as_ref().map_or(0, |t| if canary { t.canary_healthy_targets } else { t.stable_healthy_targets })
    }

    /// Moves the canary weight toward `weight`. Weight only moves onto a target group that has
    /// enough healthy targets, unless `urgent` (an abort sends traffic home at once).
    /// Returns true once the router reports `weight` back.
    pub fn steer(&mut self, weight: i32, urgent: bool) -> bool {
        self.status.canary_weight = weight;
        let observed = self.observed_weight();
        if observed == Some(weight) {
            return true;
        }
        let toward_canary = observed.is_none_or(|o| weight > o);
        let (role, revision) = if toward_canary { ("canary", &self.update) } else { ("stable", &self.stable) };
        let services = &self.input.observed.services;
        let selected = if toward_canary { &services.canary } else { &services.stable };
        if !urgent && selected.as_ref().is_some_and(|s| s != revision) {
            let message = format!("waiting for the {role} Service to select revision {revision} before weight moves to it");
            self.wait(message);
            self.requeue_in(ROUTER_POLL);
            return false;
        }
        // Never weight onto a revision with no ready replica (it would answer with errors).
        let receiver = if toward_canary { (weight > 0).then_some(revision) } else { (weight < 100).then_some(revision) };
        if let Some(receiver) = receiver.filter(|r| !urgent && self.ready(r) == 0) {
            self.wait(format!("waiting for revision {receiver} to have a ready replica before weight moves to it"));
            self.requeue_in(ROUTER_POLL);
            return false;
        }
        let needed = self.min_healthy_targets();
        let healthy = self.healthy_targets(toward_canary);
        if !urgent && healthy < needed && (weight > 0 || !toward_canary) {
            let group = if toward_canary { "canary" } else { "stable" };
            self.wait(format!(
                "waiting for the {group} target group: {healthy} healthy targets of the {needed} needed before weight moves to it"
            ));
            self.requeue_in(ROUTER_POLL);
            return false;
        }
        let Some(target_groups) = self.target_groups() else {
            // A router without an ALB has no weight to set; validation refuses such a spec.
            return false;
        };
        self.actions.push(Action::SetWeight { canary_weight: weight, target_groups });
        self.wait(format!("setting the canary weight to {weight}%"));
        self.requeue_in(ROUTER_POLL);
        false
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

    pub fn run_name(&self, purpose: AnalysisPurpose) -> String {
        format!("{}-{}-{}-{}", self.input.name, self.update, self.status.attempt, purpose.label())
    }

    pub fn run(&self, name: &str) -> Option<&AnalysisRunObservation> {
        self.input.observed.analysis_runs.iter().find(|r| r.name == name)
    }

    /// The phase of the analysis run for `purpose`, creating the run when it does not exist yet.
    pub fn analysis(&mut self, purpose: AnalysisPurpose, analysis: &RolloutAnalysis) -> (String, AnalysisPhase, Option<String>) {
        let name = self.run_name(purpose);
        match self.run(&name) {
            Some(run) => (name, run.phase, run.message.clone()),
            None => {
                self.actions.push(Action::CreateAnalysisRun {
                    name: name.clone(),
                    revision: self.update.clone(),
                    purpose,
                    analysis: analysis.clone(),
                });
                self.event(EventReason::AnalysisStarted, format!("analysis run {name} started"));
                (name, AnalysisPhase::Pending, None)
            }
        }
    }

    /// Stops every unfinished analysis run except those named.
    pub fn terminate_runs_except(&mut self, keep: &[String]) {
        let stale: Vec<String> = self
            .input
            .observed
            .analysis_runs
            .iter()
            .filter(|r| !r.phase.is_completed() && !keep.contains(&r.name))
            .map(|r| r.name.clone())
            .collect();
        for name in stale {
            self.actions.push(Action::TerminateAnalysisRun { name });
        }
    }

    pub fn schedule_scale_down(&mut self, revision: &str, delay: Duration) {
        if self.status.scale_downs.iter().any(|s| s.revision == revision) {
            return;
        }
        let at = later(self.now(), delay);
        self.status.scale_downs.push(ScheduledScaleDown { revision: revision.to_string(), at: Time(at) });
    }

    /// Scales down every revision in `revisions` whose scheduled time has come, once `traffic_off`
    /// says no traffic can reach it. Unscheduled ones go at once.
    pub fn retire(&mut self, revisions: &[String], traffic_off: bool) {
        for revision in revisions {
            let at = self.status.scale_downs.iter().find(|s| &s.revision == revision).map(|s| s.at.0);
            match at {
                Some(at) if at > self.now() => self.requeue_at(at),
                _ if traffic_off && !self.selected_for_traffic(revision) => self.scale(revision, 0),
                _ => {}
            }
        }
    }

    /// A role Service still selects the revision while that role takes traffic (a Service
    /// change not yet applied, or one a crash left behind).
    fn selected_for_traffic(&self, revision: &str) -> bool {
        let services = &self.input.observed.services;
        let weight = self.observed_weight();
        let stable_serves = services.stable.as_deref() == Some(revision) && (!self.has_router() || weight != Some(100));
        let canary_serves = services.canary.as_deref() == Some(revision) && self.has_router() && weight != Some(0);
        stable_serves || canary_serves
    }

    /// Starts the abort: traffic goes back to stable now; the candidate is scaled down later.
    pub fn abort(&mut self, reason: &str) {
        if self.status.abort {
            return;
        }
        self.status.abort = true;
        self.status.aborted_at = Some(Time(self.now()));
        self.status.pause_conditions.clear();
        self.status.promote_full = false;
        self.status.promoted = false;
        self.event(EventReason::Aborted, format!("aborted revision {}: {reason}", self.update));
        self.status.abort_reason = Some(reason.to_string());
    }

    pub fn abort_message(&self, traffic_home: bool) -> String {
        let reason = self.status.abort_reason.as_deref().unwrap_or("aborted");
        let traffic = if traffic_home { "traffic is back on" } else { "traffic is moving back to" };
        format!(
            "aborted: {reason}; {traffic} stable revision {}; the spec still asks for revision {}: \
             run `kubectl sluice retry {}` to try it again, or `kubectl sluice undo {}` to return the spec to the stable version",
            self.stable, self.update, self.input.name, self.input.name
        )
    }

    pub fn finish(mut self) -> Plan {
        if self.phase == RolloutPhase::Progressing && self.message.is_empty() {
            // Nothing named what the rollout waits for: still, it must not wait unseen.
            self.wait(format!("progressing to revision {}", self.update));
        }
        self.sync_scale_downs();
        self.count_replicas();
        if self.has_router()
            && self.status.verified_weight != self.input.status.verified_weight
            && let Some(weight) = self.status.verified_weight
        {
            self.event(EventReason::WeightSet, format!("canary weight is {weight}%"));
        }
        self.check_progress_deadline();
        let paused = !self.status.pause_conditions.is_empty() || self.input.spec.paused;
        self.status.phase = Some(self.phase);
        self.status.message = Some(self.message.clone());
        conditions::summarize(&mut self.status, self.phase, paused, self.deadline_exceeded, self.input.now);
        Plan { actions: self.actions, status: self.status, events: self.events, requeue_after: self.requeue, delivered: Vec::new() }
    }

    /// Forget scheduled scale-downs of revisions that are gone or back in a role.
    fn sync_scale_downs(&mut self) {
        let observed = &self.input.observed;
        let (stable, update) = (self.stable.clone(), self.update.clone());
        let aborted = self.status.abort;
        self.status.scale_downs.retain(|s| {
            s.revision != stable
                && (s.revision != update || aborted)
                && observed.revisions.iter().any(|r| r.revision == s.revision && r.replicas > 0)
        });
    }

    fn count_replicas(&mut self) {
        let revisions = &self.input.observed.revisions;
        self.status.desired_replicas = self.replicas;
        let total =
            |count: fn(&super::RevisionObservation) -> i32| revisions.iter().map(|r| bounded(count(r))).fold(0, i32::saturating_add);
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

    fn check_progress_deadline(&mut self) {
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
            return;
        }
        if moved || self.status.last_progress_at.is_none() {
            self.status.last_progress_at = Some(Time(self.now()));
            self.requeue_in(self.deadline());
            return;
        }
        let since = self.status.last_progress_at.as_ref().map_or(self.now(), |t| t.0);
        let deadline = later(since, self.deadline());
        if self.now() < deadline {
            self.requeue_at(deadline);
            return;
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
        self.deadline_exceeded = true;
    }

    fn deadline(&self) -> Duration {
        self.input.spec.progress_deadline_seconds.map_or_else(default_progress_deadline, |s| Duration::from_secs(s.max(1) as u64))
    }
}

impl Pass<'_> {
    /// The candidate becomes stable; the old stable leaves after `delay`.
    pub fn mark_stable(&mut self, delay: Duration) {
        let (old, new) = (self.stable.clone(), self.update.clone());
        self.point_service(ServiceRole::Stable, &new);
        self.actions.push(Action::MarkStable { revision: new.clone() });
        self.schedule_scale_down(&old, delay);
        self.status.stable_revision = Some(new.clone());
        self.stable = new.clone();
        self.event(EventReason::Promoted, format!("revision {new} is now stable; revision {old} scales down in {}s", delay.as_secs()));
        self.outcome(RolloutPhase::Progressing, format!("promoted revision {new}"));
        self.requeue_in(Duration::ZERO);
    }

    /// Canary or blue/green candidate aborted: traffic home at once, the candidate scaled down
    /// after `delay` and only once no traffic can reach it.
    pub fn roll_back(&mut self, delay: Duration) {
        let (stable, update) = (self.stable.clone(), self.update.clone());
        self.scale(&stable, self.replicas);
        self.point_service(ServiceRole::Stable, &stable);
        let traffic_home = if self.has_router() { self.steer(0, true) } else { self.ready(&stable) >= self.replicas };
        let delay = if self.has_router() { delay } else { Duration::ZERO };
        self.schedule_scale_down(&update, delay);
        let mut leaving = self.others();
        leaving.push(update);
        self.retire(&leaving, traffic_home);
        self.terminate_runs_except(&[]);
        let message = self.abort_message(traffic_home);
        self.outcome(RolloutPhase::Degraded, message);
    }
}

/// What an analysis gate lets through.
pub(super) enum Gate {
    Open,
    Shut,
    Abort(String),
}

impl Pass<'_> {
    /// Background analysis: a failure aborts; Inconclusive holds the rollout until a person
    /// promotes, which starts a fresh run (a new attempt) instead of ignoring the data.
    pub fn background_gate(&mut self, analysis: &RolloutAnalysis, keep_runs: &mut Vec<String>) -> Gate {
        let (name, phase, message) = self.analysis(AnalysisPurpose::Background, analysis);
        keep_runs.push(name.clone());
        let verdict = match &message {
            Some(message) => format!("analysis run {name} {phase}: {message}"),
            None => format!("analysis run {name} {phase}"),
        };
        match phase {
            AnalysisPhase::Failed | AnalysisPhase::Error => Gate::Abort(verdict),
            AnalysisPhase::Inconclusive if self.promote_requested.is_some() => {
                self.promote_requested = None;
                self.status.attempt += 1;
                self.status.pause_conditions.retain(|p| p.reason != PauseReason::InconclusiveAnalysis);
                self.event(EventReason::Resumed, format!("{verdict}; promoted by a person, measuring again"));
                let (fresh, _, _) = self.analysis(AnalysisPurpose::Background, analysis);
                keep_runs.push(fresh);
                Gate::Shut
            }
            AnalysisPhase::Inconclusive => {
                if self.pause_started(PauseReason::InconclusiveAnalysis) == self.now() {
                    self.event(EventReason::AnalysisInconclusive, verdict.clone());
                }
                let name = self.input.name;
                self.outcome(
                    RolloutPhase::Paused,
                    format!(
                        "{verdict}; run `kubectl sluice promote {name}` to measure again or `kubectl sluice abort {name}` to roll back"
                    ),
                );
                Gate::Shut
            }
            _ => Gate::Open,
        }
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
