//! Lifecycle hooks (`spec.hooks`): checks at named stages of a rollout, each measured as an
//! analysis run of its own through the one analysis gate, so a hook's verdict reads as any
//! verdict does and a failed hook aborts as a failed analysis does. Every strategy calls
//! [`Pass::hooks_gate`] where each stage falls in its flow; nothing here knows the backend.

use super::AnalysisPurpose;
use super::context::Pass;
use super::gates::Gate;
use crate::api::{LifecycleHook, LifecycleStage, Metric, MetricProvider, RolloutAnalysis};

/// The hooks at and before production traffic: they hold the first move of production weight.
pub(super) const BEFORE_TRAFFIC: [LifecycleStage; 4] = [
    LifecycleStage::PostScaleUp,
    LifecycleStage::TestTrafficShift,
    LifecycleStage::PostTestTrafficShift,
    LifecycleStage::ProductionTrafficShift,
];
/// The hooks once all production traffic is on the new revision, before it is marked stable.
pub(super) const AFTER_TRAFFIC: [LifecycleStage; 2] = [LifecycleStage::PostProductionTrafficShift, LifecycleStage::PostPromotion];

impl Pass<'_> {
    /// The gate of every hook at `stages`, stage by stage and in spec order within one: Open
    /// once each has passed, Shut while one runs, Abort naming the hook that failed. A full
    /// promotion skips hooks, as it skips analysis.
    pub(super) fn hooks_gate(&mut self, stages: &[LifecycleStage], keep_runs: &mut Vec<String>) -> Gate {
        if self.status.promote_full {
            return Gate::Open;
        }
        let mut due: Vec<(usize, LifecycleHook)> =
            self.input.spec.hooks.iter().cloned().enumerate().filter(|(_, hook)| stages.contains(&hook.stage)).collect();
        due.sort_by_key(|(index, hook)| (LifecycleStage::ALL.iter().position(|s| *s == hook.stage), *index));
        for (index, hook) in due {
            let (analysis, metrics) = measured(&hook);
            match self.gate(AnalysisPurpose::Hook(index), &analysis, &metrics, keep_runs) {
                Gate::Open => {}
                Gate::Shut => return Gate::Shut,
                Gate::Abort(verdict) => return Gate::Abort(format!("hook {} ({}) failed: {verdict}", hook.name, hook.stage)),
            }
        }
        Gate::Open
    }

    /// Whether any hook runs at `stages`.
    pub(super) fn has_hooks(&self, stages: &[LifecycleStage]) -> bool {
        self.input.spec.hooks.iter().any(|hook| stages.contains(&hook.stage))
    }
}

/// What a hook's run measures: its templates, or one metric named after it.
fn measured(hook: &LifecycleHook) -> (RolloutAnalysis, Vec<Metric>) {
    if let Some(analysis) = &hook.analysis {
        return (analysis.clone(), Vec::new());
    }
    let provider = MetricProvider { lambda: hook.lambda.clone(), job: hook.job.clone(), ..Default::default() };
    (RolloutAnalysis::default(), vec![Metric { name: hook.name.clone(), provider, ..Default::default() }])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::api::AnalysisPhase;
    use crate::engine::fixture::{Fixture, STABLE};
    use crate::engine::{Action, Plan, step};

    const LAMBDA: &str = "arn:aws:lambda:us-east-1:123456789012:function:smoke";

    fn hook(name: &str, stage: &str) -> serde_json::Value {
        json!({"name": name, "stage": stage, "lambda": {"functionArn": LAMBDA}})
    }

    /// A canary of 4 behind an ALB reading back `weight`, with these hooks.
    fn canary(hooks: serde_json::Value, weight: i32) -> Fixture {
        let mut fixture = Fixture::with_router(4, json!({"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}), weight);
        fixture.spec.hooks = serde_json::from_value(hooks).expect("hooks");
        fixture.running(STABLE, 4, 4)
    }

    fn update(fixture: &Fixture) -> String {
        crate::engine::revision::of(&fixture.spec.workload)
    }

    fn scaled(plan: &Plan, revision: &str) -> Option<i32> {
        plan.actions.iter().rev().find_map(|a| match a {
            Action::Scale { revision: r, replicas, .. } if r == revision => Some(*replicas),
            _ => None,
        })
    }

    fn weights(plan: &Plan) -> Vec<i32> {
        let weight = |a: &Action| match a {
            Action::SetWeight { canary_weight, .. } => Some(*canary_weight),
            _ => None,
        };
        plan.actions.iter().filter_map(weight).collect()
    }

    fn created(plan: &Plan) -> Vec<(String, Vec<crate::api::Metric>, Vec<crate::api::AnalysisArg>)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::CreateAnalysisRun { name, metrics, builtins, .. } => Some((name.clone(), metrics.clone(), builtins.clone())),
                _ => None,
            })
            .collect()
    }

    fn run_name(fixture: &Fixture, index: usize) -> String {
        format!("web-{}-0-hook-{index}", update(fixture))
    }

    #[test]
    fn nothing_scales_up_before_the_pre_scale_up_hook_passes() {
        let fixture = canary(json!([hook("gate", "PreScaleUp")]), 0);
        let plan = step(fixture.input());
        let runs = created(&plan);
        assert_eq!(runs.len(), 1, "{:?}", plan.actions);
        let (name, metrics, builtins) = &runs[0];
        assert_eq!(*name, run_name(&fixture, 0));
        assert_eq!(metrics[0].name, "gate");
        assert_eq!(metrics[0].provider.lambda.as_ref().map(|l| l.function_arn.as_str()), Some(LAMBDA));
        let arg = |n: &str| builtins.iter().find(|a| a.name == n).and_then(|a| a.value.clone());
        assert_eq!(arg("sluice.lifecycleStage").as_deref(), Some("PreScaleUp"));
        assert_eq!(arg("sluice.hook").as_deref(), Some("gate"));
        assert_eq!(scaled(&plan, &update(&fixture)), None, "no canary replica: {:?}", plan.actions);
        assert!(plan.status.message.as_deref().unwrap_or_default().contains("hook gate (PreScaleUp)"), "{:?}", plan.status.message);

        let passed = canary(json!([hook("gate", "PreScaleUp")]), 0).run(&run_name(&fixture, 0), AnalysisPhase::Successful);
        let plan = step(passed.input());
        assert_eq!(scaled(&plan, &update(&fixture)), Some(1), "up once it passed: {:?}", plan.actions);
    }

    #[test]
    fn hooks_before_traffic_run_once_the_canary_is_up_and_hold_its_weight_until_they_pass() {
        let hooks = json!([hook("smoke", "PostScaleUp"), hook("shift", "ProductionTrafficShift")]);
        let fixture = canary(hooks.clone(), 0);
        let update = update(&fixture);
        let plan = step(fixture.input());
        assert!(created(&plan).is_empty(), "the canary is not up yet: {:?}", plan.actions);
        assert_eq!(scaled(&plan, &update), Some(1));
        assert!(weights(&plan).iter().all(|w| *w == 0), "{:?}", plan.actions);

        let up = canary(hooks.clone(), 0).running(&update, 1, 1);
        let plan = step(up.input());
        let runs = created(&plan);
        assert_eq!(runs.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), [run_name(&up, 0)], "stage order: PostScaleUp first");
        assert!(weights(&plan).iter().all(|w| *w == 0), "no weight while it runs: {:?}", plan.actions);

        let first_passed = canary(hooks.clone(), 0).running(&update, 1, 1).run(&run_name(&up, 0), AnalysisPhase::Successful);
        let plan = step(first_passed.input());
        assert_eq!(created(&plan).iter().map(|r| r.0.clone()).collect::<Vec<_>>(), [run_name(&up, 1)]);
        assert!(weights(&plan).iter().all(|w| *w == 0));

        let both = canary(hooks.clone(), 0)
            .running(&update, 1, 1)
            .run(&run_name(&up, 0), AnalysisPhase::Successful)
            .run(&run_name(&up, 1), AnalysisPhase::Successful);
        let plan = step(both.input());
        assert_eq!(weights(&plan), [25], "weight moves once both passed: {:?}", plan.actions);
    }

    #[test]
    fn a_promote_that_skips_the_first_weight_step_does_not_skip_the_hooks_before_traffic() {
        let hooks = json!([hook("smoke", "PostScaleUp")]);
        let fixture = canary(hooks.clone(), 0);
        let update = update(&fixture);
        let mut promoted = canary(hooks, 0).running(&update, 1, 1).run(&run_name(&fixture, 0), AnalysisPhase::Running);
        promoted.commands.promote = Some(crate::api::CommandRequest { id: "p-1".into(), revision: Some(update.clone()), full: false });
        let plan = step(promoted.input());
        assert_eq!(plan.status.current_step_index, Some(1), "the step is skipped");
        assert!(weights(&plan).iter().all(|w| *w == 0), "no production weight while the hook runs: {:?}", plan.actions);
        assert!(plan.status.message.as_deref().unwrap_or_default().contains("hook smoke (PostScaleUp)"), "{:?}", plan.status.message);
    }

    #[test]
    fn a_failed_hook_aborts_naming_it_and_traffic_stays_on_stable() {
        let hooks = json!([hook("smoke", "PostScaleUp")]);
        let fixture = canary(hooks.clone(), 0);
        let update = update(&fixture);
        let failed = canary(hooks, 0).running(&update, 1, 1).run(&run_name(&fixture, 0), AnalysisPhase::Failed);
        let plan = step(failed.input());
        assert!(plan.status.abort, "{:?}", plan.status);
        let message = plan.status.message.clone().unwrap_or_default();
        assert!(message.contains("hook smoke (PostScaleUp) failed"), "{message}");
        assert!(plan.events.iter().any(|e| e.message.contains("hook smoke (PostScaleUp) failed")), "{:?}", plan.events);
        assert!(weights(&plan).iter().all(|w| *w == 0));
    }

    #[test]
    fn the_canary_becomes_stable_only_after_its_post_promotion_hook() {
        let hooks = json!([hook("verify", "PostPromotion")]);
        let mut fixture = canary(hooks, 100);
        let update = update(&fixture);
        fixture = fixture.running(&update, 4, 4);
        fixture.status.update_revision = Some(update.clone());
        fixture.status.current_step_index = Some(2);
        fixture.status.canary_weight = 100;
        let plan = step(fixture.input());
        assert_eq!(created(&plan).iter().map(|r| r.0.clone()).collect::<Vec<_>>(), [run_name(&fixture, 0)]);
        assert_ne!(plan.status.stable_revision.as_deref(), Some(update.as_str()), "not stable while its hook runs");
        let passed = {
            let mut f = fixture;
            f.observed.analysis_runs.push(crate::engine::AnalysisRunObservation {
                name: run_name(&f, 0),
                phase: AnalysisPhase::Successful,
                message: None,
            });
            f
        };
        let plan = step(passed.input());
        assert_eq!(plan.status.stable_revision.as_deref(), Some(update.as_str()), "{:?}", plan.status.message);
    }
}
