//! `spec.restartAt` (`kubectl sluice restart`): the pods of the stable revision that started
//! before that time are replaced, a few at a time, once the rollout is at rest. With
//! `maxUnavailable` 0 (the default of a canary, and a blue/green's) the stable runs one extra
//! pod while its pods are replaced, so it never has fewer available than its replicas; with
//! `maxUnavailable` N, N pods are replaced at a time and no extra pod runs.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::context::{Pass, bounded, resolve_count};
use super::{Action, EventReason};
use crate::api::{RolloutPhase, RolloutSpec, RolloutStatus, StrategyKind, WorkloadKind};

/// The restart the spec asks for and the status has not recorded as done: what the engine acts
/// on, and when the platforms read pods' start times for it.
pub fn pending(spec: &RolloutSpec, status: &RolloutStatus) -> Option<Timestamp> {
    let at = spec.restart_at.as_ref()?.0;
    let done = status.restarted_at.as_ref().is_some_and(|t| t.0 == at);
    (!done).then_some(at)
}

impl Pass<'_> {
    /// [`pending`], for Kubernetes pods only: an ECS revision is replaced as a task set.
    fn restart_asked(&self) -> Option<Timestamp> {
        pending(self.input.spec, self.input.status).filter(|_| matches!(self.workload, Some(WorkloadKind::Kubernetes(_))))
    }

    /// Pods the strategy lets be missing while pods are replaced.
    fn restart_unavailable(&self) -> i32 {
        let allowed = match self.strategy {
            Some(StrategyKind::Canary(canary)) => resolve_count(canary.max_unavailable.as_ref(), self.replicas, 0, false),
            Some(StrategyKind::Rolling(rolling)) => resolve_count(rolling.max_unavailable.as_ref(), self.replicas, 25, false),
            _ => 0,
        };
        allowed.min(self.replicas)
    }

    /// The extra pod the stable runs while old pods are left to replace with nothing allowed
    /// missing; none once they are all replaced, so the pass that records the restart done
    /// also brings the revision back to its replicas.
    pub(super) fn restart_surge(&self) -> i32 {
        let due = self.restart_asked().is_some_and(|at| at <= self.now());
        let stale = self.input.observed.stale_pods.get(&self.stable).is_some_and(|n| *n > 0);
        i32::from(due && stale && self.replicas > 0 && self.restart_unavailable() == 0)
    }

    /// At rest: replaces as many old pods as the availability allows, or records the restart done.
    pub(super) fn restart_pods(&mut self) {
        let Some(at) = self.restart_asked() else { return };
        if at > self.now() {
            self.requeue_at(at);
            return;
        }
        let stable = self.stable.clone();
        let stale = self.input.observed.stale_pods.get(&stable).copied().map_or(0, bounded);
        if stale == 0 || self.replicas == 0 {
            self.status.restarted_at = Some(Time(at));
            self.event(EventReason::Restarted, format!("every pod of revision {stable} that started before {at} is replaced"));
            return;
        }
        let full = self.replicas + self.restart_surge();
        let available = self.observed(&stable).map_or(0, |r| bounded(r.available));
        let room = available - (self.replicas - self.restart_unavailable());
        if self.current(&stable) < full || room <= 0 {
            self.wait(format!("restarting revision {stable}: {stale} pods started before {at} left; waiting for {full} available"));
            return;
        }
        let count = room.min(stale);
        self.actions.push(Action::RestartPods { revision: stable.clone(), started_before: Time(at), count });
        self.outcome(
            RolloutPhase::Progressing,
            format!("restarting revision {stable}: replacing {count} of {stale} pods started before {at}"),
        );
        self.deadline_applies = true;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture::Fixture;
    use super::super::{Action, Plan, step};
    use crate::engine::revision;

    /// A 4-replica rollout at rest with `available` pods available of `replicas` asked, `stale`
    /// of them started before the restart the spec asks for.
    fn restarting(strategy: serde_json::Value, replicas: i32, available: i32, stale: i32) -> Fixture {
        let mut fixture = Fixture::new(4, strategy);
        fixture.spec.restart_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-03-01T11:00:00Z".parse().unwrap()));
        let own = revision::of(&fixture.spec.workload);
        fixture.status.stable_revision = Some(own.clone());
        fixture.observed.stale_pods.insert(own.clone(), stale);
        fixture.running(&own, replicas, available)
    }

    fn restarts(plan: &Plan) -> Vec<i32> {
        plan.actions.iter().filter_map(|a| if let Action::RestartPods { count, .. } = a { Some(*count) } else { None }).collect()
    }

    fn scales(plan: &Plan) -> Vec<i32> {
        plan.actions.iter().filter_map(|a| if let Action::Scale { replicas, .. } = a { Some(*replicas) } else { None }).collect()
    }

    #[test]
    fn with_nothing_allowed_missing_a_restart_runs_one_extra_pod_and_replaces_one_at_a_time() {
        let canary = json!({"canary": {"steps": []}});
        let plan = step(restarting(canary.clone(), 4, 4, 4).input());
        assert_eq!((scales(&plan), restarts(&plan)), (vec![5], vec![]), "first the extra pod");
        let plan = step(restarting(canary.clone(), 5, 4, 4).input());
        assert_eq!(restarts(&plan), Vec::<i32>::new(), "it is not available yet");
        let plan = step(restarting(canary.clone(), 5, 5, 4).input());
        assert_eq!(restarts(&plan), vec![1], "then one old pod at a time: never fewer than 4 available");
        assert_eq!(plan.status.phase, Some(crate::api::RolloutPhase::Progressing));
    }

    #[test]
    fn max_unavailable_replaces_that_many_pods_at_a_time_without_an_extra_one() {
        let canary = json!({"canary": {"maxUnavailable": 2, "steps": []}});
        let plan = step(restarting(canary.clone(), 4, 4, 3).input());
        assert_eq!((scales(&plan), restarts(&plan)), (vec![], vec![2]));
        let plan = step(restarting(canary, 4, 3, 1).input());
        assert_eq!(restarts(&plan), vec![1], "one is still starting: one more may go");
    }

    #[test]
    fn a_restart_is_recorded_done_once_no_pod_is_older_and_then_asks_nothing() {
        let canary = json!({"canary": {"steps": []}});
        let plan = step(restarting(canary.clone(), 5, 5, 0).input());
        assert!(plan.status.restarted_at.is_some());
        assert!(plan.events.iter().any(|e| e.message.contains("is replaced")));
        let mut done = restarting(canary, 4, 4, 0);
        done.status.restarted_at = done.spec.restart_at.clone();
        done.status.phase = Some(crate::api::RolloutPhase::Healthy);
        let plan = step(done.input());
        let changes = plan.actions.iter().filter(|a| matches!(a, Action::Scale { .. } | Action::RestartPods { .. })).count();
        assert!(changes == 0 && plan.events.is_empty(), "{:?} {:?}", plan.actions, plan.events);
        assert_eq!(plan.status.phase, Some(crate::api::RolloutPhase::Healthy));
    }

    #[test]
    fn a_restart_in_the_future_waits_for_its_time() {
        let mut fixture = restarting(json!({"canary": {"steps": []}}), 4, 4, 4);
        fixture.spec.restart_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-03-01T13:00:00Z".parse().unwrap()));
        let plan = step(fixture.input());
        assert!(restarts(&plan).is_empty() && scales(&plan).is_empty());
        assert_eq!(plan.requeue_after, Some(std::time::Duration::from_secs(3600)));
    }
}
