//! The workload's full size where the platform holds it (an ECS service's desiredCount, which
//! Service Auto Scaling changes): the spec's size is set when the spec changes it, and the
//! platform's size is kept otherwise, so an autoscaler's change is never undone. Every revision
//! is then sized against what the platform holds now.

use super::Action;
use super::Input;
use super::context::Pass;

/// The size a pass works to: the platform's, unless the spec asks for a size it has not set yet.
pub(super) fn full_size(input: &Input<'_>) -> i32 {
    let spec = input.spec.workload.replicas();
    match input.observed.capacity {
        Some(held) if input.status.applied_capacity == Some(spec) => held,
        _ => spec,
    }
}

impl Pass<'_> {
    /// Sets the spec's size on the platform when the spec changed it (or it was never set).
    pub(super) fn claim_capacity(&mut self) {
        let Some(held) = self.input.observed.capacity else { return };
        let spec = self.input.spec.workload.replicas();
        if self.input.status.applied_capacity == Some(spec) {
            return;
        }
        if held != spec {
            self.actions.push(Action::SetCapacity { replicas: spec });
        }
        self.status.applied_capacity = Some(spec);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::Fixture;
    use super::super::{Action, step};
    use crate::engine::revision;

    /// A Kubernetes-shaped fixture whose platform holds its size, like an ECS service.
    fn held(spec_replicas: i32, held: i32, applied: Option<i32>) -> Fixture {
        let mut fixture = Fixture::new(spec_replicas, serde_json::json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}));
        fixture.observed.capacity = Some(held);
        fixture.status.applied_capacity = applied;
        let own = revision::of(&fixture.spec.workload);
        fixture.status.stable_revision = Some(own.clone());
        fixture.running(&own, held, held)
    }

    fn set_capacity(plan: &crate::engine::Plan) -> Option<i32> {
        plan.actions.iter().find_map(|a| match a {
            Action::SetCapacity { replicas } => Some(*replicas),
            _ => None,
        })
    }

    #[test]
    fn a_size_an_autoscaler_set_on_the_platform_is_kept_until_the_spec_changes_its_own() {
        // The spec's 4 was set; an autoscaler raised the service to 6.
        let plan = step(held(4, 6, Some(4)).input());
        assert_eq!(set_capacity(&plan), None, "the autoscaler's size stays");
        assert_eq!(plan.status.desired_replicas, 6, "and the revisions are sized against it");
        // The person changes the spec to 8: that is set once.
        let plan = step(held(8, 6, Some(4)).input());
        assert_eq!((set_capacity(&plan), plan.status.applied_capacity), (Some(8), Some(8)));
        assert_eq!(plan.status.desired_replicas, 8);
    }

    #[test]
    fn a_platform_size_never_set_by_the_spec_is_set_once() {
        let plan = step(held(4, 3, None).input());
        assert_eq!((set_capacity(&plan), plan.status.applied_capacity), (Some(4), Some(4)));
        let plan = step(held(4, 4, None).input());
        assert_eq!((set_capacity(&plan), plan.status.applied_capacity), (None, Some(4)), "already so: only recorded");
    }
}
