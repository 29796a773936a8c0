//! Traffic steering: where the router's weight, the role Services and the preview routes point,
//! and the checks that keep weight off a revision that cannot serve it.

use std::time::Duration;

use super::conditions;
use super::context::Pass;
use super::target_groups::{self, TargetGroups};
use super::{Action, ServiceRole};
use crate::api::RolloutPhase;

/// How often to look at a traffic router while waiting on it (it sends no watch events).
const ROUTER_POLL: Duration = Duration::from_secs(5);

impl Pass<'_> {
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

    fn min_healthy_targets(&self) -> i32 {
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
}
