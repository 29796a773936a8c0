//! One pass over one Rollout, the same for the controller and the simulator: observe through the
//! ports, decide with [`engine::step`], apply the plan's actions in order, write the status and
//! say the events. The status is written only once every action succeeded, so a pass cut short
//! (a failed call, a crash) is decided again from the same status and converges.

use std::time::Duration;

use jiff::Timestamp;

use crate::analysis::field_ref::{self, RolloutFields};
use crate::analysis::run as analysis_run;
use crate::api::{
    AnalysisArg, AnalysisPhase, AnalysisRunSpec, AnalysisRunStatus, RolloutAnalysis, RolloutCommands, RolloutPhase, RolloutSpec,
    RolloutStatus,
};
use crate::engine::{self, Action, AnalysisPurpose, Input, Observed, Plan};
use crate::ports::{AnalysisRuns, Effect, NewRun, Platform, PortError, Record, TrafficRouter};

/// The Rollout a pass is about, as stored.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub generation: Option<i64>,
    pub spec: &'a RolloutSpec,
    pub status: &'a RolloutStatus,
    pub commands: &'a RolloutCommands,
    pub commit_time: Option<&'a str>,
    /// The Rollout's labels and annotations, for analysis arguments taken from them.
    pub labels: Option<&'a std::collections::BTreeMap<String, String>>,
    pub annotations: Option<&'a std::collections::BTreeMap<String, String>>,
}

/// The ports one Rollout's pass goes through.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub platform: &'a dyn Platform,
    pub router: &'a dyn TrafficRouter,
    pub runs: &'a dyn AnalysisRuns,
    pub record: &'a dyn Record,
}

/// A pass that went through.
#[derive(Debug)]
pub struct Outcome {
    pub plan: Plan,
    /// The actions that changed something, in the order applied.
    pub applied: Vec<Action>,
    /// When to look again without a change: the plan's wish, or sooner where the platform sends
    /// no watch events and the rollout may still move.
    pub requeue_after: Option<Duration>,
}

/// A pass cut short: some actions may be applied, the status is not written.
#[derive(Debug)]
pub struct Interrupted {
    /// `None` when the pass failed before the engine decided.
    pub plan: Option<Plan>,
    pub applied: Vec<Action>,
    pub error: PortError,
}

pub async fn run(subject: Subject<'_>, ports: Ports<'_>, now: Timestamp) -> Result<Outcome, Interrupted> {
    let interrupted = |error| Interrupted { plan: None, applied: Vec::new(), error };
    let observed = observe(subject, ports).await.map_err(interrupted)?;
    let plan = engine::step(Input {
        name: subject.name,
        generation: subject.generation,
        spec: subject.spec,
        status: subject.status,
        commands: subject.commands,
        observed: &observed,
        commit_time: subject.commit_time,
        now,
    });
    let mut applied = Vec::new();
    for action in &plan.actions {
        match apply(action, subject, ports).await {
            Ok(Effect::Changed) => applied.push(action.clone()),
            Ok(Effect::Unchanged) => {}
            Err(error) => return Err(Interrupted { plan: Some(plan), applied, error }),
        }
    }
    let keep: Vec<&str> = [plan.status.stable_revision.as_deref(), plan.status.update_revision.as_deref()].into_iter().flatten().collect();
    let recorded = match ports.platform.retire(&keep).await {
        Ok(()) => ports.record.write_status(subject.status, &plan.status, &plan.events).await,
        Err(error) => Err(error),
    };
    if let Err(error) = recorded {
        return Err(Interrupted { plan: Some(plan), applied, error });
    }
    ports.record.publish(&plan.events).await;
    let mut requeue_after = plan.requeue_after;
    if let Some(poll) = ports.platform.poll_interval()
        && plan.status.phase != Some(RolloutPhase::Healthy)
    {
        requeue_after = Some(requeue_after.map_or(poll, |r| r.min(poll)));
    }
    Ok(Outcome { plan, applied, requeue_after })
}

/// Everything the engine looks at: the platform first, whose registrations say which target
/// group serves each role before the router is read.
pub async fn observe(subject: Subject<'_>, ports: Ports<'_>) -> Result<Observed, PortError> {
    let platform = ports.platform.observe().await?;
    let target_groups = engine::target_groups::roles(subject.spec, subject.status.stable_revision.as_deref(), &platform.registrations);
    let traffic = ports.router.observe(target_groups.as_ref()).await?;
    let analysis_runs = ports.runs.observe().await?;
    Ok(Observed {
        revisions: platform.revisions,
        traffic,
        analysis_runs,
        services: platform.services,
        registrations: platform.registrations,
        adopted: platform.adopted,
        capacity: platform.capacity,
        stale_pods: platform.stale_pods,
    })
}

async fn apply(action: &Action, subject: Subject<'_>, ports: Ports<'_>) -> Result<Effect, PortError> {
    match action {
        Action::Scale { revision, replicas, target_group } => ports.platform.scale(revision, *replicas, target_group.as_deref()).await,
        Action::PointService { role, revision } => ports.platform.point_traffic(*role, revision).await,
        Action::MarkStable { revision } => ports.platform.mark_stable(revision).await,
        Action::SetWeight { canary_weight, target_groups, reclaim } => {
            ports.router.set_weight(target_groups, *canary_weight, *reclaim).await
        }
        Action::RouteTestTraffic { target_group, .. } => ports.router.route_test_traffic(target_group).await,
        Action::RouteHeaders { routes, target_group } => ports.router.route_headers(routes, target_group.as_deref()).await,
        Action::CreateAnalysisRun { name, revision, purpose, analysis, metrics, builtins } => {
            let request = RunRequest { name, revision, purpose: *purpose, analysis, metrics, builtins };
            let run = build_run(subject, ports.runs, request).await?;
            ports.runs.create(run).await
        }
        Action::TerminateAnalysisRun { name } => ports.runs.terminate(name).await,
        Action::ScaleAdopted { replicas } => ports.platform.scale_adopted(*replicas).await,
        Action::SetCapacity { replicas } => ports.platform.set_capacity(*replicas).await,
        Action::RestartPods { revision, started_before, count } => ports.platform.restart(revision, started_before.0, *count).await,
    }
}

/// What a [`Action::CreateAnalysisRun`] asks for.
struct RunRequest<'a> {
    name: &'a str,
    revision: &'a str,
    purpose: AnalysisPurpose,
    analysis: &'a RolloutAnalysis,
    metrics: &'a [crate::api::Metric],
    builtins: &'a [AnalysisArg],
}

/// Resolves the templates and builds the run. A run that cannot be built is still created,
/// finished in Error with the reason, so the engine aborts and the person sees why.
async fn build_run(subject: Subject<'_>, runs: &dyn AnalysisRuns, request: RunRequest<'_>) -> Result<NewRun, PortError> {
    let RunRequest { name, revision, purpose, analysis, metrics, builtins } = request;
    let mut templates = Vec::new();
    if !metrics.is_empty() {
        // A hook's own metric is built as a template of its own, so its arguments resolve alike.
        let inline = crate::api::AnalysisTemplateSpec { args: Vec::new(), metrics: metrics.to_vec() };
        templates.push(("hook".to_string(), inline));
    }
    let mut problem = None;
    for reference in &analysis.templates {
        match runs.template(reference).await? {
            Some(spec) => templates.push((reference.template_name.clone(), spec)),
            None => {
                let kind = if reference.cluster_scope { "ClusterAnalysisTemplate" } else { "AnalysisTemplate" };
                problem = Some(format!("{kind} {} not found in namespace {}", reference.template_name, subject.namespace));
            }
        }
    }
    let built = match (problem, with_fields(&analysis.args, subject)) {
        (Some(problem), _) | (None, Err(problem)) => Err(problem),
        (None, Ok(args)) => analysis_run::build(&templates, &args, builtins).map_err(|e| e.0),
    };
    let (spec, status) = match built {
        Ok(spec) => (spec, None),
        Err(message) => (
            AnalysisRunSpec { metrics: Vec::new(), args: analysis.args.clone(), terminate: false },
            Some(AnalysisRunStatus { phase: AnalysisPhase::Error, message: Some(message), ..Default::default() }),
        ),
    };
    Ok(NewRun { name: name.to_string(), revision: revision.to_string(), purpose, spec, status })
}

/// The Rollout's arguments with those taken from its fields read now.
fn with_fields(args: &[AnalysisArg], subject: Subject<'_>) -> Result<Vec<AnalysisArg>, String> {
    let fields = RolloutFields {
        name: subject.name,
        namespace: subject.namespace,
        labels: subject.labels,
        annotations: subject.annotations,
        spec: subject.spec,
    };
    args.iter()
        .map(|arg| match arg.value_from.as_ref().and_then(|from| from.field_ref.as_ref()) {
            Some(field) => field_ref::value(&field.field_path, &fields)
                .map(|value| AnalysisArg::new(&arg.name, value))
                .map_err(|e| format!("analysis argument `{}`: {e}", arg.name)),
            None => Ok(arg.clone()),
        })
        .collect()
}
