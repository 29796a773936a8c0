//! A Deployment the Rollout adopted (`workload.kubernetes.deploymentRef`): the Rollout runs its
//! template as revisions of its own, and the Deployment's pods give way as `scaleDown` says.
//! The Deployment is only ever scaled down here, never up and never edited otherwise; deleting
//! the Rollout gives it its replicas back (the platform keeps the count it had).

use super::context::{Pass, bounded};
use super::{Action, InvalidSpec};
use crate::api::{DeploymentRef, RolloutPhase, ScaleDown, WorkloadKind};

impl Pass<'_> {
    pub(super) fn adopted(&self) -> Option<&DeploymentRef> {
        match self.workload {
            Some(WorkloadKind::Kubernetes(kubernetes)) => kubernetes.deployment_ref.as_ref(),
            _ => None,
        }
    }

    /// The spec adopts a Deployment the platform did not find: nothing can run without its template.
    pub(super) fn adopted_missing(&self) -> Option<InvalidSpec> {
        let reference = self.adopted()?;
        self.input.observed.adopted.is_none().then(|| {
            InvalidSpec(format!(
                "workload.kubernetes.deploymentRef names Deployment {}, which does not exist in the namespace: create it, or fix \
                 the name",
                reference.name
            ))
        })
    }

    /// Scales the adopted Deployment down as far as `scaleDown` allows in this pass.
    pub(super) fn give_way_adopted(&mut self) {
        let (Some(reference), Some(observed)) = (self.adopted(), self.input.observed.adopted) else { return };
        let current = bounded(observed.replicas);
        let wanted = match reference.scale_down {
            ScaleDown::Never => return,
            // Healthy only at rest: the stable revision is the Rollout's own and fully ready.
            ScaleDown::OnSuccess if self.phase == RolloutPhase::Healthy => 0,
            ScaleDown::OnSuccess => return,
            ScaleDown::Progressively => {
                let available = self.input.observed.revisions.iter().map(|r| bounded(r.available)).fold(0, i32::saturating_add);
                (self.replicas - available).max(0)
            }
        };
        if wanted < current {
            self.actions.push(Action::ScaleAdopted { replicas: wanted });
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture::Fixture;
    use super::super::{AdoptedObservation, step};
    use crate::api::ScaleDown;
    use crate::engine::{Action, revision};

    /// A 4-replica canary adopting a Deployment that runs `deployment` pods, at rest on its own
    /// revision with `available` of them available.
    fn adopting(scale_down: ScaleDown, deployment: i32, available: i32) -> Fixture {
        let mut fixture = Fixture::new(4, json!({"canary": {"steps": [{"setWeight": 50}]}}));
        let kubernetes = fixture.spec.workload.kubernetes.as_mut().unwrap();
        kubernetes.template = serde_json::from_value(json!({"spec": {"containers": [{"name": "web", "image": "web:1"}]}})).unwrap();
        kubernetes.deployment_ref = Some(crate::api::DeploymentRef { name: "web".into(), scale_down });
        let own = revision::of(&fixture.spec.workload);
        fixture.status.stable_revision = Some(own.clone());
        fixture.observed.adopted = Some(AdoptedObservation { replicas: deployment });
        fixture.running(&own, 4, available)
    }

    fn deployment_scale(fixture: &Fixture) -> Option<i32> {
        step(fixture.input()).actions.iter().find_map(|a| match a {
            Action::ScaleAdopted { replicas } => Some(*replicas),
            _ => None,
        })
    }

    #[test]
    fn an_adopted_deployment_set_to_never_keeps_its_replicas() {
        assert_eq!(deployment_scale(&adopting(ScaleDown::Never, 4, 4)), None);
    }

    #[test]
    fn an_adopted_deployment_goes_to_zero_on_success_only_once_the_rollout_is_healthy() {
        assert_eq!(deployment_scale(&adopting(ScaleDown::OnSuccess, 4, 2)), None, "the rollout's pods are not all ready yet");
        assert_eq!(deployment_scale(&adopting(ScaleDown::OnSuccess, 4, 4)), Some(0));
        assert_eq!(deployment_scale(&adopting(ScaleDown::OnSuccess, 0, 4)), None, "already at zero: nothing to do");
    }

    #[test]
    fn an_adopted_deployment_gives_way_progressively_as_the_rollouts_pods_become_available() {
        assert_eq!(deployment_scale(&adopting(ScaleDown::Progressively, 4, 0)), None);
        assert_eq!(deployment_scale(&adopting(ScaleDown::Progressively, 4, 1)), Some(3));
        assert_eq!(deployment_scale(&adopting(ScaleDown::Progressively, 3, 3)), Some(1));
        assert_eq!(deployment_scale(&adopting(ScaleDown::Progressively, 1, 4)), Some(0));
    }

    #[test]
    fn an_adopted_deployment_is_never_scaled_up_by_the_rollout() {
        // Two of the Rollout's pods went away: the Deployment is not brought back to cover them.
        assert_eq!(deployment_scale(&adopting(ScaleDown::Progressively, 1, 2)), None);
    }

    #[test]
    fn a_rollout_whose_adopted_deployment_is_missing_is_degraded_and_changes_nothing() {
        let mut fixture = adopting(ScaleDown::OnSuccess, 4, 4);
        fixture.observed.adopted = None;
        let plan = step(fixture.input());
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert_eq!(plan.status.phase, Some(crate::api::RolloutPhase::Degraded));
        assert!(plan.status.message.unwrap().contains("Deployment web, which does not exist"));
    }
}
