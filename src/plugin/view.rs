//! The live view of `kubectl sluice status`: a pure function of what was read and the time, so
//! each frame can be checked against fixed rollout states.

use std::fmt::Write;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt;

use super::describe::{self, qualified_name};
use crate::api::{AnalysisPhase, AnalysisRun, PauseReason, Rollout, RolloutStatus, StrategyKind, WorkloadKind};
use crate::platform::kubernetes::{REVISION_LABEL, ROLLOUT_LABEL};

/// How many Kubernetes Events of the Rollout the view shows.
pub const EVENTS_SHOWN: usize = 5;
const BAR_WIDTH: usize = 30;
/// Measurement values shown per metric.
const VALUES_SHOWN: usize = 3;

/// Everything one frame shows: the Rollout and what belongs to it.
#[derive(Clone, Debug)]
pub struct StatusState {
    pub rollout: Rollout,
    /// ReplicaSets labelled with the rollout's name.
    pub replica_sets: Vec<ReplicaSet>,
    /// AnalysisRuns labelled with the rollout's name.
    pub analysis_runs: Vec<AnalysisRun>,
    /// Events about the Rollout, in any order.
    pub events: Vec<Event>,
}

pub fn render(state: &StatusState, now: Timestamp) -> String {
    let rollout = &state.rollout;
    let status = describe::status(rollout);
    let mut out = String::new();
    header(&mut out, rollout, &status);
    out.push('\n');
    steps(&mut out, rollout, &status);
    out.push('\n');
    traffic(&mut out, &status);
    out.push('\n');
    revisions(&mut out, state, &status);
    out.push('\n');
    analysis(&mut out, state, &status);
    out.push('\n');
    events(&mut out, &state.events, now);
    out.push('\n');
    let _ = writeln!(out, "Message      {}", status.message.as_deref().unwrap_or("-"));
    out
}

fn header(out: &mut String, rollout: &Rollout, status: &RolloutStatus) {
    let _ = writeln!(out, "Rollout      {}", qualified_name(rollout));
    let workload = &rollout.spec.workload;
    match workload.kind() {
        Ok(WorkloadKind::Kubernetes(kubernetes)) => {
            let adopted = kubernetes
                .deployment_ref
                .as_ref()
                .map(|r| format!(", adopting Deployment {} (scaleDown {})", r.name, r.scale_down.as_str()));
            let _ = writeln!(out, "Workload     kubernetes, {} replicas{}", kubernetes.replicas, adopted.unwrap_or_default());
        }
        Ok(WorkloadKind::Ecs(ecs)) => {
            let _ = writeln!(out, "Workload     ECS service {} in {}, {} tasks", ecs.service, ecs.cluster, ecs.desired_count);
        }
        Err(_) => {
            let _ = writeln!(out, "Workload     -");
        }
    }
    let strategy = match rollout.spec.strategy.kind() {
        Ok(StrategyKind::Canary(canary)) => format!("canary, {} steps", canary.steps.len()),
        Ok(StrategyKind::BlueGreen(blue_green)) => match &blue_green.preview_service {
            Some(preview) => format!("blueGreen, active Service {}, preview Service {preview}", blue_green.active_service),
            None => format!("blueGreen, active Service {}", blue_green.active_service),
        },
        Ok(StrategyKind::Rolling(_)) => "rolling".to_string(),
        Err(_) => "-".to_string(),
    };
    let _ = writeln!(out, "Strategy     {strategy}");
    let mut phase = describe::phase(rollout);
    let reasons: Vec<String> = status.pause_conditions.iter().map(|p| format!("{:?}", p.reason)).collect();
    if !reasons.is_empty() {
        phase.push_str(&format!(" ({})", reasons.join(", ")));
    }
    if status.abort {
        phase.push_str(" (aborted)");
    }
    let _ = writeln!(out, "Phase        {phase}");
    if rollout.spec.paused {
        let _ = writeln!(out, "Paused       by spec.paused (`kubectl sluice resume {}` continues)", rollout.name_any());
    }
    if let Some(reason) = &status.abort_reason {
        let _ = writeln!(out, "Abort reason {reason}");
    }
    let generation = rollout.metadata.generation.unwrap_or(0);
    match status.observed_generation {
        Some(observed) if observed == generation => {}
        Some(observed) => {
            let _ = writeln!(out, "Generation   {generation}, observed {observed}: the controller has not seen the latest spec yet");
        }
        None => {
            let _ = writeln!(out, "Generation   {generation}, not observed yet: the controller has not seen this rollout");
        }
    }
    let _ = writeln!(
        out,
        "Revisions    stable {}, update {}",
        describe::revision(&status.stable_revision),
        describe::revision(&status.update_revision)
    );
    let _ = writeln!(
        out,
        "Replicas     {} desired, {} current, {} updated, {} ready, {} available",
        status.desired_replicas, status.replicas, status.updated_replicas, status.ready_replicas, status.available_replicas
    );
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Progress {
    Done,
    Current,
    Pending,
}

fn at_rest(status: &RolloutStatus) -> bool {
    status.stable_revision.is_some() && status.stable_revision == status.update_revision
}

fn steps(out: &mut String, rollout: &Rollout, status: &RolloutStatus) {
    let (steps, background): (Vec<(String, Progress)>, Option<String>) = match rollout.spec.strategy.kind() {
        Ok(StrategyKind::Canary(canary)) => {
            let index = status.current_step_index.map(|i| i.max(0) as usize);
            let rows = canary
                .steps
                .iter()
                .enumerate()
                .map(|(i, step)| {
                    let progress = match index {
                        Some(current) if i < current => Progress::Done,
                        Some(current) if i == current => Progress::Current,
                        _ => Progress::Pending,
                    };
                    (describe::canary_step(step), progress)
                })
                .collect();
            (rows, canary.analysis.as_ref().map(describe::templates))
        }
        Ok(StrategyKind::BlueGreen(blue_green)) => {
            let rest = at_rest(status);
            let ready = rest || status.switched || status.preview_ready_at.is_some();
            let mut stages = Vec::new();
            if blue_green.approve_before_preview == Some(true) {
                stages.push(("approval before the preview".to_string(), rest || status.preview_approved || ready));
            }
            stages.push(("preview revision ready".to_string(), ready));
            // The engine waits for promotion only once pre-promotion analysis has passed.
            let awaiting_promotion = status.pause_conditions.iter().any(|p| p.reason == PauseReason::BlueGreenPause);
            if let Some(pre) = &blue_green.pre_promotion_analysis {
                stages
                    .push((format!("pre-promotion analysis {}", describe::templates(pre)), rest || status.switched || awaiting_promotion));
            }
            stages.push(("switch the active Service (promotion)".to_string(), rest || status.switched));
            if let Some(post) = &blue_green.post_promotion_analysis {
                stages.push((format!("post-promotion analysis {}", describe::templates(post)), rest));
            }
            (first_pending_is_current(stages), None)
        }
        Ok(StrategyKind::Rolling(rolling)) => {
            let stages = vec![("replace the stable revision's replicas with the update's".to_string(), at_rest(status))];
            (first_pending_is_current(stages), rolling.analysis.as_ref().map(describe::templates))
        }
        Err(_) => (Vec::new(), None),
    };
    let _ = writeln!(out, "Steps");
    if steps.is_empty() {
        let _ = writeln!(out, "  (none: the update is promoted as soon as it is ready)");
    }
    let width = steps.len().saturating_sub(1).to_string().len();
    for (i, (text, progress)) in steps.iter().enumerate() {
        let mark = match progress {
            Progress::Done => "[x]",
            Progress::Current if status.abort => "[!]",
            Progress::Current => "[>]",
            Progress::Pending => "[ ]",
        };
        let _ = writeln!(out, "  {mark} {i:>width$}  {text}");
    }
    if let Some(templates) = background {
        let _ = writeln!(out, "  background analysis {templates}");
    }
}

/// Stages done in order: the first one not done is the current one.
fn first_pending_is_current(stages: Vec<(String, bool)>) -> Vec<(String, Progress)> {
    let current = stages.iter().position(|(_, done)| !done);
    stages
        .into_iter()
        .enumerate()
        .map(|(i, (text, done))| {
            let progress = if done {
                Progress::Done
            } else if Some(i) == current {
                Progress::Current
            } else {
                Progress::Pending
            };
            (text, progress)
        })
        .collect()
}

fn traffic(out: &mut String, status: &RolloutStatus) {
    let shown = status.verified_weight.unwrap_or(status.canary_weight).clamp(0, 100);
    let filled = (shown as usize * BAR_WIDTH + 50) / 100;
    let bar = format!("{}{}", "#".repeat(filled), "-".repeat(BAR_WIDTH - filled));
    let verified = status.verified_weight.map_or_else(|| "not verified yet".to_string(), |w| format!("verified {w}%"));
    let _ = writeln!(out, "Weight       [{bar}] {shown:>3}% to the update (desired {}%, {verified})", status.canary_weight);
}

/// The part a revision plays, in the strategy's own words.
fn role(rollout: &Rollout, status: &RolloutStatus, revision: &str) -> &'static str {
    let stable = status.stable_revision.as_deref() == Some(revision);
    let update = status.update_revision.as_deref() == Some(revision);
    let strategy = describe::strategy_name(rollout);
    match (stable, update, strategy) {
        (true, true, _) => "stable",
        (false, false, _) => "old",
        (true, false, "blueGreen") if status.switched => "previous",
        (true, false, "blueGreen") => "active",
        (false, true, "blueGreen") if status.switched => "active",
        (false, true, "blueGreen") => "preview",
        (true, false, _) => "stable",
        (false, true, "canary") => "canary",
        (false, true, _) => "update",
    }
}

fn revisions(out: &mut String, state: &StatusState, status: &RolloutStatus) {
    let rollout = &state.rollout;
    let _ = writeln!(out, "Revisions");
    let mut rows: Vec<[String; 5]> = Vec::new();
    if rollout.spec.workload.ecs.is_some() {
        // ECS task sets are not Kubernetes objects: the status carries their counts.
        let update = status.update_revision.clone();
        let stable = status.stable_revision.clone();
        for (revision, ready) in [
            (update.clone(), status.updated_replicas),
            (stable.clone().filter(|s| Some(s) != update.as_ref()), status.ready_replicas - status.updated_replicas),
        ] {
            if let Some(revision) = revision {
                let role = role(rollout, status, &revision).to_string();
                rows.push([revision, role, "task set".to_string(), format!("{} ready", ready.max(0)), String::new()]);
            }
        }
    } else {
        let name = rollout.name_any();
        let mut shown: Vec<&ReplicaSet> = state
            .replica_sets
            .iter()
            .filter(|rs| rs.labels().get(ROLLOUT_LABEL) == Some(&name))
            .filter(|rs| {
                let revision = rs.labels().get(REVISION_LABEL);
                let in_role =
                    revision.is_some_and(|r| Some(r) == status.stable_revision.as_ref() || Some(r) == status.update_revision.as_ref());
                in_role || desired(rs) > 0
            })
            .collect();
        let rank = |rs: &&ReplicaSet| {
            let revision = rs.labels().get(REVISION_LABEL);
            let order = if revision == status.update_revision.as_ref() {
                0
            } else if revision == status.stable_revision.as_ref() {
                1
            } else {
                2
            };
            (order, rs.name_any())
        };
        shown.sort_by_key(rank);
        for rs in shown {
            let revision = rs.labels().get(REVISION_LABEL).cloned().unwrap_or_else(|| "-".to_string());
            let ready = rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
            let role = role(rollout, status, &revision).to_string();
            rows.push([revision, role, format!("ReplicaSet {}", rs.name_any()), format!("{ready}/{} ready", desired(rs)), images(rs)]);
        }
    }
    if rows.is_empty() {
        let _ = writeln!(out, "  (none yet)");
    }
    let widths: Vec<usize> = (0..5).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    for row in rows {
        let line = format!(
            "  {:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn desired(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// `web:2` for one container; `web=web:2, log=fluent:1` for several.
fn images(rs: &ReplicaSet) -> String {
    let containers = rs.spec.as_ref().and_then(|s| s.template.as_ref()).and_then(|t| t.spec.as_ref()).map(|p| p.containers.clone());
    let containers = containers.unwrap_or_default();
    match containers.as_slice() {
        [one] => one.image.clone().unwrap_or_default(),
        many => many.iter().map(|c| format!("{}={}", c.name, c.image.as_deref().unwrap_or(""))).collect::<Vec<_>>().join(", "),
    }
}

/// The running analysis runs; when none runs, the last finished one of the update revision, since
/// its verdict is usually what the rollout is waiting on or was stopped by.
fn shown_runs<'a>(state: &'a StatusState, status: &RolloutStatus) -> (Vec<&'a AnalysisRun>, bool) {
    let name = state.rollout.name_any();
    let ours: Vec<&AnalysisRun> = state.analysis_runs.iter().filter(|r| r.labels().get(ROLLOUT_LABEL) == Some(&name)).collect();
    let mut running: Vec<&AnalysisRun> =
        ours.iter().copied().filter(|r| !r.status.as_ref().is_some_and(|s| s.phase.is_completed())).collect();
    running.sort_by_key(|r| r.name_any());
    if !running.is_empty() {
        return (running, true);
    }
    let last = ours
        .into_iter()
        .filter(|r| r.labels().get(REVISION_LABEL) == status.update_revision.as_ref())
        .max_by_key(|r| (r.creation_timestamp().map(|t| t.0), r.name_any()));
    (last.into_iter().collect(), false)
}

fn analysis(out: &mut String, state: &StatusState, status: &RolloutStatus) {
    let (runs, running) = shown_runs(state, status);
    let _ = writeln!(out, "{}", if running || runs.is_empty() { "Analysis" } else { "Analysis (last finished run)" });
    if runs.is_empty() {
        let _ = writeln!(out, "  (no analysis running)");
    }
    for run in runs {
        let run_status = run.status.clone().unwrap_or_default();
        match &run_status.message {
            Some(message) => {
                let _ = writeln!(out, "  {}  {}: {message}", run.name_any(), run_status.phase);
            }
            None => {
                let _ = writeln!(out, "  {}  {}", run.name_any(), run_status.phase);
            }
        }
        let width = run_status.metric_results.iter().map(|m| m.name.len()).max().unwrap_or(0);
        for metric in &run_status.metric_results {
            let values: Vec<String> = metric
                .measurements
                .iter()
                .rev()
                .take(VALUES_SHOWN)
                .rev()
                .map(|m| match (&m.value, m.phase) {
                    (Some(value), AnalysisPhase::Successful) => value.clone(),
                    (Some(value), phase) => format!("{value} ({phase})"),
                    (None, phase) => format!("- ({phase})"),
                })
                .collect();
            let latest = if values.is_empty() { "no measurement yet".to_string() } else { format!("latest {}", values.join(", ")) };
            let _ = writeln!(
                out,
                "    {:<width$}  {:<12} {} measured, {} failed  {latest}",
                metric.name,
                metric.phase.to_string(),
                metric.count,
                metric.failed,
            );
        }
    }
}

fn event_time(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or_else(|| event.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn events(out: &mut String, all: &[Event], now: Timestamp) {
    let _ = writeln!(out, "Events");
    let mut sorted: Vec<&Event> = all.iter().collect();
    sorted.sort_by_key(|e| (event_time(e), e.metadata.name.clone()));
    let latest = &sorted[sorted.len().saturating_sub(EVENTS_SHOWN)..];
    if latest.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let reason_width = latest.iter().map(|e| e.reason.as_deref().unwrap_or("").len()).max().unwrap_or(0);
    for event in latest {
        let when = event_time(event).map_or_else(|| "?".to_string(), |t| format!("{} ago", age(now, t)));
        let count = event.series.as_ref().and_then(|s| s.count).or(event.count).filter(|c| *c > 1);
        let times = count.map_or_else(String::new, |c| format!(" (x{c})"));
        let _ = writeln!(
            out,
            "  {when:>8}  {:<7}  {:<reason_width$}  {}{times}",
            event.type_.as_deref().unwrap_or("Normal"),
            event.reason.as_deref().unwrap_or(""),
            event.message.as_deref().unwrap_or(""),
        );
    }
}

/// kubectl-style age: `42s`, `5m`, `3h`, `2d`.
fn age(now: Timestamp, then: Timestamp) -> String {
    let seconds = now.duration_since(then).as_secs().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests;
