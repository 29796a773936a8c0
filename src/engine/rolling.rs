//! Rolling update: replace old pods with new ones within maxSurge / maxUnavailable, gated by
//! analysis; a failed analysis rolls back to the stable revision.

use std::time::Duration;

use super::context::{Pass, resolve_count};
use super::gates::Gate;
use super::{AnalysisPurpose, ServiceRole};
use crate::api::{LifecycleStage, RollingStrategy, RolloutPhase};

pub(super) fn progress(pass: &mut Pass<'_>, rolling: &RollingStrategy) {
    if pass.abort_requested {
        pass.abort("aborted by `kubectl sluice abort`");
    }
    if pass.promote_requested == Some(true) && !pass.status.abort {
        pass.status.promote_full = true;
        pass.event(super::EventReason::Promoted, "full promotion requested: all new replicas at once");
        pass.promote_applied(format!("revision {} is promoted in full: every new replica at once", pass.update));
    }
    let mut keep_runs = Vec::new();
    let mut held = false;
    if let Some(analysis) = rolling.analysis.as_ref().filter(|_| !pass.status.abort) {
        match pass.analysis_gate(AnalysisPurpose::Background, analysis, &mut keep_runs) {
            Gate::Open => {}
            Gate::Shut => held = true,
            Gate::Abort(reason) => pass.abort(&reason),
        }
    }
    let n = pass.replicas;
    let (stable, update) = (pass.stable.clone(), pass.update.clone());
    let moving = !pass.status.abort && !held && !pass.input.spec.paused;
    // Before the first new pod, then once every pod is new: replicas are the traffic here.
    let stages: &[LifecycleStage] = if pass.ready(&update) >= n && pass.others().is_empty() && pass.current(&stable) == 0 {
        &LifecycleStage::ALL[1..]
    } else {
        &[LifecycleStage::PreScaleUp]
    };
    let hooks = if moving { pass.hooks_gate(stages, &mut keep_runs) } else { Gate::Open };
    if let Gate::Abort(reason) = &hooks {
        pass.abort(reason);
    }
    if pass.status.abort {
        return pass.roll_back(Some(Duration::ZERO));
    }
    pass.terminate_runs_except(&keep_runs);
    if held {
        return;
    }
    if pass.input.spec.paused {
        return pass.outcome(RolloutPhase::Paused, "paused by spec.paused");
    }
    let hooks_passed = matches!(hooks, Gate::Open);
    if !hooks_passed && stages[0] == LifecycleStage::PreScaleUp {
        // Nothing new is scaled up before its hooks pass.
        return pass.scale(&stable, n.max(pass.current(&stable)));
    }
    let mut surge = resolve_count(rolling.max_surge.as_ref(), n, 25, true);
    let unavailable = resolve_count(rolling.max_unavailable.as_ref(), n, 25, false);
    if surge == 0 && unavailable == 0 {
        surge = 1;
    }
    // Superseded revisions go first, the stable last.
    let mut old = pass.others();
    old.push(stable.clone());
    let old_total: i32 = old.iter().map(|r| pass.current(r)).sum();
    let old_ready: i32 = old.iter().map(|r| pass.ready(r)).sum();
    let new_now = pass.current(&update);
    let new_ready = pass.ready(&update);

    let new_goal = if pass.status.promote_full { n } else { n.min(new_now + (n + surge - new_now - old_total).max(0)) };
    pass.scale(&update, new_goal);
    let min_available = n - unavailable;
    let mut removable = (new_ready + old_ready - min_available).max(0).min(old_total);
    for revision in &old {
        let current = pass.current(revision);
        let take = removable.min(current);
        if take > 0 {
            pass.scale(revision, current - take);
            removable -= take;
        }
    }
    pass.point_service(ServiceRole::Canary, &update);
    if new_ready >= n && old_total == 0 {
        if hooks_passed {
            pass.mark_stable(Duration::ZERO);
        }
        return;
    }
    pass.wait(format!("rolling update to revision {update}: {new_ready}/{n} new ready, {old_total} old replicas left"));
}
