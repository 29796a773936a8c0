//! Canary: the candidate takes traffic step by step (setWeight, pause, analysis, setCanaryScale),
//! then is promoted to stable.

use std::time::Duration;

use super::context::{Pass, later, resolve_count};
use super::gates::Gate;
use super::{AnalysisPurpose, EventReason, ServiceRole, hooks};
use crate::api::{CanaryScale, CanaryStrategy, LifecycleStage, PauseReason, RolloutPhase, SetHeaderRoute, StepKind};

const DEFAULT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(30);

enum StepState {
    Done,
    Waiting,
    Abort(String),
}

pub(super) fn progress(pass: &mut Pass<'_>, canary: &CanaryStrategy, steps: &[StepKind<'_>]) {
    if pass.abort_requested {
        pass.abort("aborted by `kubectl sluice abort`");
    }
    if pass.status.abort {
        return pass.roll_back(abort_delay(canary));
    }
    let mut index = pass.status.current_step_index.unwrap_or(0).clamp(0, steps.len() as i32) as usize;
    let mut keep_runs = Vec::new();
    let mut held = false;
    if let Some(background) = canary.analysis.as_ref().filter(|_| !pass.status.promote_full) {
        match pass.analysis_gate(AnalysisPurpose::Background, background, &mut keep_runs) {
            Gate::Open => {}
            Gate::Shut => held = true,
            Gate::Abort(reason) => {
                pass.abort(&reason);
                return pass.roll_back(abort_delay(canary));
            }
        }
    }
    match pass.promote_requested {
        Some(true) => {
            pass.status.promote_full = true;
            pass.event(EventReason::Promoted, "full promotion requested: skipping the remaining steps");
            pass.promote_applied(format!("revision {} is promoted in full: every remaining step is skipped", pass.update));
        }
        Some(false) if index < steps.len() => {
            pass.status.pause_conditions.clear();
            pass.event(EventReason::StepCompleted, format!("step {index} skipped by `kubectl sluice promote`"));
            pass.promote_applied(format!("revision {}: step {index} ({}) is skipped", pass.update, describe(&steps[index])));
            index += 1;
        }
        _ => {}
    }
    if pass.status.promote_full {
        index = steps.len();
    }

    let draining = pass.others();
    let moving = draining.is_empty() && !pass.input.spec.paused && !held;
    if moving && pass.has_hooks(&[LifecycleStage::PreScaleUp]) {
        match pass.hooks_gate(&[LifecycleStage::PreScaleUp], &mut keep_runs) {
            Gate::Open => {}
            Gate::Shut => {
                // Before scale-up: the canary keeps what it has (nothing, on a fresh revision).
                let stable = pass.stable.clone();
                pass.point_service(ServiceRole::Stable, &stable);
                pass.scale(&stable, pass.replicas);
                pass.status.current_step_index = Some(index as i32);
                return pass.terminate_runs_except(&keep_runs);
            }
            Gate::Abort(reason) => {
                pass.abort(&reason);
                return pass.roll_back(abort_delay(canary));
            }
        }
    }
    while index < steps.len() && moving {
        match step_state(pass, canary, steps, index, &mut keep_runs) {
            StepState::Done => {
                pass.event(EventReason::StepCompleted, format!("step {index} ({}) completed", describe(&steps[index])));
                pass.status.pause_conditions.clear();
                index += 1;
            }
            StepState::Waiting => break,
            StepState::Abort(reason) => {
                pass.status.current_step_index = Some(index as i32);
                pass.abort(&reason);
                return pass.roll_back(abort_delay(canary));
            }
        }
    }
    pass.status.current_step_index = Some(index as i32);
    // Until the hooks before traffic pass, the planned weight stays 0, whatever a promote skipped.
    let before_traffic =
        moving && index >= first_traffic(steps) && pass.status.canary_weight == 0 && pass.has_hooks(&hooks::BEFORE_TRAFFIC);
    let traffic_held = before_traffic && {
        let size = size_before_traffic(pass, steps, index);
        let update = pass.update.clone();
        // The hooks before traffic run once the canary is up.
        pass.ready(&update) < size
            || match pass.hooks_gate(&hooks::BEFORE_TRAFFIC, &mut keep_runs) {
                Gate::Open => false,
                Gate::Shut => true,
                Gate::Abort(reason) => {
                    pass.abort(&reason);
                    return pass.roll_back(abort_delay(canary));
                }
            }
    };

    if !draining.is_empty() {
        drain(pass, steps, index, &draining);
    } else if traffic_held {
        hold_traffic(pass, steps, index);
    } else if index == steps.len() && !pass.input.spec.paused && !held {
        if let Some(reason) = promote(pass, canary, &mut keep_runs) {
            pass.abort(&reason);
            return pass.roll_back(abort_delay(canary));
        }
    } else {
        let message = held.then(|| pass.message.clone());
        apply_goal(pass, canary, steps, index);
        if let Some(message) = message {
            pass.outcome(RolloutPhase::Paused, message);
        } else if pass.input.spec.paused {
            pass.outcome(
                RolloutPhase::Paused,
                format!("paused by spec.paused at step {index}; `kubectl sluice resume {}` continues", pass.input.name),
            );
        }
    }
    if !pass.input.spec.paused {
        // While paused the current step's run keeps measuring; resuming picks its verdict up.
        pass.terminate_runs_except(&keep_runs);
    }
}

/// The step at which production traffic first moves to the canary: its first setWeight above
/// zero, else the promotion (`steps.len()`).
fn first_traffic(steps: &[StepKind<'_>]) -> usize {
    steps.iter().position(|step| matches!(step, StepKind::SetWeight(weight) if *weight > 0)).unwrap_or(steps.len())
}

/// The canary's replicas when production traffic first moves to it at step `index`.
fn size_before_traffic(pass: &Pass<'_>, steps: &[StepKind<'_>], index: usize) -> i32 {
    if index < steps.len() { canary_replicas_at(steps, index, pass.replicas).max(1) } else { pass.replicas }
}

/// The canary is brought up for its first traffic and held there, production traffic staying
/// on stable, until the hooks before traffic have passed. Without a router the replica ratio
/// is the split, so the canary's ready pods take their share as they come up.
fn hold_traffic(pass: &mut Pass<'_>, steps: &[StepKind<'_>], index: usize) {
    let n = pass.replicas;
    let (stable, update) = (pass.stable.clone(), pass.update.clone());
    let size = size_before_traffic(pass, steps, index);
    pass.point_service(ServiceRole::Stable, &stable);
    pass.scale(&stable, n);
    pass.scale(&update, size.max(pass.current(&update).min(n)));
    if !pass.has_router() || pass.observed_weight() == Some(0) {
        pass.point_service(ServiceRole::Canary, &update);
    }
    let ready = pass.ready(&update);
    if ready < size {
        pass.wait(format!("step {index}: waiting for canary revision {update}: {ready}/{size} ready before its hooks"));
    }
}

/// How long an aborted canary keeps its pods; `None` (-1): until a retry or the next revision.
fn abort_delay(canary: &CanaryStrategy) -> Option<Duration> {
    match canary.abort_scale_down_delay_seconds {
        None => Some(DEFAULT_SCALE_DOWN_DELAY),
        Some(seconds) if seconds < 0 => None,
        Some(seconds) => Some(Duration::from_secs(seconds as u64)),
    }
}

fn describe(step: &StepKind<'_>) -> String {
    match step {
        StepKind::SetWeight(weight) => format!("setWeight {weight}"),
        StepKind::Pause(None) => "pause until promoted".into(),
        StepKind::Pause(Some(duration)) => format!("pause {}", duration.0),
        StepKind::Analysis(_) => "analysis".into(),
        StepKind::SetCanaryScale(_) => "setCanaryScale".into(),
        StepKind::SetHeaderRoute(route) if route.matches.is_empty() => format!("setHeaderRoute {} removed", route.name),
        StepKind::SetHeaderRoute(route) => format!("setHeaderRoute {}", route.name),
    }
}

/// The canary weight in force at `index`: the last setWeight at or before it.
fn weight_at(steps: &[StepKind<'_>], index: usize) -> i32 {
    let mut weights = steps.iter().take(index + 1).filter_map(|s| match s {
        StepKind::SetWeight(weight) => Some(*weight),
        _ => None,
    });
    weights.next_back().unwrap_or(0).clamp(0, 100)
}

/// The header routes in force at step `index`: each named route as its last step up to there
/// set it, those a later step removed left out.
pub(super) fn header_routes_at<'a>(steps: &[StepKind<'a>], index: usize) -> Vec<&'a SetHeaderRoute> {
    let mut routes: Vec<&SetHeaderRoute> = Vec::new();
    for step in steps.iter().take(index + 1) {
        if let StepKind::SetHeaderRoute(route) = step {
            routes.retain(|r| r.name != route.name);
            if !route.matches.is_empty() {
                routes.push(route);
            }
        }
    }
    routes
}

/// The last setCanaryScale at or before `index` that sizes the canary by itself.
fn explicit_scale_at(steps: &[StepKind<'_>], index: usize) -> Option<CanaryScale> {
    let mut scales = steps.iter().take(index + 1).filter_map(|s| match s {
        StepKind::SetCanaryScale(scale) => Some(*scale),
        _ => None,
    });
    scales.next_back().filter(|scale| *scale != CanaryScale::MatchTrafficWeight)
}

/// Canary replicas at `index`: the last setCanaryScale, or the traffic weight's share.
fn canary_replicas_at(steps: &[StepKind<'_>], index: usize, replicas: i32) -> i32 {
    let share = |percent: i32| ((i64::from(replicas) * i64::from(percent.clamp(0, 100)) + 99) / 100) as i32;
    match explicit_scale_at(steps, index) {
        Some(CanaryScale::Replicas(count)) => count.clamp(0, replicas),
        Some(CanaryScale::Weight(percent)) => share(percent),
        _ => share(weight_at(steps, index)),
    }
}

/// Without a router, the replica counts `(canary, stable)` whose ratio comes closest to
/// `weight`, as Argo Rollouts sizes them: the stable keeps its pods and canary pods are added
/// within `surge` extra replicas; a weight between 0 and 100 keeps at least one pod of each
/// whenever the replicas and surge allow it.
fn ratio_split(replicas: i32, weight: i32, surge: i32) -> (i32, i32) {
    let (n, weight) = (i64::from(replicas.max(0)), i64::from(weight.clamp(0, 100)));
    if n == 0 || weight == 0 || weight == 100 {
        let canary = if weight == 100 { n } else { 0 };
        return (canary as i32, (n - canary) as i32);
    }
    let surge = i64::from(surge.max(0));
    let room_for_both = n + surge >= 2;
    let mut best: Option<(i64, i64, i64)> = None; // (error in hundredths of a percent, canary, stable)
    for total in n..=n + surge {
        for canary in [(total * weight) / 100, (total * weight + 99) / 100] {
            let stable = total - canary;
            let both = canary >= 1 && stable >= 1;
            if stable > n || canary > n || (!both && room_for_both) {
                continue;
            }
            let error = (canary * 10_000 / total - weight * 100).abs();
            // Ties go to fewer pods: the first total and the smaller canary seen.
            if best.is_none_or(|(e, _, _)| error < e) {
                best = Some((error, canary, stable));
            }
        }
    }
    let (_, canary, stable) = best.unwrap_or((0, 0, n));
    (canary as i32, stable as i32)
}

/// The weight a split of replicas gives the canary, rounded to the nearest percent.
pub fn ratio_weight(canary: i32, stable: i32) -> i32 {
    let total = i64::from(canary) + i64::from(stable);
    if total == 0 { 0 } else { ((i64::from(canary) * 100 + total / 2) / total) as i32 }
}

/// Without a router: `(canary, stable)` replicas at `index` (setCanaryScale, or the weight's
/// closest ratio within maxSurge).
pub fn split_at(canary: &CanaryStrategy, steps: &[StepKind<'_>], index: usize, replicas: i32) -> (i32, i32) {
    if explicit_scale_at(steps, index).is_some() {
        let count = canary_replicas_at(steps, index, replicas);
        (count, replicas - count)
    } else {
        ratio_split(replicas, weight_at(steps, index), ratio_surge(canary, replicas))
    }
}

fn ratio_surge(canary: &CanaryStrategy, replicas: i32) -> i32 {
    resolve_count(canary.max_surge.as_ref(), replicas, 25, true)
}

/// Replicas below the desired count the replica ratio may run with while it moves; a
/// percentage rounds down, as a Deployment's does.
fn ratio_unavailable(canary: &CanaryStrategy, replicas: i32) -> i32 {
    resolve_count(canary.max_unavailable.as_ref(), replicas, 0, false).min(replicas)
}

fn step_state(
    pass: &mut Pass<'_>,
    canary: &CanaryStrategy,
    steps: &[StepKind<'_>],
    index: usize,
    keep_runs: &mut Vec<String>,
) -> StepState {
    let n = pass.replicas;
    let update = pass.update.clone();
    let target = canary_replicas_at(steps, index, n);
    match steps[index] {
        StepKind::SetWeight(weight) => {
            let reached = if pass.has_router() {
                pass.ready(&update) >= target && pass.observed_weight() == Some(weight)
            } else {
                let (canary_goal, stable_goal) = split_at(canary, steps, index, n);
                let stable = pass.stable.clone();
                pass.ready(&update) >= canary_goal && pass.current(&stable) <= stable_goal && pass.ready(&stable) >= stable_goal
            };
            if reached { StepState::Done } else { StepState::Waiting }
        }
        StepKind::SetCanaryScale(_) => {
            if pass.ready(&update) >= target {
                StepState::Done
            } else {
                StepState::Waiting
            }
        }
        // The routes in force at each step are set with the previews, on every pass.
        StepKind::SetHeaderRoute(_) => StepState::Done,
        StepKind::Pause(duration) => pause(pass, index, duration),
        StepKind::Analysis(analysis) => {
            let purpose = AnalysisPurpose::Step(index);
            match pass.analysis_gate(purpose, analysis, keep_runs) {
                Gate::Open => {
                    pass.event(EventReason::AnalysisPassed, format!("analysis run {} passed", pass.run_name(purpose)));
                    StepState::Done
                }
                Gate::Shut => StepState::Waiting,
                Gate::Abort(reason) => StepState::Abort(reason),
            }
        }
    }
}

/// A pause step: done once `duration` has passed, or when promoted without one.
fn pause(pass: &mut Pass<'_>, index: usize, duration: Option<&crate::api::DurationString>) -> StepState {
    let started = pass.pause_started(PauseReason::CanaryPauseStep);
    let name = pass.input.name;
    // Validation parsed the duration already: one that does not parse cannot reach here.
    let Some((written, duration)) = duration.and_then(|d| d.to_duration().ok().map(|parsed| (&d.0, parsed))) else {
        pass.outcome(RolloutPhase::Paused, format!("step {index}: paused until promoted; run `kubectl sluice promote {name}` to continue"));
        return StepState::Waiting;
    };
    let ends = later(started, duration);
    if pass.now() >= ends {
        pass.unpause(PauseReason::CanaryPauseStep);
        return StepState::Done;
    }
    pass.requeue_at(ends);
    pass.outcome(RolloutPhase::Paused, format!("step {index}: paused for {written} until {ends}"));
    StepState::Waiting
}

/// Brings replicas and traffic to what step `index` asks for.
fn apply_goal(pass: &mut Pass<'_>, canary: &CanaryStrategy, steps: &[StepKind<'_>], index: usize) {
    let n = pass.replicas;
    let (stable, update) = (pass.stable.clone(), pass.update.clone());
    let weight = weight_at(steps, index);
    let target = canary_replicas_at(steps, index, n);
    pass.point_service(ServiceRole::Stable, &stable);
    if pass.has_router() {
        pass.scale(&stable, n);
        // Traffic first: the canary shrinks only once the router no longer sends it more.
        let shrink_later = pass.observed_weight().is_none_or(|o| o > weight);
        let mut size = if shrink_later { target.max(pass.current(&update)) } else { target };
        if weight > 0 || pass.observed_weight() != Some(0) {
            // A canary that takes traffic keeps at least one replica, whatever setCanaryScale says.
            size = size.max(1);
        }
        pass.scale(&update, size);
        if pass.observed_weight() == Some(0) {
            pass.point_service(ServiceRole::Canary, &update);
        }
        let ready = pass.ready(&update);
        let toward_canary = pass.observed_weight().is_none_or(|o| weight > o);
        if toward_canary && weight > 0 && ready < size {
            pass.status.canary_weight = weight;
            pass.wait(format!("step {index}: waiting for canary revision {update}: {ready}/{size} ready before weight {weight}"));
        } else if pass.steer(weight, false) && ready < size {
            pass.wait(format!("step {index}: waiting for canary revision {update}: {ready}/{size} ready"));
        }
    } else {
        let (canary_goal, stable_goal) = split_at(canary, steps, index, n);
        // The weight the replica ratio reaches, which few replicas may hold away from the step's.
        pass.status.canary_weight = ratio_weight(canary_goal, stable_goal);
        pass.point_service(ServiceRole::Canary, &update);
        scale_by_ratio(pass, canary, canary_goal, stable_goal);
    }
}

/// Without a router the replica ratio is the traffic split: the stable shrinks only as canary
/// pods become ready, so capacity never drops below the desired count less `maxUnavailable`
/// (0 unless set: Argo Rollouts' default is 25%). Without surge the canary grows into the room
/// the unavailable allowance frees.
fn scale_by_ratio(pass: &mut Pass<'_>, canary: &CanaryStrategy, target: i32, stable_target: i32) {
    let n = pass.replicas;
    let (stable, update) = (pass.stable.clone(), pass.update.clone());
    let unavailable = ratio_unavailable(canary, n);
    // Some room to move is needed: with neither surge nor unavailability nothing could change.
    let surge = if unavailable > 0 { ratio_surge(canary, n) } else { ratio_surge(canary, n).max(1) };
    let stable_now = pass.current(&stable);
    let canary_now = pass.current(&update);
    let ready = pass.ready(&update);
    let stable_goal = (n - unavailable - ready.min(target)).max(stable_target).max(0);
    pass.scale(&stable, stable_goal);
    let canary_goal = if target >= canary_now {
        target.min((n + surge - stable_now).max(canary_now))
    } else if pass.ready(&stable) >= stable_target {
        target
    } else {
        // Shrinking the canary waits until the stable holds the capacity again.
        canary_now
    };
    pass.scale(&update, canary_goal);
    if ready < target || stable_now > stable_goal {
        pass.wait(format!(
            "waiting for canary revision {update}: {ready}/{target} ready; stable {stable} at {stable_now}, going to {stable_goal}"
        ));
    }
}

/// A superseded candidate still runs: traffic leaves it before it is scaled down.
fn drain(pass: &mut Pass<'_>, steps: &[StepKind<'_>], index: usize, draining: &[String]) {
    let n = pass.replicas;
    let (stable, update) = (pass.stable.clone(), pass.update.clone());
    pass.scale(&stable, n);
    pass.point_service(ServiceRole::Stable, &stable);
    let traffic_off = if pass.has_router() {
        pass.scale(&update, canary_replicas_at(steps, index, n));
        pass.steer(0, false)
    } else {
        pass.ready(&stable) >= n
    };
    pass.retire(draining, traffic_off);
    pass.wait(format!("retiring superseded revision {} before revision {update} takes traffic", draining.join(", ")));
}

/// All steps done: the candidate takes every replica, then all traffic, then passes the hooks
/// after traffic, then becomes stable. Returns why to abort when a hook failed.
fn promote(pass: &mut Pass<'_>, canary: &CanaryStrategy, keep_runs: &mut Vec<String>) -> Option<String> {
    let n = pass.replicas;
    let (stable, update) = (pass.stable.clone(), pass.update.clone());
    let delay = canary.scale_down_delay_seconds.map_or(DEFAULT_SCALE_DOWN_DELAY, |s| Duration::from_secs(s.max(0) as u64));
    if pass.has_router() {
        pass.scale(&stable, n);
        pass.scale(&update, n);
        if pass.observed_weight() == Some(0) {
            pass.point_service(ServiceRole::Canary, &update);
        }
        let ready = pass.ready(&update);
        if ready < n {
            pass.wait(format!("promoting revision {update}: {ready}/{n} ready"));
            return None;
        }
        if pass.steer(100, false) {
            return after_traffic(pass, keep_runs, delay);
        } else if pass.message.is_empty() {
            pass.wait(format!("promoting revision {update}: moving all traffic to it"));
        }
    } else {
        pass.status.canary_weight = 100;
        pass.point_service(ServiceRole::Canary, &update);
        scale_by_ratio(pass, canary, n, 0);
        if pass.ready(&update) >= n && pass.current(&stable) == 0 {
            return after_traffic(pass, keep_runs, Duration::ZERO);
        }
        let ready = pass.ready(&update);
        pass.wait(format!("promoting revision {update}: {ready}/{n} ready"));
    }
    None
}

/// All traffic is on the candidate: it becomes stable once the hooks after traffic passed.
fn after_traffic(pass: &mut Pass<'_>, keep_runs: &mut Vec<String>, delay: Duration) -> Option<String> {
    match pass.hooks_gate(&hooks::AFTER_TRAFFIC, keep_runs) {
        Gate::Open => pass.mark_stable(delay),
        Gate::Shut => {}
        Gate::Abort(reason) => return Some(reason),
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(w: i32) -> StepKind<'static> {
        StepKind::SetWeight(w)
    }
    fn pause() -> StepKind<'static> {
        StepKind::Pause(None)
    }

    #[test]
    fn weight_in_force_is_the_last_set_weight_so_far() {
        let steps = [weight(10), pause(), weight(50), pause()];
        assert_eq!(weight_at(&steps, 0), 10);
        assert_eq!(weight_at(&steps, 1), 10);
        assert_eq!(weight_at(&steps, 3), 50);
        assert_eq!(weight_at(&[pause()], 0), 0);
    }

    #[test]
    fn replica_ratio_keeps_the_stable_and_adds_canary_pods_within_surge() {
        assert_eq!(ratio_split(1, 10, 1), (1, 1), "1 replica at 10%: one of each, as Argo");
        assert_eq!(ratio_split(3, 20, 1), (1, 3), "25% is the closest to 20% within one surge pod");
        assert_eq!(ratio_split(1, 5, 1), (1, 1), "no jump to 100% at a small step");
        assert_eq!(ratio_split(10, 25, 3), (3, 9));
        assert_eq!(ratio_split(10, 50, 3), (5, 5));
        assert_eq!(ratio_split(4, 50, 0), (2, 2));
        assert_eq!(ratio_split(1, 10, 0), (0, 1), "no surge allowed and one replica: the canary cannot start");
        assert_eq!(ratio_split(5, 100, 2), (5, 0));
        assert_eq!(ratio_split(5, 0, 2), (0, 5));
        assert_eq!(ratio_split(0, 50, 1), (0, 0));
        for n in 1..40 {
            for weight in 1..100 {
                let (canary, stable) = ratio_split(n, weight, 1 + n / 4);
                assert!(stable <= n && canary <= n && canary + stable <= n + 1 + n / 4 && canary + stable >= n, "{n} {weight}");
                assert!(canary >= 1 && stable >= 1, "a weight between 0 and 100 runs both: {n} at {weight}%");
            }
        }
        assert_eq!(ratio_weight(1, 3), 25);
    }

    fn scales(plan: &crate::engine::Plan) -> Vec<(String, i32)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                crate::engine::Action::Scale { revision, replicas, .. } => Some((revision.clone(), *replicas)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn max_unavailable_lets_a_replica_ratio_canary_take_stable_pods_before_its_own_are_ready() {
        use crate::engine::fixture::{Fixture, STABLE, UPDATE};
        let strategy = |unavailable: serde_json::Value| serde_json::json!({"canary": {"maxSurge": 0, "maxUnavailable": unavailable, "steps": [{"setWeight": 50}, {"pause": {}}]}});
        let at_start = |unavailable| {
            let mut fixture = Fixture::new(4, strategy(unavailable)).running(STABLE, 4, 4);
            fixture.status.update_revision = Some(UPDATE.into());
            fixture.spec.workload.kubernetes.as_mut().unwrap().template =
                serde_json::from_value(serde_json::json!({"metadata": {"labels": {"v": "2"}}})).unwrap();
            fixture
        };
        // No surge and one pod may be missing: the stable gives one up first.
        let fixture = at_start(serde_json::json!(1));
        let update = crate::engine::revision::of(&fixture.spec.workload);
        let plan = crate::engine::step(fixture.input());
        assert_eq!(scales(&plan), vec![(STABLE.to_string(), 3)]);
        // Then the canary grows into the room, never past 4 pods in all.
        let fixture = at_start(serde_json::json!(1)).running(STABLE, 3, 3);
        let mut fixture = fixture;
        fixture.observed.revisions.retain(|r| r.replicas == 3);
        let plan = crate::engine::step(fixture.input());
        assert_eq!(scales(&plan), vec![(update.clone(), 1)]);
        // 25% of 4 rounds down to one pod, as a Deployment's does.
        let plan = crate::engine::step(at_start(serde_json::json!("25%")).input());
        assert_eq!(scales(&plan), vec![(STABLE.to_string(), 3)]);
        // Without maxUnavailable the stable keeps every pod until canary pods are ready.
        let mut fixture =
            Fixture::new(4, serde_json::json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}})).running(STABLE, 4, 4);
        fixture.status.update_revision = Some(UPDATE.into());
        let plan = crate::engine::step(fixture.input());
        assert!(scales(&plan).iter().all(|(revision, replicas)| revision != STABLE || *replicas == 4), "{:?}", scales(&plan));
    }

    #[test]
    fn canary_size_follows_weight_unless_scaled_explicitly() {
        let steps = [weight(10), StepKind::SetCanaryScale(CanaryScale::Replicas(1)), weight(50)];
        assert_eq!(canary_replicas_at(&steps, 0, 10), 1);
        assert_eq!(canary_replicas_at(&steps, 2, 10), 1, "setCanaryScale holds until changed");
        assert_eq!(canary_replicas_at(&[weight(25)], 0, 10), 3, "rounded up");
    }
}
