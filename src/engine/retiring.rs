//! Retiring revisions: their replica counts, scale-downs scheduled after a promotion or an abort,
//! and the rule that a revision leaves only once no traffic can reach it.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::context::{Pass, later};
use super::target_groups;
use super::{Action, EventReason, ServiceRole};
use crate::api::{RolloutPhase, ScheduledScaleDown};

impl Pass<'_> {
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

    /// Forget scheduled scale-downs of revisions that are gone or back in a role.
    pub(super) fn sync_scale_downs(&mut self) {
        let observed = &self.input.observed;
        let (stable, update) = (self.stable.clone(), self.update.clone());
        let aborted = self.status.abort;
        self.status.scale_downs.retain(|s| {
            s.revision != stable
                && (s.revision != update || aborted)
                && observed.revisions.iter().any(|r| r.revision == s.revision && r.replicas > 0)
        });
    }

    /// The candidate becomes stable; the old stable leaves after `delay`.
    pub fn mark_stable(&mut self, delay: Duration) {
        let (old, new) = (self.stable.clone(), self.update.clone());
        self.point_service(ServiceRole::Stable, &new);
        self.actions.push(Action::MarkStable { revision: new.clone() });
        self.schedule_scale_down(&old, delay);
        self.remember_stable(&old);
        self.status.stable_revision = Some(new.clone());
        self.stable = new.clone();
        self.event(EventReason::Promoted, format!("revision {new} is now stable; revision {old} scales down in {}s", delay.as_secs()));
        self.outcome(RolloutPhase::Progressing, format!("promoted revision {new}"));
        self.requeue_in(Duration::ZERO);
    }

    /// Canary or blue/green candidate aborted: traffic home at once, the candidate scaled down
    /// after `delay` and only once no traffic can reach it. Behind a router, a `delay` of `None`
    /// keeps the candidate running (Argo's "never") until a retry or the next revision; without
    /// one its pods take traffic, so they always go.
    pub fn roll_back(&mut self, delay: Option<Duration>) {
        let (stable, update) = (self.stable.clone(), self.update.clone());
        self.scale(&stable, self.replicas);
        self.point_service(ServiceRole::Stable, &stable);
        let home_weight = self.abort_weight();
        let traffic_home =
            if self.has_router() { self.steer(home_weight, true) && home_weight == 0 } else { self.ready(&stable) >= self.replicas };
        // What the router waits for, said in the abort's message.
        let steering = std::mem::take(&mut self.message);
        let delay = if self.has_router() { delay } else { Some(Duration::ZERO) };
        let mut leaving = self.others();
        if let Some(delay) = delay {
            self.schedule_scale_down(&update, delay);
            leaving.push(update);
        }
        self.retire(&leaving, traffic_home);
        self.terminate_runs_except(&[]);
        let mut message = self.abort_message(traffic_home);
        if !traffic_home && steering.starts_with("waiting") {
            message = format!("{message} ({steering})");
        } else if home_weight > 0 {
            message = format!("{message} (gradualAbort: the canary weight is stepping down, now to {home_weight}%)");
        }
        if delay.is_none() {
            message.push_str(&format!("; revision {} keeps running (abortScaleDownDelaySeconds: -1)", self.update));
        }
        self.outcome(RolloutPhase::Degraded, message);
    }

    /// Where an abort sends the canary weight now: 0, or with `gradualAbort` the weight at the
    /// abort less a step for each interval begun since (never above what the router reads).
    /// Worked out from the abort's time alone, so a pass repeated after a restart asks the same.
    fn abort_weight(&mut self) -> i32 {
        let alb = self.input.spec.traffic.as_ref().and_then(|t| t.alb.as_ref());
        let Some(gradual) = alb.and_then(|a| a.gradual_abort.as_ref()) else { return 0 };
        let (Some(from), Some(at), Ok(interval)) =
            (self.status.aborted_from_weight, &self.status.aborted_at, gradual.interval.to_duration())
        else {
            return 0;
        };
        let interval = interval.max(Duration::from_secs(1));
        let elapsed = Duration::try_from(self.now().duration_since(at.0)).unwrap_or(Duration::ZERO);
        let steps = elapsed.as_secs() / interval.as_secs() + 1;
        let step = i64::from(gradual.weight_step.clamp(1, 100));
        let from = i64::from(from.clamp(0, 100));
        let scheduled = (from - step.saturating_mul(i64::try_from(steps).unwrap_or(i64::MAX))).max(0) as i32;
        let weight = scheduled.min(self.observed_weight().unwrap_or(0).clamp(0, 100));
        let until_next = i64::try_from(steps.saturating_mul(interval.as_secs())).unwrap_or(i64::MAX);
        if let Some(next) = at.0.checked_add(jiff::SignedDuration::from_secs(until_next)).ok().filter(|_| weight > 0) {
            self.requeue_at(next);
        }
        weight
    }

    fn abort_message(&self, traffic_home: bool) -> String {
        let reason = self.status.abort_reason.as_deref().unwrap_or("aborted");
        let traffic = if traffic_home { "traffic is back on" } else { "traffic is moving back to" };
        format!(
            "aborted: {reason}; {traffic} stable revision {}; the spec still asks for revision {}: \
             run `kubectl sluice retry {}` to try it again, or `kubectl sluice undo {}` to return the spec to the stable version",
            self.stable, self.update, self.input.name, self.input.name
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::fixture::{Fixture, STABLE, UPDATE};

    const OLD: &str = "old-rev";

    fn canary() -> serde_json::Value {
        json!({"canary": {"steps": [{"setWeight": 20}]}})
    }

    /// The replica counts the pass asks for, by revision.
    fn scales(pass: &Pass<'_>) -> Vec<(String, i32)> {
        let scale = |a: &Action| match a {
            Action::Scale { revision, replicas, .. } => Some((revision.clone(), *replicas)),
            _ => None,
        };
        pass.actions.iter().filter_map(scale).collect()
    }

    #[test]
    fn a_revision_is_scaled_only_when_its_count_differs_and_never_created_at_zero() {
        let fixture = Fixture::new(2, canary()).running(STABLE, 2, 2);
        let mut pass = fixture.pass();
        pass.scale(STABLE, 2);
        pass.scale(UPDATE, 0);
        assert!(pass.actions.is_empty());
        pass.scale(UPDATE, 1);
        assert_eq!(scales(&pass), [(UPDATE.to_string(), 1)]);
    }

    #[test]
    fn a_revision_leaves_only_once_no_role_service_sends_it_traffic() {
        let mut fixture = Fixture::with_router(2, canary(), 50).running(STABLE, 2, 2).running(UPDATE, 2, 2).running(OLD, 1, 1);
        fixture.observed.services.canary = Some(OLD.into());
        let mut pass = fixture.pass();
        pass.retire(&[OLD.into()], true);
        assert!(pass.actions.is_empty(), "the canary Service selects it and the canary takes half the traffic");
        fixture.observed.services.canary = Some(UPDATE.into());
        let mut pass = fixture.pass();
        pass.retire(&[OLD.into()], false);
        assert!(pass.actions.is_empty(), "the caller says traffic may still reach it");
        pass.retire(&[OLD.into()], true);
        assert_eq!(scales(&pass), [(OLD.to_string(), 0)]);
    }

    #[test]
    fn a_scheduled_scale_down_waits_for_its_time_and_is_scheduled_once() {
        let mut fixture = Fixture::new(2, canary()).running(STABLE, 2, 2).running(OLD, 2, 2);
        let mut pass = fixture.pass();
        pass.schedule_scale_down(OLD, Duration::from_secs(30));
        pass.schedule_scale_down(OLD, Duration::from_secs(90));
        pass.retire(&[OLD.into()], true);
        assert!(pass.actions.is_empty());
        fixture.status.scale_downs = pass.status.scale_downs.clone();
        fixture.now = later(fixture.now, Duration::from_secs(30));
        let mut pass = fixture.pass();
        pass.retire(&[OLD.into()], true);
        assert_eq!(scales(&pass), [(OLD.to_string(), 0)]);
    }

    #[test]
    fn an_abort_sends_traffic_home_at_once_and_scales_the_candidate_down_after_the_delay() {
        let fixture = Fixture::with_router(2, canary(), 20).running(STABLE, 2, 2).running(UPDATE, 1, 1);
        let mut pass = fixture.pass();
        pass.abort("analysis failed");
        pass.roll_back(Some(Duration::from_secs(30)));
        assert!(pass.actions.iter().any(|a| matches!(a, Action::SetWeight { canary_weight: 0, .. })));
        assert!(!scales(&pass).contains(&(UPDATE.to_string(), 0)), "the candidate keeps its pods until the delay is over");
        let scheduled: Vec<_> = pass.status.scale_downs.iter().map(|s| (s.revision.as_str(), s.at.0)).collect();
        assert_eq!(scheduled, [(UPDATE, later(fixture.now, Duration::from_secs(30)))]);
        assert_eq!(pass.phase, RolloutPhase::Degraded);
    }

    #[test]
    fn an_abort_that_never_scales_down_keeps_the_candidate_behind_a_router_only() {
        let routed = Fixture::with_router(2, canary(), 20).running(STABLE, 2, 2).running(UPDATE, 1, 1);
        let mut pass = routed.pass();
        pass.abort("analysis failed");
        pass.roll_back(None);
        assert!(pass.actions.iter().any(|a| matches!(a, Action::SetWeight { canary_weight: 0, .. })));
        assert!(!scales(&pass).iter().any(|(revision, _)| revision == UPDATE), "the candidate keeps its pods: {:?}", scales(&pass));
        assert!(pass.status.scale_downs.is_empty(), "nothing is scheduled: {:?}", pass.status.scale_downs);
        assert_eq!(pass.phase, RolloutPhase::Degraded);

        let unrouted = Fixture::new(2, canary()).running(STABLE, 2, 2).running(UPDATE, 1, 1);
        let mut pass = unrouted.pass();
        pass.abort("analysis failed");
        pass.roll_back(None);
        assert!(scales(&pass).contains(&(UPDATE.to_string(), 0)), "its pods take traffic by replica ratio: {:?}", scales(&pass));
    }

    #[test]
    fn a_gradual_abort_steps_the_weight_down_by_the_abort_time_alone() {
        let gradual = |observed: i32, seconds_since_abort: i64| {
            let mut fixture = Fixture::with_router(4, canary(), observed).running(STABLE, 4, 4).running(UPDATE, 3, 3);
            let alb = fixture.spec.traffic.as_mut().and_then(|t| t.alb.as_mut()).expect("an ALB");
            alb.gradual_abort = Some(crate::api::GradualAbort { weight_step: 20, interval: "30s".into() });
            fixture.status.abort = true;
            fixture.status.aborted_from_weight = Some(60);
            fixture.status.aborted_at = Some(Time(fixture.now - jiff::SignedDuration::from_secs(seconds_since_abort)));
            fixture
        };
        let weights = |fixture: &Fixture| {
            let mut pass = fixture.pass();
            pass.roll_back(Some(Duration::from_secs(30)));
            let set: Vec<i32> = pass
                .actions
                .iter()
                .filter_map(|a| match a {
                    Action::SetWeight { canary_weight, .. } => Some(*canary_weight),
                    _ => None,
                })
                .collect();
            (set, pass.phase, pass.message.clone())
        };
        let (set, phase, message) = weights(&gradual(60, 0));
        assert_eq!(set, [40], "one step at once");
        assert_eq!(phase, RolloutPhase::Degraded);
        assert!(message.contains("stepping down, now to 40%"), "{message}");
        assert!(weights(&gradual(40, 10)).0.is_empty(), "a pass repeated within the interval asks nothing more");
        assert_eq!(weights(&gradual(40, 30)).0, [20], "the next step after one interval");
        assert_eq!(weights(&gradual(20, 95)).0, [0], "never below 0");
        assert_eq!(weights(&gradual(10, 30)).0, Vec::<i32>::new(), "never above what the router reads");
        let at_once = Fixture::with_router(4, canary(), 60).running(STABLE, 4, 4).running(UPDATE, 3, 3);
        let mut pass = at_once.pass();
        pass.abort("failed");
        pass.roll_back(Some(Duration::from_secs(30)));
        assert!(pass.actions.iter().any(|a| matches!(a, Action::SetWeight { canary_weight: 0, .. })), "the default: all home now");
    }

    #[test]
    fn a_promoted_candidate_becomes_stable_and_the_old_stable_leaves_after_the_delay() {
        let fixture = Fixture::new(2, canary()).running(STABLE, 2, 2).running(UPDATE, 2, 2);
        let mut pass = fixture.pass();
        pass.mark_stable(Duration::from_secs(30));
        assert!(pass.actions.contains(&Action::MarkStable { revision: UPDATE.into() }));
        assert_eq!((pass.stable.as_str(), pass.status.stable_revision.as_deref()), (UPDATE, Some(UPDATE)));
        assert_eq!(pass.status.scale_downs.len(), 1);
        assert_eq!(pass.status.scale_downs[0].revision, STABLE);
    }
}
