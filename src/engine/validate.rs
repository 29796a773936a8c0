//! Checks the API server cannot make: a spec that passes its schema but cannot be run.

use super::MAX_REPLICAS;
use crate::api::{RolloutAnalysis, RolloutSpec};

/// The largest `maxSurge` / `maxUnavailable` percentage, as the CRD bounds it.
const MAX_PERCENT: u32 = 9999;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

fn invalid(message: impl Into<String>) -> Result<(), InvalidSpec> {
    Err(InvalidSpec(message.into()))
}

pub fn validate(spec: &RolloutSpec) -> Result<(), InvalidSpec> {
    let workload = &spec.workload;
    if workload.kubernetes.is_some() == workload.ecs.is_some() {
        return invalid("set exactly one of workload.kubernetes or workload.ecs");
    }
    if workload.replicas() < 0 {
        return invalid("replicas cannot be negative");
    }
    if workload.replicas() > MAX_REPLICAS {
        return invalid(format!("replicas {} is more than {MAX_REPLICAS}, the most Sluice runs", workload.replicas()));
    }
    if let Some(kubernetes) = &workload.kubernetes {
        pods(kubernetes)?;
    }
    let strategy = &spec.strategy;
    let strategies = [strategy.canary.is_some(), strategy.blue_green.is_some(), strategy.rolling.is_some()];
    if strategies.iter().filter(|s| **s).count() != 1 {
        return invalid("set exactly one of strategy.canary, strategy.blueGreen or strategy.rolling");
    }
    if spec.traffic.as_ref().is_some_and(|t| t.alb.is_none()) {
        return invalid("spec.traffic names no router: set traffic.alb, or remove spec.traffic to split traffic by replica ratio");
    }
    if workload.ecs.is_some() && spec.traffic.as_ref().and_then(|t| t.alb.as_ref()).is_none() {
        return invalid("an ECS workload needs spec.traffic.alb");
    }
    if strategy.rolling.is_some() && spec.traffic.is_some() {
        return invalid("a rolling update splits traffic by replica ratio: remove spec.traffic");
    }
    if let Some(canary) = &strategy.canary {
        for (index, step) in canary.steps.iter().enumerate() {
            let kinds = [step.set_weight.is_some(), step.pause.is_some(), step.analysis.is_some(), step.set_canary_scale.is_some()];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return invalid(format!("step {index} must set exactly one of setWeight, pause, analysis or setCanaryScale"));
            }
            if let Some(weight) = step.set_weight
                && !(0..=100).contains(&weight)
            {
                return invalid(format!("step {index}: setWeight {weight} is not a percentage from 0 to 100"));
            }
            if let Some(duration) = step.pause.as_ref().and_then(|p| p.duration.as_ref()) {
                duration.to_duration().map_err(|e| InvalidSpec(format!("step {index}: {e}")))?;
            }
            if let Some(analysis) = &step.analysis {
                analysis_refs(analysis, &format!("step {index}"))?;
            }
            if let Some(scale) = &step.set_canary_scale
                && scale.weight.is_some_and(|w| !(0..=100).contains(&w))
            {
                return invalid(format!("step {index}: setCanaryScale.weight is not a percentage from 0 to 100"));
            }
            if let Some(replicas) = step.set_canary_scale.as_ref().and_then(|s| s.replicas)
                && !(0..=MAX_REPLICAS).contains(&replicas)
            {
                return invalid(format!("step {index}: setCanaryScale.replicas {replicas} is not a count from 0 to {MAX_REPLICAS}"));
            }
        }
        if let Some(analysis) = &canary.analysis {
            analysis_refs(analysis, "canary.analysis")?;
        }
    }
    if let Some(analysis) = strategy.rolling.as_ref().and_then(|r| r.analysis.as_ref()) {
        analysis_refs(analysis, "rolling.analysis")?;
    }
    let counts = [
        (strategy.canary.as_ref().and_then(|c| c.max_surge.as_ref()), "canary.maxSurge"),
        (strategy.canary.as_ref().and_then(|c| c.max_unavailable.as_ref()), "canary.maxUnavailable"),
        (strategy.rolling.as_ref().and_then(|r| r.max_surge.as_ref()), "rolling.maxSurge"),
        (strategy.rolling.as_ref().and_then(|r| r.max_unavailable.as_ref()), "rolling.maxUnavailable"),
    ];
    for (value, place) in counts {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        match value {
            Some(IntOrString::Int(count)) if *count < 0 => return invalid(format!("{place} cannot be negative")),
            Some(IntOrString::Int(count)) if *count > MAX_REPLICAS => {
                return invalid(format!("{place} {count} is more than {MAX_REPLICAS}, the most Sluice runs"));
            }
            Some(IntOrString::String(text)) if text.strip_suffix('%').is_none_or(|n| n.parse::<u32>().is_err()) => {
                return invalid(format!("{place} `{text}` is neither a count nor a percentage such as 25%"));
            }
            Some(IntOrString::String(text)) if text.strip_suffix('%').is_some_and(|n| n.parse::<u32>().is_ok_and(|p| p > MAX_PERCENT)) => {
                return invalid(format!("{place} `{text}` is more than {MAX_PERCENT}%"));
            }
            _ => {}
        }
    }
    if let Some(blue_green) = &strategy.blue_green {
        if let Some(count) = blue_green.preview_replica_count.filter(|c| !(1..=MAX_REPLICAS).contains(c)) {
            return invalid(format!("blueGreen.previewReplicaCount {count} is not a count from 1 to {MAX_REPLICAS}"));
        }
        for (analysis, place) in
            [(&blue_green.pre_promotion_analysis, "prePromotionAnalysis"), (&blue_green.post_promotion_analysis, "postPromotionAnalysis")]
        {
            if let Some(analysis) = analysis {
                analysis_refs(analysis, place)?;
            }
        }
    }
    Ok(())
}

/// The longest Rollout name: it becomes a label value on every ReplicaSet and pod (63 at most),
/// and each ReplicaSet's name is the Rollout's plus `-` and the revision.
pub const MAX_NAME: usize = 63;

/// A name Sluice can label its ReplicaSets and pods with.
pub fn validate_name(name: &str) -> Result<(), InvalidSpec> {
    if name.len() > MAX_NAME {
        return invalid(format!("the Rollout's name is {} characters long; use at most {MAX_NAME} (it labels every pod)", name.len()));
    }
    Ok(())
}

/// What the API server accepts in a Rollout but would refuse in the ReplicaSets made from it.
fn pods(kubernetes: &crate::api::KubernetesWorkload) -> Result<(), InvalidSpec> {
    let selector = kubernetes.selector.match_labels.clone().unwrap_or_default();
    let labels = kubernetes.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    for (key, value) in &selector {
        if labels.get(key) != Some(value) {
            return invalid(format!(
                "workload.kubernetes.selector matches {key}={value}, but the template's labels do not have it: add it to template.metadata.labels"
            ));
        }
    }
    let containers = kubernetes.template.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    for container in containers {
        if container.image.as_deref().is_none_or(|image| image.trim().is_empty()) {
            return invalid(format!("container {} has no image: set workload.kubernetes.template.spec.containers[].image", container.name));
        }
    }
    Ok(())
}

fn analysis_refs(analysis: &RolloutAnalysis, place: &str) -> Result<(), InvalidSpec> {
    if analysis.templates.is_empty() {
        return invalid(format!("{place}: name at least one analysis template"));
    }
    if analysis.templates.iter().any(|t| t.template_name.is_empty()) {
        return invalid(format!("{place}: an analysis template reference has an empty templateName"));
    }
    Ok(())
}
