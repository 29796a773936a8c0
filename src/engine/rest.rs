//! The spec asks for the stable revision: hold it at full size, traffic on it, others retired.

use super::EventReason;
use super::ServiceRole;
use super::context::Pass;
use crate::api::{RolloutPhase, StrategyKind};

pub(super) fn settle(pass: &mut Pass<'_>) {
    let stable = pass.stable.clone();
    let n = pass.replicas;
    let status = &mut pass.status;
    status.abort = false;
    status.aborted_at = None;
    status.aborted_from_weight = None;
    status.abort_reason = None;
    status.pause_conditions.clear();
    status.promote_full = false;
    status.fast_tracked = false;
    status.promoted = false;
    status.preview_approved = false;
    status.preview_ready_at = None;
    status.switched = false;
    status.current_step_index = match pass.strategy {
        Some(StrategyKind::Canary(canary)) => Some(canary.steps.len() as i32),
        _ => None,
    };
    status.canary_weight = 0;

    pass.scale(&stable, n + pass.restart_surge());
    pass.point_service(ServiceRole::Stable, &stable);
    let traffic_home = if pass.has_router() { pass.steer(0, false) } else { pass.ready(&stable) >= n };
    if traffic_home {
        pass.point_service(ServiceRole::Canary, &stable);
    }
    let others = pass.others();
    pass.retire(&others, traffic_home);
    pass.terminate_runs_except(&[]);

    let ready = pass.ready(&stable);
    if ready >= n && traffic_home {
        let mut message = format!("revision {stable} is stable: {ready}/{n} ready");
        if !others.is_empty() {
            message.push_str(&format!("; retiring {}", others.join(", ")));
        }
        if pass.input.status.phase != Some(RolloutPhase::Healthy) {
            pass.event(EventReason::Completed, message.clone());
        }
        pass.outcome(RolloutPhase::Healthy, message);
    } else if ready < n {
        pass.wait(format!("waiting for stable revision {stable}: {ready}/{n} ready"));
    } else if pass.message.is_empty() {
        pass.wait(format!("moving all traffic to stable revision {stable}"));
    }
    // Pods are replaced only once the stable revision alone serves (without a router it does
    // once no other revision runs, whatever its own pods' readiness).
    if others.is_empty() && (traffic_home || !pass.has_router()) {
        pass.restart_pods();
    }
}
