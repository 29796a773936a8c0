//! The arguments Sluice gives every analysis template, as `{{args.sluice.NAME}}`: the stable
//! and canary revisions and, behind an ALB, their target groups and the load balancer, as ARNs
//! and as the values of CloudWatch's `TargetGroup` and `LoadBalancer` dimensions. They are
//! worked out when a run is created, from the roles as they stand, so on ECS they follow the
//! target groups' swap at each promotion.

use super::AnalysisPurpose;
use super::context::Pass;
use crate::api::AnalysisArg;

pub const STABLE_REVISION: &str = "sluice.stableRevision";
pub const CANARY_REVISION: &str = "sluice.canaryRevision";
pub const STABLE_TARGET_GROUP_ARN: &str = "sluice.stableTargetGroupArn";
pub const CANARY_TARGET_GROUP_ARN: &str = "sluice.canaryTargetGroupArn";
pub const STABLE_TARGET_GROUP: &str = "sluice.stableTargetGroup";
pub const CANARY_TARGET_GROUP: &str = "sluice.canaryTargetGroup";
pub const LOAD_BALANCER: &str = "sluice.loadBalancer";
pub const ROLLOUT: &str = "sluice.rollout";
/// Of a hook's run: the hook's name and its stage.
pub const HOOK: &str = "sluice.hook";
pub const LIFECYCLE_STAGE: &str = "sluice.lifecycleStage";

impl Pass<'_> {
    /// The built-in arguments for a run of `purpose`: a hook's also name it and its stage.
    pub(super) fn builtin_args_for(&self, purpose: AnalysisPurpose) -> Vec<AnalysisArg> {
        let mut args = self.builtin_args();
        if let AnalysisPurpose::Hook(index) = purpose
            && let Some(hook) = self.input.spec.hooks.get(index)
        {
            args.push(AnalysisArg::new(HOOK, &hook.name));
            args.push(AnalysisArg::new(LIFECYCLE_STAGE, hook.stage.to_string()));
        }
        args
    }

    /// The built-in arguments for a run of the revision being delivered.
    pub(super) fn builtin_args(&self) -> Vec<AnalysisArg> {
        let mut args = vec![
            AnalysisArg::new(ROLLOUT, self.input.name),
            AnalysisArg::new(STABLE_REVISION, &self.stable),
            AnalysisArg::new(CANARY_REVISION, &self.update),
        ];
        // Through Ingresses the groups are known once the router has found them.
        if let Some(groups) = self.target_groups().filter(|g| !g.stable.is_empty() && !g.canary.is_empty()) {
            for (name, arn) in [(STABLE_TARGET_GROUP_ARN, &groups.stable), (CANARY_TARGET_GROUP_ARN, &groups.canary)] {
                args.push(AnalysisArg::new(name, arn));
            }
            for (name, arn) in [(STABLE_TARGET_GROUP, &groups.stable), (CANARY_TARGET_GROUP, &groups.canary)] {
                args.extend(target_group_dimension(arn).map(|dimension| AnalysisArg::new(name, dimension)));
            }
        }
        let alb = self.input.spec.traffic.as_ref().and_then(|t| t.alb.as_ref());
        let weights_at = alb.and_then(|a| a.listener_arn.as_deref().or(a.rule_arn.as_deref()));
        args.extend(weights_at.and_then(load_balancer_dimension).map(|dimension| AnalysisArg::new(LOAD_BALANCER, dimension)));
        args
    }
}

/// CloudWatch's `TargetGroup` dimension: `targetgroup/NAME/ID`, the ARN's resource part.
pub fn target_group_dimension(arn: &str) -> Option<&str> {
    let at = arn.find(":targetgroup/")?;
    Some(&arn[at + 1..])
}

/// CloudWatch's `LoadBalancer` dimension (`app/NAME/ID`), from a listener or listener rule ARN.
pub fn load_balancer_dimension(arn: &str) -> Option<String> {
    let (_, resource) = arn.split_once(":listener/").or_else(|| arn.split_once(":listener-rule/"))?;
    let parts: Vec<&str> = resource.split('/').take(3).collect();
    (parts.len() == 3 && parts.iter().all(|p| !p.is_empty())).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::fixture::{Fixture, STABLE, UPDATE};

    #[test]
    fn dimensions_are_the_resource_parts_cloudwatch_names() {
        let group = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/orders-green/73e2d6bc24d8a067";
        assert_eq!(target_group_dimension(group), Some("targetgroup/orders-green/73e2d6bc24d8a067"));
        let listener = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/50dc6c495c0c9188/f2f7dc8efc522ab2";
        let rule =
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/shop/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee";
        assert_eq!(load_balancer_dimension(listener).as_deref(), Some("app/shop/50dc6c495c0c9188"));
        assert_eq!(load_balancer_dimension(rule).as_deref(), Some("app/shop/50dc6c495c0c9188"));
        assert_eq!(load_balancer_dimension("arn:aws:elasticloadbalancing:us-east-1:1:listener/app/shop"), None);
    }

    #[test]
    fn behind_an_alb_the_runs_know_both_revisions_and_their_target_groups() {
        let fixture = Fixture::with_router(2, json!({"canary": {"steps": [{"setWeight": 20}]}}), 0).running(STABLE, 2, 2);
        let pass = fixture.pass();
        let args = pass.builtin_args();
        let value = |name: &str| args.iter().find(|a| a.name == name).and_then(|a| a.value.clone());
        assert_eq!(value(STABLE_REVISION).as_deref(), Some(STABLE));
        assert_eq!(value(CANARY_REVISION).as_deref(), Some(UPDATE));
        assert_eq!(value(CANARY_TARGET_GROUP).as_deref(), Some("targetgroup/web-canary/2"));
        assert_eq!(value(LOAD_BALANCER).as_deref(), Some("app/web/1"));
        let without = Fixture::new(2, json!({"canary": {"steps": []}}));
        assert_eq!(without.pass().builtin_args().len(), 3, "without a router, the rollout and the revisions only");
    }
}
