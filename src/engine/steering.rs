//! Traffic steering: where the router's weight, the role Services and the preview routes point,
//! and the checks that keep weight off a revision that cannot serve it.

use std::time::Duration;

use super::conditions;
use super::context::Pass;
use super::target_groups::{self, TargetGroups};
use super::{Action, ServiceRole};
use crate::api::{RolloutPhase, StepKind, StrategyKind};

/// How often to look at a traffic router while waiting on it (it sends no watch events).
const ROUTER_POLL: Duration = Duration::from_secs(5);

impl Pass<'_> {
    /// The target groups of the roles as they stand before this pass acts.
    pub fn target_groups(&self) -> Option<TargetGroups> {
        let named = target_groups::roles(self.input.spec, self.input.status.stable_revision.as_deref(), &self.input.observed.registrations);
        let found = self.input.observed.traffic.as_ref().and_then(|t| t.target_groups.clone());
        match named {
            Some(groups) if groups.stable.is_empty() => Some(found.unwrap_or(groups)),
            named => named,
        }
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
        // Where revisions register themselves (ECS), a superseded one may still be on it.
        let shared = self.input.observed.registrations.iter().any(|(revision, tg)| *tg == groups.canary && *revision != self.update);
        let selected = selected && !shared;
        let live = !self.at_rest() && !self.status.abort && !emptied && selected && self.ready(&self.update.clone()) > 0;
        let role = if live { ServiceRole::Canary } else { ServiceRole::Stable };
        let mut actions_first = Vec::new();
        if alb.test_listener_arn.is_some() || alb.test_rule_arn.is_some() {
            actions_first.push(Action::RouteTestTraffic { to: role, target_group: groups.of(role).to_string() });
        }
        if let Some(header_routes) = self.header_routes() {
            let routes = if live { header_routes } else { Vec::new() };
            let target_group = (live && !routes.is_empty()).then(|| groups.canary.clone());
            actions_first.push(Action::RouteHeaders { routes, target_group });
        }
        self.actions.splice(0..0, actions_first);
    }

    /// The header routes the current step has in force; `None` when no step of the strategy
    /// sets one, so a rollout without them costs no call for them.
    fn header_routes(&self) -> Option<Vec<crate::api::SetHeaderRoute>> {
        let Some(StrategyKind::Canary(canary)) = self.strategy else { return None };
        let steps: Vec<StepKind<'_>> = canary.steps.iter().filter_map(|s| s.kind().ok()).collect();
        if !steps.iter().any(|s| matches!(s, StepKind::SetHeaderRoute(_))) {
            return None;
        }
        let index = usize::try_from(self.status.current_step_index.unwrap_or(0)).unwrap_or(0).min(steps.len().saturating_sub(1));
        Some(super::canary::header_routes_at(&steps, index).into_iter().cloned().collect())
    }

    pub fn has_router(&self) -> bool {
        self.input.observed.traffic.is_some() || self.input.spec.traffic.is_some()
    }

    pub fn observed_weight(&self) -> Option<i32> {
        self.input.observed.traffic.as_ref().and_then(|t| t.canary_weight)
    }

    fn healthy_targets_percent(&self) -> i32 {
        self.input.spec.traffic.as_ref().and_then(|t| t.alb.as_ref()).and_then(|a| a.healthy_targets_percent).unwrap_or(100)
    }

    /// The revision's ready replicas its role's target group reports healthy, matched by address:
    /// a healthy target of another revision (a Service that still selects the old one, a task
    /// set of the last deployment) counts for nothing.
    fn matched_targets(&self, revision: &str, role: ServiceRole) -> i32 {
        let Some(traffic) = &self.input.observed.traffic else { return 0 };
        let healthy = match role {
            ServiceRole::Stable => &traffic.stable_healthy,
            ServiceRole::Canary => &traffic.canary_healthy,
        };
        let observed = self.input.observed.revisions.iter().find(|r| r.revision == revision);
        let matched = observed.map_or(0, |r| r.addresses.intersection(healthy).count());
        i32::try_from(matched).unwrap_or(i32::MAX)
    }

    /// Whether the role's group reports EC2 instances (target type `instance`), which no pod
    /// or task address can match.
    fn instance_targets(&self, role: ServiceRole) -> bool {
        let Some(traffic) = &self.input.observed.traffic else { return false };
        let healthy = match role {
            ServiceRole::Stable => &traffic.stable_healthy,
            ServiceRole::Canary => &traffic.canary_healthy,
        };
        !healthy.is_empty() && healthy.iter().all(|id| id.starts_with("i-"))
    }

    /// Healthy targets a revision needs before weight moves onto its group: `healthyTargetsPercent`
    /// of its ready replicas, rounded up, and at least one.
    fn targets_needed(&self, revision: &str) -> i32 {
        let ready = i64::from(self.ready(revision).max(0));
        let needed = (ready * i64::from(self.healthy_targets_percent()) + 99) / 100;
        i32::try_from(needed).unwrap_or(i32::MAX).max(1)
    }

    /// Moves the canary weight toward `weight`. Weight only moves onto a target group that holds
    /// enough healthy targets of its revision. `urgent` (an abort) does not wait for the stable
    /// revision to have ready replicas, but while it has some, traffic returns only once they
    /// are registered: a target group without them answers 503.
    /// Returns true once the router reports `weight` back.
    pub fn steer(&mut self, weight: i32, urgent: bool) -> bool {
        self.status.canary_weight = weight;
        let observed = self.observed_weight();
        if observed == Some(weight) {
            return true;
        }
        let toward_canary = observed.is_none_or(|o| weight > o);
        let (role, revision) = if toward_canary { (ServiceRole::Canary, &self.update) } else { (ServiceRole::Stable, &self.stable) };
        let name = if toward_canary { "canary" } else { "stable" };
        let services = &self.input.observed.services;
        let selected = if toward_canary { &services.canary } else { &services.stable };
        if !urgent && selected.as_ref().is_some_and(|s| s != revision) {
            let message = format!("waiting for the {name} Service to select revision {revision} before weight moves to it");
            self.wait(message);
            self.requeue_in(ROUTER_POLL);
            return false;
        }
        // Never weight onto a revision with no ready replica (it would answer with errors).
        let receives = if toward_canary { weight > 0 } else { weight < 100 };
        let revision = revision.clone();
        if receives && !urgent && self.ready(&revision) == 0 {
            self.wait(format!("waiting for revision {revision} to have a ready replica before weight moves to it"));
            self.requeue_in(ROUTER_POLL);
            return false;
        }
        let registering = !urgent || self.ready(&revision) > 0;
        let (needed, matched) = (self.targets_needed(&revision), self.matched_targets(&revision, role));
        if receives && registering && matched < needed {
            let hint = if self.instance_targets(role) {
                "; its targets are EC2 instances, and Sluice matches a revision's pods or tasks by IP: use target type ip"
            } else {
                ""
            };
            self.wait(format!(
                "waiting for registration: the {name} target group holds {matched} healthy targets of revision \
                 {revision}, {needed} needed before weight moves to it{hint}"
            ));
            self.requeue_in(ROUTER_POLL);
            return false;
        }
        let Some(target_groups) = self.target_groups() else {
            // A router without an ALB has no weight to set; validation refuses such a spec.
            return false;
        };
        let reclaim = self.drift() == Some(super::drift::Drift::ForwardAction);
        self.actions.push(Action::SetWeight { canary_weight: weight, target_groups, reclaim });
        self.wait(format!("setting the canary weight to {weight}%"));
        self.requeue_in(ROUTER_POLL);
        false
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
             scale the rollout above 0 (`kubectl scale rollouts.sluice.dev {name} --replicas N`) to go on"
        );
        let now = self.now();
        conditions::set(&mut self.status.conditions, conditions::SCALED_TO_ZERO, true, "ZeroReplicasWithRouter", &message, now);
        self.outcome(RolloutPhase::Paused, message);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::fixture::{CANARY_GROUP, Fixture, STABLE, STABLE_GROUP, UPDATE};

    fn canary() -> serde_json::Value {
        json!({"canary": {"steps": [{"setWeight": 20}]}})
    }

    fn weights(pass: &Pass<'_>) -> Vec<i32> {
        let set = |a: &Action| match a {
            Action::SetWeight { canary_weight, .. } => Some(*canary_weight),
            _ => None,
        };
        pass.actions.iter().filter_map(set).collect()
    }

    #[test]
    fn weight_never_moves_onto_a_revision_without_a_ready_replica() {
        let fixture = Fixture::with_router(2, canary(), 0).running(STABLE, 2, 2).running(UPDATE, 1, 0);
        let mut pass = fixture.pass();
        assert!(!pass.steer(20, false));
        assert!(weights(&pass).is_empty());
        assert_eq!(pass.message, format!("waiting for revision {UPDATE} to have a ready replica before weight moves to it"));
    }

    #[test]
    fn weight_moves_only_once_the_role_service_selects_the_revision() {
        let mut fixture = Fixture::with_router(2, canary(), 0).running(STABLE, 2, 2).running(UPDATE, 1, 1);
        fixture.observed.services.canary = Some("older-rev".into());
        let mut pass = fixture.pass();
        assert!(!pass.steer(20, false));
        assert!(weights(&pass).is_empty());
        assert_eq!(pass.message, format!("waiting for the canary Service to select revision {UPDATE} before weight moves to it"));
    }

    #[test]
    fn weight_moves_only_once_every_ready_replica_is_a_healthy_target() {
        let fixture = Fixture::with_router(4, canary(), 0).running(STABLE, 4, 4).running(UPDATE, 2, 2).unregistered(UPDATE, 1);
        let mut pass = fixture.pass();
        assert!(!pass.steer(20, false));
        assert!(weights(&pass).is_empty());
        assert_eq!(
            pass.message,
            format!(
                "waiting for registration: the canary target group holds 1 healthy targets of revision {UPDATE}, 2 needed before weight moves to it"
            )
        );
        let fixture = Fixture::with_router(4, canary(), 0).running(STABLE, 4, 4).running(UPDATE, 2, 2);
        let mut pass = fixture.pass();
        assert!(!pass.steer(20, false));
        assert_eq!(weights(&pass), [20]);
    }

    #[test]
    fn instance_targets_are_named_as_the_reason_nothing_matches() {
        let mut fixture = Fixture::with_router(4, canary(), 0).running(STABLE, 4, 4).running(UPDATE, 1, 1).unregistered(UPDATE, 1);
        fixture.observed.traffic.as_mut().expect("traffic").canary_healthy.insert("i-0123456789abcdef0".into());
        let mut pass = fixture.pass();
        assert!(!pass.steer(20, false));
        assert!(pass.message.ends_with("use target type ip"), "{}", pass.message);
    }

    #[test]
    fn healthy_targets_of_another_revision_count_for_nothing() {
        let mut fixture = Fixture::with_router(4, canary(), 0).running(STABLE, 4, 4).running(UPDATE, 1, 1).unregistered(UPDATE, 1);
        // The canary Service still selected the old revision: its pod is a healthy target.
        fixture.observed.traffic.as_mut().expect("traffic").canary_healthy.insert("older-rev-0".into());
        let mut pass = fixture.pass();
        assert!(!pass.steer(20, false));
        assert!(weights(&pass).is_empty());
    }

    #[test]
    fn a_lower_healthy_targets_percent_moves_weight_with_part_of_the_replicas_registered() {
        let mut fixture = Fixture::with_router(4, canary(), 0).running(STABLE, 4, 4).running(UPDATE, 4, 4).unregistered(UPDATE, 2);
        fixture.spec.traffic.as_mut().and_then(|t| t.alb.as_mut()).expect("an ALB").healthy_targets_percent = Some(50);
        let mut pass = fixture.pass();
        pass.steer(20, false);
        assert_eq!(weights(&pass), [20], "2 of 4 is 50 %");
        let fixture = fixture.unregistered(UPDATE, 1);
        let mut pass = fixture.pass();
        pass.steer(20, false);
        assert!(weights(&pass).is_empty(), "1 of 4 is under 50 %");
    }

    #[test]
    fn traffic_returns_to_the_stable_group_only_once_the_stable_revision_is_registered() {
        let fixture = Fixture::with_router(2, canary(), 100).running(STABLE, 2, 2).running(UPDATE, 2, 2).unregistered(STABLE, 2);
        let mut pass = fixture.pass();
        assert!(!pass.steer(0, false));
        assert!(weights(&pass).is_empty());
        assert!(pass.message.starts_with("waiting for registration: the stable target group holds 0 healthy targets"), "{}", pass.message);
    }

    #[test]
    fn an_abort_waits_for_the_stable_revisions_registration_but_not_for_its_readiness() {
        let fixture = Fixture::with_router(2, canary(), 20).running(STABLE, 2, 2).running(UPDATE, 1, 1).unregistered(STABLE, 1);
        let mut pass = fixture.pass();
        assert!(!pass.steer(0, true));
        assert!(weights(&pass).is_empty(), "a stable revision with ready replicas is waited for until they are registered");
        let fixture = Fixture::with_router(2, canary(), 20).running(STABLE, 2, 0).running(UPDATE, 1, 1);
        let mut pass = fixture.pass();
        assert!(!pass.steer(0, false));
        assert!(weights(&pass).is_empty(), "an ordinary move waits for the stable revision to serve");
        let mut pass = fixture.pass();
        assert!(!pass.steer(0, true), "home only once the router reports it");
        assert_eq!(weights(&pass), [0], "with no ready replica to wait for, an abort sends traffic home");
    }

    #[test]
    fn a_weight_the_router_reports_is_reached_and_not_set_again() {
        let fixture = Fixture::with_router(2, canary(), 20).running(STABLE, 2, 2).running(UPDATE, 1, 1);
        let mut pass = fixture.pass();
        assert!(pass.steer(20, false));
        assert!(pass.actions.is_empty());
        assert_eq!(pass.status.canary_weight, 20);
    }

    #[test]
    fn the_test_listener_reaches_the_candidate_only_while_it_serves() {
        let mut fixture = Fixture::with_router(2, canary(), 0).running(STABLE, 2, 2).running(UPDATE, 1, 1);
        let alb = fixture.spec.traffic.as_mut().and_then(|t| t.alb.as_mut()).expect("an ALB");
        alb.test_listener_arn = Some("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/3".into());
        let mut pass = fixture.pass();
        pass.route_previews();
        assert_eq!(pass.actions, [Action::RouteTestTraffic { to: ServiceRole::Canary, target_group: CANARY_GROUP.into() }]);
        let mut pass = fixture.pass();
        pass.status.abort = true;
        pass.route_previews();
        assert_eq!(pass.actions, [Action::RouteTestTraffic { to: ServiceRole::Stable, target_group: STABLE_GROUP.into() }]);
    }

    #[test]
    fn header_routes_follow_the_steps_and_only_while_the_candidate_serves() {
        let route = |name: &str, value: Option<&str>| {
            let matches = value.map(|v| json!([{"headerName": "x-canary", "headerValue": {"exact": v}}])).unwrap_or(json!([]));
            json!({"setHeaderRoute": {"name": name, "match": matches}})
        };
        let steps =
            json!([route("testers", Some("1")), {"setWeight": 20}, route("beta", Some("2")), route("testers", None), {"pause": {}}]);
        let routes_at = |index: i32, abort: bool| {
            let mut fixture =
                Fixture::with_router(2, json!({"canary": {"steps": steps.clone()}}), 20).running(STABLE, 2, 2).running(UPDATE, 1, 1);
            fixture.status.current_step_index = Some(index);
            fixture.status.abort = abort;
            let mut pass = fixture.pass();
            pass.strategy = fixture.spec.strategy.kind().ok();
            pass.route_previews();
            pass.actions.iter().find_map(|a| match a {
                Action::RouteHeaders { routes, target_group } => {
                    Some((routes.iter().map(|r| r.name.clone()).collect::<Vec<_>>(), target_group.clone()))
                }
                _ => None,
            })
        };
        assert_eq!(routes_at(1, false), Some((vec!["testers".to_string()], Some(CANARY_GROUP.to_string()))));
        assert_eq!(routes_at(2, false), Some((vec!["testers".to_string(), "beta".to_string()], Some(CANARY_GROUP.to_string()))));
        assert_eq!(routes_at(4, false), Some((vec!["beta".to_string()], Some(CANARY_GROUP.to_string()))), "removed by its step");
        assert_eq!(routes_at(4, true), Some((vec![], None)), "an aborted candidate takes no header route");
        let fixture = Fixture::with_router(2, canary(), 20).running(STABLE, 2, 2).running(UPDATE, 1, 1);
        let mut pass = fixture.pass();
        pass.strategy = fixture.spec.strategy.kind().ok();
        pass.route_previews();
        assert!(pass.actions.is_empty(), "no setHeaderRoute step, no header action: {:?}", pass.actions);
    }

    #[test]
    fn a_router_with_zero_replicas_holds_every_revision_at_zero_and_moves_no_weight() {
        let fixture = Fixture::with_router(0, canary(), 0).running(STABLE, 1, 1);
        let mut pass = fixture.pass();
        pass.hold_at_zero_replicas();
        assert!(matches!(&pass.actions[..], [Action::Scale { revision, replicas: 0, .. }] if revision == STABLE));
        assert_eq!(pass.phase, RolloutPhase::Paused);
        assert!(pass.status.conditions.iter().any(|c| c.type_ == conditions::SCALED_TO_ZERO));
    }
}
