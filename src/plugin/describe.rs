//! Short words for a rollout's parts, shared by `list`, `get` and `status`.

use kube::ResourceExt;

use crate::api::{CanaryStep, Rollout, RolloutAnalysis, RolloutStatus};

pub fn qualified_name(rollout: &Rollout) -> String {
    format!("{}/{}", rollout.namespace().unwrap_or_default(), rollout.name_any())
}

pub fn status(rollout: &Rollout) -> RolloutStatus {
    rollout.status.clone().unwrap_or_default()
}

pub fn strategy_name(rollout: &Rollout) -> &'static str {
    let strategy = &rollout.spec.strategy;
    if strategy.canary.is_some() {
        "canary"
    } else if strategy.blue_green.is_some() {
        "blueGreen"
    } else {
        "rolling"
    }
}

pub fn phase(rollout: &Rollout) -> String {
    status(rollout).phase.map_or_else(|| "-".to_string(), |p| p.to_string())
}

/// `2/5` for a canary on its third of five steps; `-` for other strategies.
pub fn step(rollout: &Rollout) -> String {
    match (&rollout.spec.strategy.canary, status(rollout).current_step_index) {
        (Some(canary), Some(index)) => format!("{index}/{}", canary.steps.len()),
        (Some(canary), None) => format!("-/{}", canary.steps.len()),
        (None, _) => "-".to_string(),
    }
}

/// Desired and verified canary weight, `20/20`; `-` where the router has not said.
pub fn weights(status: &RolloutStatus) -> String {
    let verified = status.verified_weight.map_or_else(|| "-".to_string(), |w| w.to_string());
    format!("{}/{verified}", status.canary_weight)
}

pub fn revision(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

pub fn canary_step(step: &CanaryStep) -> String {
    if let Some(weight) = step.set_weight {
        format!("setWeight {weight}")
    } else if let Some(pause) = &step.pause {
        pause.duration.as_ref().map_or_else(|| "pause until promoted".to_string(), |d| format!("pause {}", d.0))
    } else if let Some(analysis) = &step.analysis {
        format!("analysis {}", templates(analysis))
    } else if let Some(scale) = &step.set_canary_scale {
        match (scale.replicas, scale.weight) {
            (Some(replicas), _) => format!("setCanaryScale {replicas} replicas"),
            (None, Some(weight)) => format!("setCanaryScale {weight}%"),
            (None, None) => "setCanaryScale matchTrafficWeight".to_string(),
        }
    } else {
        "(empty step)".to_string()
    }
}

pub fn templates(analysis: &RolloutAnalysis) -> String {
    analysis.templates.iter().map(|t| t.template_name.as_str()).collect::<Vec<_>>().join(", ")
}
