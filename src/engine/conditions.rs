//! Status conditions, following the Kubernetes API conventions: a condition's
//! `lastTransitionTime` moves only when its status does.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{RolloutPhase, RolloutStatus};

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const PAUSED: &str = "Paused";
pub const COMPLETED: &str = "Completed";
pub const HEALTHY: &str = "Healthy";
pub const INVALID_SPEC: &str = "InvalidSpec";
/// An update waits because the rollout asks for 0 replicas while a router splits traffic: no
/// revision could take the weight.
pub const SCALED_TO_ZERO: &str = "ScaledToZero";
/// The weights or the forward action were changed outside Sluice: True from the pass that reads
/// it until the planned weight is read back (see `drift`).
pub const TRAFFIC_DRIFT: &str = "TrafficDrift";
/// Passes keep failing (an API that throttles or errors); cleared by the next pass that succeeds.
pub const RECONCILE_ERROR: &str = "ReconcileError";

pub fn set(conditions: &mut Vec<Condition>, type_: &str, status: bool, reason: &str, message: &str, now: Timestamp) {
    let status = if status { "True" } else { "False" }.to_string();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = Time(now);
            }
            existing.status = status;
            existing.reason = reason.to_string();
            existing.message = message.to_string();
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: Time(now),
            observed_generation: None,
        }),
    }
}

pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// Derives the standard conditions from the pass's outcome.
pub fn summarize(status: &mut RolloutStatus, phase: RolloutPhase, paused: bool, deadline_exceeded: bool, now: Timestamp) {
    let message = status.message.clone().unwrap_or_default();
    let completed = status.stable_revision.is_some() && status.stable_revision == status.update_revision;
    let (progressing, reason) = match phase {
        _ if deadline_exceeded => (false, "ProgressDeadlineExceeded"),
        _ if status.abort => (false, "RolloutAborted"),
        RolloutPhase::Healthy => (true, "RolloutCompleted"),
        RolloutPhase::Paused => (true, "RolloutPaused"),
        RolloutPhase::Progressing => (true, "RolloutProgressing"),
        RolloutPhase::Degraded => (false, "RolloutDegraded"),
    };
    let generation = status.observed_generation;
    let conditions = &mut status.conditions;
    set(conditions, PROGRESSING, progressing, reason, &message, now);
    let available = status.available_replicas >= status.desired_replicas;
    let available_reason = if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" };
    set(conditions, AVAILABLE, available, available_reason, "", now);
    set(conditions, PAUSED, paused, if paused { "RolloutPaused" } else { "RolloutRunning" }, "", now);
    set(conditions, COMPLETED, completed, if completed { "RolloutCompleted" } else { "RolloutInProgress" }, "", now);
    let healthy = phase == RolloutPhase::Healthy;
    set(conditions, HEALTHY, healthy, if healthy { "RolloutHealthy" } else { "RolloutNotHealthy" }, "", now);
    for condition in conditions.iter_mut() {
        condition.observed_generation = generation;
    }
}
