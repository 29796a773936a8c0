//! Blue/green: the candidate runs beside stable behind the preview Service (and test listener),
//! is analysed, then takes all traffic at once; post-promotion analysis can still send it back.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::context::{Pass, later};
use super::gates::Gate;
use super::{AnalysisPurpose, EventReason, ServiceRole};
use crate::api::{BlueGreenStrategy, LifecycleStage, PauseReason, RolloutPhase};

const DEFAULT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(30);

pub(super) fn progress(pass: &mut Pass<'_>, blue_green: &BlueGreenStrategy) {
    let delay = blue_green.scale_down_delay_seconds.map_or(DEFAULT_SCALE_DOWN_DELAY, |s| Duration::from_secs(s.max(0) as u64));
    if pass.abort_requested {
        pass.abort("aborted by `kubectl sluice abort`");
    }
    if pass.status.abort {
        return pass.roll_back(Some(delay));
    }
    match pass.promote_requested {
        Some(true) if !pass.status.promote_full => {
            pass.status.promote_full = true;
            pass.status.pause_conditions.clear();
            pass.event(EventReason::Promoted, "full promotion requested: switching and skipping every remaining gate and analysis");
            pass.promote_applied(format!("revision {} is promoted in full: every remaining gate and analysis is skipped", pass.update));
        }
        // Before the preview, a promote is the approval it waits for.
        Some(false) if awaits_preview_approval(pass, blue_green) => {
            pass.status.preview_approved = true;
            pass.status.pause_conditions.clear();
            pass.event(EventReason::Resumed, format!("preview of revision {} approved: scaling it up", pass.update));
            pass.promote_applied(format!("revision {} is scaled up for its preview", pass.update));
        }
        // After the switch, a promote completes the gate in force: post-promotion analysis.
        Some(false) if pass.status.switched && !pass.status.promote_full => {
            pass.status.promote_full = true;
            pass.status.pause_conditions.clear();
            pass.event(EventReason::Promoted, "promotion requested: post-promotion analysis skipped");
            pass.promote_applied(format!("revision {} takes production without its post-promotion analysis", pass.update));
        }
        Some(false) if !pass.status.promoted && !pass.status.promote_full => {
            pass.status.promoted = true;
            pass.status.pause_conditions.clear();
            pass.event(
                EventReason::Promoted,
                "promotion requested: switching without waiting for the remaining gates; post-promotion analysis still runs",
            );
            pass.promote_applied(format!("revision {} takes production now; its post-promotion analysis still runs", pass.update));
        }
        _ => {}
    }
    let n = pass.replicas;
    let (stable, update) = (pass.stable.clone(), pass.update.clone());
    pass.scale(&stable, n);
    pass.point_service(ServiceRole::Canary, &update);
    let mut keep_runs = Vec::new();

    if !pass.status.switched {
        let superseded = pass.others();
        if !superseded.is_empty() {
            // A superseded candidate may hold production: bring it home and retire it first.
            pass.point_service(ServiceRole::Stable, &stable);
            let production_home = !pass.has_router() || pass.steer(0, false);
            pass.retire(&superseded, production_home);
            return pass.wait(format!("retiring superseded revision {} before revision {update} is previewed", superseded.join(", ")));
        }
        let preview = blue_green.preview_replica_count.unwrap_or(n).min(n);
        let promoting = pass.status.promote_full || pass.status.promoted;
        if !promoting && awaits_preview_approval(pass, blue_green) {
            pass.pause_started(PauseReason::PreviewApproval);
            let name = pass.input.name;
            return pass.outcome(
                RolloutPhase::Paused,
                format!("revision {update} waits for approval before its preview; run `kubectl sluice promote {name}` to scale it up"),
            );
        }
        if pass.input.spec.paused && !promoting {
            pass.scale(&update, preview.max(pass.current(&update)));
            return pass.outcome(RolloutPhase::Paused, "paused by spec.paused before promotion");
        }
        let gate = if promoting { Gate::Open } else { preview_gates(pass, blue_green, preview, &mut keep_runs) };
        let gate = match gate {
            Gate::Open => {
                pass.scale(&update, n);
                let ready = pass.ready(&update);
                if ready < n {
                    pass.wait(format!("promoting revision {update}: {ready}/{n} ready before the switch"));
                    Gate::Shut
                } else {
                    pass.hooks_gate(&[LifecycleStage::ProductionTrafficShift], &mut keep_runs)
                }
            }
            other => other,
        };
        pass.terminate_runs_except(&keep_runs);
        match gate {
            Gate::Shut => return,
            Gate::Abort(reason) => {
                pass.abort(&reason);
                return pass.roll_back(Some(delay));
            }
            Gate::Open => {}
        }
        // Behind a router, production moves to the preview group (which holds the new pods)
        // before the active Service does: repointing it first would empty the group with all
        // the weight while the new pods register.
        if pass.has_router() && !pass.steer(100, false) {
            if pass.message.is_empty() {
                pass.wait(format!("switching production traffic to revision {update}"));
            }
            return;
        }
        pass.point_service(ServiceRole::Stable, &update);
        pass.status.switched = true;
        if let Some(name) = keep_runs.first() {
            pass.event(EventReason::AnalysisPassed, format!("analysis run {name} passed"));
        }
        pass.event(EventReason::Promoted, format!("production traffic switched to revision {update}"));
    }

    pass.scale(&update, n);
    pass.point_service(ServiceRole::Stable, &update);
    let skip_analysis = pass.status.promote_full;
    let post = blue_green.post_promotion_analysis.as_ref().filter(|_| !skip_analysis);
    // After the switch: its hook, the post-promotion analysis, then the post-promotion hooks.
    let mut after = pass.hooks_gate(&[LifecycleStage::PostProductionTrafficShift], &mut keep_runs);
    if let (Gate::Open, Some(analysis)) = (&after, post) {
        after = pass.analysis_gate(AnalysisPurpose::PostPromotion, analysis, &mut keep_runs);
    }
    if let Gate::Open = after {
        after = pass.hooks_gate(&[LifecycleStage::PostPromotion], &mut keep_runs);
    }
    match after {
        Gate::Open => {
            if let Some(name) = keep_runs.first() {
                pass.event(EventReason::AnalysisPassed, format!("analysis run {name} passed"));
            }
            pass.terminate_runs_except(&[]);
            pass.mark_stable(delay);
        }
        Gate::Shut => pass.terminate_runs_except(&keep_runs),
        Gate::Abort(reason) => {
            pass.abort(&reason);
            pass.roll_back(Some(delay));
        }
    }
}

/// `approveBeforePreview` is set and no one has approved this revision's preview yet.
fn awaits_preview_approval(pass: &Pass<'_>, blue_green: &BlueGreenStrategy) -> bool {
    blue_green.approve_before_preview == Some(true) && !pass.status.preview_approved && !pass.status.switched
}

/// The preview is ready, analysed and (auto-)approved.
fn preview_gates(pass: &mut Pass<'_>, blue_green: &BlueGreenStrategy, preview: i32, keep_runs: &mut Vec<String>) -> Gate {
    let update = pass.update.clone();
    match pass.hooks_gate(&[LifecycleStage::PreScaleUp], keep_runs) {
        Gate::Open => {}
        other => return other,
    }
    pass.scale(&update, preview.max(pass.current(&update).min(pass.replicas)));
    let ready = pass.ready(&update);
    if ready < preview {
        pass.wait(format!("waiting for preview revision {update}: {ready}/{preview} ready"));
        return Gate::Shut;
    }
    // The preview Service sends test traffic to ready pods: its hooks run once they are up.
    let tested = [LifecycleStage::PostScaleUp, LifecycleStage::TestTrafficShift, LifecycleStage::PostTestTrafficShift];
    match pass.hooks_gate(&tested, keep_runs) {
        Gate::Open => {}
        other => return other,
    }
    let ready_at = pass.status.preview_ready_at.get_or_insert(Time(pass.input.now)).0;
    if let Some(analysis) = &blue_green.pre_promotion_analysis {
        match pass.analysis_gate(AnalysisPurpose::PrePromotion, analysis, keep_runs) {
            Gate::Open => {}
            other => return other,
        }
    }
    let name = pass.input.name;
    if blue_green.auto_promotion_enabled == Some(false) {
        pass.pause_started(PauseReason::BlueGreenPause);
        pass.outcome(
            RolloutPhase::Paused,
            format!("preview revision {update} is ready; run `kubectl sluice promote {name}` to switch traffic to it"),
        );
        return Gate::Shut;
    }
    if let Some(seconds) = blue_green.auto_promotion_seconds {
        let at = later(ready_at, Duration::from_secs(seconds.max(0) as u64));
        if pass.now() < at {
            pass.requeue_at(at);
            pass.outcome(RolloutPhase::Progressing, format!("preview revision {update} is ready; promoting by itself at {at}"));
            return Gate::Shut;
        }
    }
    Gate::Open
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::Action;
    use crate::engine::fixture::{Fixture, STABLE, UPDATE};

    fn switching(weight: i32) -> Fixture {
        let strategy = json!({"blueGreen": {"activeService": "web-active", "previewService": "web-preview"}});
        let mut fixture = Fixture::with_router(2, strategy, weight).running(STABLE, 2, 2).running(UPDATE, 2, 2);
        fixture.observed.services.stable = Some(STABLE.into());
        fixture.observed.services.canary = Some(UPDATE.into());
        fixture.status.promote_full = true;
        fixture
    }

    fn repoints_active(actions: &[Action]) -> bool {
        actions.iter().any(|a| matches!(a, Action::PointService { role: ServiceRole::Stable, revision } if revision == UPDATE))
    }

    #[test]
    fn behind_a_router_the_active_service_moves_only_once_production_weight_is_on_the_preview_group() {
        let fixture = switching(0);
        let mut pass = fixture.pass();
        let strategy = fixture.spec.strategy.blue_green.clone().expect("blue/green");
        progress(&mut pass, &strategy);
        assert!(pass.actions.iter().any(|a| matches!(a, Action::SetWeight { canary_weight: 100, .. })), "{:?}", pass.actions);
        assert!(!repoints_active(&pass.actions), "the active group keeps its pods while it has the weight: {:?}", pass.actions);

        let fixture = switching(100);
        let mut pass = fixture.pass();
        progress(&mut pass, &strategy);
        assert!(repoints_active(&pass.actions), "{:?}", pass.actions);
        assert!(pass.status.switched);
    }
}
