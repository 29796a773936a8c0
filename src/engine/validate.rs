//! Checks the API server cannot make: a spec that passes its schema but cannot be run.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::MAX_REPLICAS;
use crate::api::{CanaryScale, NotExactlyOne, RolloutAnalysis, RolloutSpec, StepKind, StrategyKind, WorkloadKind};

/// The largest `maxSurge` / `maxUnavailable` percentage, as the CRD bounds it.
const MAX_PERCENT: u32 = 9999;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

fn invalid<T>(message: impl Into<String>) -> Result<T, InvalidSpec> {
    Err(InvalidSpec(message.into()))
}

/// A spec the engine can run, its unions parsed: what the strategies match on.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSpec<'a> {
    pub workload: WorkloadKind<'a>,
    pub strategy: StrategyKind<'a>,
    /// The canary's steps; empty for the other strategies.
    pub steps: Vec<StepKind<'a>>,
}

/// Parses the spec's unions and checks what the schema cannot: validation is this parse.
pub fn validate(spec: &RolloutSpec) -> Result<ValidSpec<'_>, InvalidSpec> {
    let not_one = |e: NotExactlyOne| InvalidSpec(e.to_string());
    let workload = spec.workload.kind().map_err(not_one)?;
    let replicas = spec.workload.replicas();
    if replicas < 0 {
        return invalid("replicas cannot be negative");
    }
    if replicas > MAX_REPLICAS {
        return invalid(format!("replicas {replicas} is more than {MAX_REPLICAS}, the most Sluice runs"));
    }
    if let WorkloadKind::Kubernetes(kubernetes) = workload {
        pods(kubernetes)?;
    }
    let strategy = spec.strategy.kind().map_err(not_one)?;
    let alb = spec.traffic.as_ref().and_then(|t| t.alb.as_ref());
    if spec.traffic.is_some() && alb.is_none() {
        return invalid("spec.traffic names no router: set traffic.alb, or remove spec.traffic to split traffic by replica ratio");
    }
    if matches!(workload, WorkloadKind::Ecs(_)) && alb.is_none() {
        return invalid("an ECS workload needs spec.traffic.alb");
    }
    if let Some(alb) = alb {
        ingresses(alb, &workload, &strategy)?;
    }
    let mut steps = Vec::new();
    match strategy {
        StrategyKind::Canary(canary) => {
            for (index, step) in canary.steps.iter().enumerate() {
                let kind = step.kind().map_err(|e| InvalidSpec(format!("step {index}: {e}")))?;
                check_step(&kind, index)?;
                if matches!(kind, StepKind::SetHeaderRoute(_)) && alb.is_none_or(|a| a.through_ingresses()) {
                    return invalid(format!(
                        "step {index}: setHeaderRoute needs spec.traffic.alb with a listenerArn or ruleArn: a header route is a \
                         listener rule Sluice makes, and through Ingresses the rules are the AWS Load Balancer Controller's"
                    ));
                }
                steps.push(kind);
            }
            if let Some(analysis) = &canary.analysis {
                analysis_refs(analysis, "canary.analysis")?;
            }
            count_or_percent(canary.max_surge.as_ref(), "canary.maxSurge")?;
            count_or_percent(canary.max_unavailable.as_ref(), "canary.maxUnavailable")?;
        }
        StrategyKind::Rolling(rolling) => {
            if spec.traffic.is_some() {
                return invalid("a rolling update splits traffic by replica ratio: remove spec.traffic");
            }
            if let Some(analysis) = &rolling.analysis {
                analysis_refs(analysis, "rolling.analysis")?;
            }
            count_or_percent(rolling.max_surge.as_ref(), "rolling.maxSurge")?;
            count_or_percent(rolling.max_unavailable.as_ref(), "rolling.maxUnavailable")?;
        }
        StrategyKind::BlueGreen(blue_green) => {
            if let Some(count) = blue_green.preview_replica_count.filter(|c| !(1..=MAX_REPLICAS).contains(c)) {
                return invalid(format!("blueGreen.previewReplicaCount {count} is not a count from 1 to {MAX_REPLICAS}"));
            }
            for (analysis, place) in [
                (&blue_green.pre_promotion_analysis, "prePromotionAnalysis"),
                (&blue_green.post_promotion_analysis, "postPromotionAnalysis"),
            ] {
                if let Some(analysis) = analysis {
                    analysis_refs(analysis, place)?;
                }
            }
        }
    }
    Ok(ValidSpec { workload, strategy, steps })
}

fn check_step(step: &StepKind<'_>, index: usize) -> Result<(), InvalidSpec> {
    match step {
        StepKind::SetWeight(weight) if !(0..=100).contains(weight) => {
            invalid(format!("step {index}: setWeight {weight} is not a percentage from 0 to 100"))
        }
        StepKind::Pause(Some(duration)) => duration.to_duration().map(drop).map_err(|e| InvalidSpec(format!("step {index}: {e}"))),
        StepKind::Analysis(analysis) => analysis_refs(analysis, &format!("step {index}")),
        StepKind::SetCanaryScale(CanaryScale::Weight(weight)) if !(0..=100).contains(weight) => {
            invalid(format!("step {index}: setCanaryScale.weight is not a percentage from 0 to 100"))
        }
        StepKind::SetCanaryScale(CanaryScale::Replicas(replicas)) if !(0..=MAX_REPLICAS).contains(replicas) => {
            invalid(format!("step {index}: setCanaryScale.replicas {replicas} is not a count from 0 to {MAX_REPLICAS}"))
        }
        _ => Ok(()),
    }
}

/// `maxSurge` / `maxUnavailable`: a count or a percentage within the CRD's bounds.
fn count_or_percent(value: Option<&IntOrString>, place: &str) -> Result<(), InvalidSpec> {
    let percent = |text: &str| text.strip_suffix('%').and_then(|n| n.parse::<u32>().ok());
    match value {
        Some(IntOrString::Int(count)) if *count < 0 => invalid(format!("{place} cannot be negative")),
        Some(IntOrString::Int(count)) if *count > MAX_REPLICAS => {
            invalid(format!("{place} {count} is more than {MAX_REPLICAS}, the most Sluice runs"))
        }
        Some(IntOrString::String(text)) => match percent(text) {
            None => invalid(format!("{place} `{text}` is neither a count nor a percentage such as 25%")),
            Some(p) if p > MAX_PERCENT => invalid(format!("{place} `{text}` is more than {MAX_PERCENT}%")),
            Some(_) => Ok(()),
        },
        _ => Ok(()),
    }
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

/// `traffic.alb` through Ingresses: a Kubernetes workload with both role Services, which the
/// Ingress action forwards to; named target groups otherwise.
fn ingresses(alb: &crate::api::AlbTraffic, workload: &WorkloadKind<'_>, strategy: &StrategyKind<'_>) -> Result<(), InvalidSpec> {
    if !alb.through_ingresses() {
        if alb.stable_target_group_arn.is_empty() || alb.canary_target_group_arn.is_empty() {
            return invalid("traffic.alb needs stableTargetGroupArn and canaryTargetGroupArn, or ingresses");
        }
        return Ok(());
    }
    if matches!(workload, WorkloadKind::Ecs(_)) {
        return invalid(
            "traffic.alb.ingresses is for Kubernetes workloads: ECS task sets register with the target groups the Rollout names \
             (stableTargetGroupArn, canaryTargetGroupArn)",
        );
    }
    let services = match strategy {
        StrategyKind::Canary(canary) => canary.stable_service.is_some() && canary.canary_service.is_some(),
        StrategyKind::BlueGreen(blue_green) => blue_green.preview_service.is_some(),
        StrategyKind::Rolling(_) => true,
    };
    if !services {
        return invalid(
            "traffic.alb.ingresses weighs the stable Service against the canary one: set canary.stableService and canaryService \
             (blueGreen: previewService)",
        );
    }
    Ok(())
}
