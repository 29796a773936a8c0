//! Short words for a rollout's parts, shared by `list`, `get` and `status`.

use kube::ResourceExt;

use crate::api::{CanaryScale, CanaryStep, Rollout, RolloutAnalysis, RolloutStatus, StepKind, StrategyKind};

pub fn qualified_name(rollout: &Rollout) -> String {
    format!("{}/{}", rollout.namespace().unwrap_or_default(), rollout.name_any())
}

pub fn status(rollout: &Rollout) -> RolloutStatus {
    rollout.status.clone().unwrap_or_default()
}

pub fn strategy_name(rollout: &Rollout) -> &'static str {
    match rollout.spec.strategy.kind() {
        Ok(StrategyKind::Canary(_)) => "canary",
        Ok(StrategyKind::BlueGreen(_)) => "blueGreen",
        Ok(StrategyKind::Rolling(_)) => "rolling",
        Err(_) => "-",
    }
}

pub fn phase(rollout: &Rollout) -> String {
    status(rollout).phase.map_or_else(|| "-".to_string(), |p| p.to_string())
}

/// `2/5` for a canary on its third of five steps; `-` for other strategies.
pub fn step(rollout: &Rollout) -> String {
    match (rollout.spec.strategy.kind(), status(rollout).current_step_index) {
        (Ok(StrategyKind::Canary(canary)), Some(index)) => format!("{index}/{}", canary.steps.len()),
        (Ok(StrategyKind::Canary(canary)), None) => format!("-/{}", canary.steps.len()),
        _ => "-".to_string(),
    }
}

pub fn revision(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

pub fn canary_step(step: &CanaryStep) -> String {
    match step.kind() {
        Ok(StepKind::SetWeight(weight)) => format!("setWeight {weight}"),
        Ok(StepKind::Pause(None)) => "pause until promoted".to_string(),
        Ok(StepKind::Pause(Some(duration))) => format!("pause {}", duration.0),
        Ok(StepKind::Analysis(analysis)) => format!("analysis {}", templates(analysis)),
        Ok(StepKind::SetCanaryScale(CanaryScale::Replicas(replicas))) => format!("setCanaryScale {replicas} replicas"),
        Ok(StepKind::SetCanaryScale(CanaryScale::Weight(weight))) => format!("setCanaryScale {weight}%"),
        Ok(StepKind::SetCanaryScale(CanaryScale::MatchTrafficWeight)) => "setCanaryScale matchTrafficWeight".to_string(),
        Ok(StepKind::SetHeaderRoute(route)) if route.matches.is_empty() => format!("setHeaderRoute {} removed", route.name),
        Ok(StepKind::SetHeaderRoute(route)) => {
            let matches: Vec<String> = route
                .matches
                .iter()
                .map(|m| match (&m.header_value.exact, &m.header_value.prefix) {
                    (Some(exact), _) => format!("{}={exact}", m.header_name),
                    (None, prefix) => format!("{}={}*", m.header_name, prefix.as_deref().unwrap_or_default()),
                })
                .collect();
            format!("setHeaderRoute {} ({})", route.name, matches.join(", "))
        }
        Err(not_one) => format!("(invalid step: {not_one})"),
    }
}

pub fn templates(analysis: &RolloutAnalysis) -> String {
    analysis.templates.iter().map(|t| t.template_name.as_str()).collect::<Vec<_>>().join(", ")
}
