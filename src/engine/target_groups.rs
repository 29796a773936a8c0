//! Which of the two target groups of `traffic.alb` serves each role, and which one a new revision
//! registers with.
//!
//! Where Services steer traffic (Kubernetes) the roles are fixed: `stableTargetGroupArn` is the
//! stable role's. Where the platform registers each revision with a target group itself (ECS task
//! sets), the roles follow the revisions and swap at every promotion, as with CodeDeploy: the
//! stable role is the group of the stable revision, the canary role the other one.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::api::{AlbTraffic, RolloutSpec};

/// The target group of each role, now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroups {
    pub stable: String,
    pub canary: String,
}

impl TargetGroups {
    pub fn of(&self, role: super::ServiceRole) -> &str {
        match role {
            super::ServiceRole::Stable => &self.stable,
            super::ServiceRole::Canary => &self.canary,
        }
    }
}

fn alb(spec: &RolloutSpec) -> Option<&AlbTraffic> {
    spec.traffic.as_ref().and_then(|t| t.alb.as_ref())
}

/// The roles of the target groups, given the stable revision and the target group each revision
/// is registered with (`registrations`, revision → target group; empty where Services steer).
/// `None` without an ALB. Through Ingresses the groups are the AWS Load Balancer Controller's,
/// unknown here: both are empty, and the router reports them ([`super::TrafficObservation`]).
pub fn roles(spec: &RolloutSpec, stable_revision: Option<&str>, registrations: &BTreeMap<String, String>) -> Option<TargetGroups> {
    let alb = alb(spec)?;
    if alb.through_ingresses() {
        return Some(TargetGroups { stable: String::new(), canary: String::new() });
    }
    let (blue, green) = (alb.stable_target_group_arn.clone(), alb.canary_target_group_arn.clone());
    match stable_revision.and_then(|stable| registrations.get(stable)) {
        Some(registered) if *registered == green => Some(TargetGroups { stable: green, canary: blue }),
        _ => Some(TargetGroups { stable: blue, canary: green }),
    }
}

/// The target group a revision not yet running registers with: the one of the pair the stable
/// revision does not use; without a stable registration, `stableTargetGroupArn` unless another
/// revision has it. `None` without an ALB, or when neither group is free (the stable revision is
/// registered with a group that is not the Rollout's, or both serve other revisions).
pub fn for_new_revision(
    spec: &RolloutSpec,
    revision: &str,
    stable_revision: &str,
    registrations: &BTreeMap<String, String>,
) -> Option<String> {
    let alb = alb(spec)?;
    let pair = [alb.stable_target_group_arn.as_str(), alb.canary_target_group_arn.as_str()];
    let stable = (stable_revision != revision).then(|| registrations.get(stable_revision)).flatten();
    match stable {
        Some(registered) if registered == pair[0] => Some(pair[1].to_string()),
        Some(registered) if registered == pair[1] => Some(pair[0].to_string()),
        Some(_) => None,
        None => {
            let taken: Vec<&str> = registrations.iter().filter(|(r, _)| *r != revision).map(|(_, tg)| tg.as_str()).collect();
            pair.iter().find(|tg| !taken.contains(*tg)).map(|tg| tg.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RolloutSpec {
        serde_json::from_value(serde_json::json!({
            "workload": {"ecs": {"cluster": "c", "service": "s", "taskDefinition": "td", "desiredCount": 4,
                "loadBalancer": {"containerName": "web", "containerPort": 80}}},
            "strategy": {"canary": {"steps": []}},
            "traffic": {"alb": {"listenerArn": "l", "stableTargetGroupArn": "tg-1", "canaryTargetGroupArn": "tg-2"}}
        }))
        .unwrap()
    }

    fn on(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(r, tg)| (r.to_string(), tg.to_string())).collect()
    }

    #[test]
    fn a_new_revision_takes_the_group_the_stable_revision_does_not_use() {
        let spec = spec();
        assert_eq!(for_new_revision(&spec, "a", "a", &on(&[])).as_deref(), Some("tg-1"), "the first one ever");
        assert_eq!(for_new_revision(&spec, "b", "a", &on(&[("a", "tg-1")])).as_deref(), Some("tg-2"));
        assert_eq!(for_new_revision(&spec, "c", "b", &on(&[("b", "tg-2")])).as_deref(), Some("tg-1"));
        assert_eq!(for_new_revision(&spec, "c", "gone", &on(&[("x", "tg-1")])).as_deref(), Some("tg-2"), "a group in use is not shared");
    }

    #[test]
    fn no_group_is_chosen_when_the_stable_one_is_foreign_or_both_are_taken() {
        let spec = spec();
        assert_eq!(for_new_revision(&spec, "b", "a", &on(&[("a", "tg-9")])), None);
        assert_eq!(for_new_revision(&spec, "c", "gone", &on(&[("x", "tg-1"), ("y", "tg-2")])), None);
    }

    #[test]
    fn roles_swap_once_the_stable_revision_runs_in_the_canary_group() {
        let spec = spec();
        let fixed = TargetGroups { stable: "tg-1".into(), canary: "tg-2".into() };
        assert_eq!(roles(&spec, Some("a"), &on(&[])), Some(fixed.clone()), "Services steer: the roles are as the spec names them");
        assert_eq!(roles(&spec, Some("a"), &on(&[("a", "tg-1"), ("b", "tg-2")])), Some(fixed));
        let swapped = TargetGroups { stable: "tg-2".into(), canary: "tg-1".into() };
        assert_eq!(roles(&spec, Some("b"), &on(&[("a", "tg-1"), ("b", "tg-2")])), Some(swapped));
        let mut without_alb = spec;
        without_alb.traffic = None;
        assert_eq!(roles(&without_alb, Some("a"), &on(&[])), None);
    }
}
