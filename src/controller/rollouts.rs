//! Reconciling one Rollout: observe → engine → apply the plan → write status → events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event as Finalize, finalizer};
use kube::{Resource, ResourceExt};
use tracing::info;

use super::watched::{Unreadable, WatchedRollout, WatchedRun};
use super::{Context, Error};
use crate::analysis::run as analysis_run;
use crate::api::{
    AnalysisRun, AnalysisRunSpec, AnalysisRunStatus, AnalysisTemplate, AnalysisTemplateSpec, ClusterAnalysisTemplate, Rollout,
    RolloutAnalysis, RolloutPhase,
};
use crate::engine::{self, Action, AnalysisPurpose, AnalysisRunObservation, Input, Observed, Plan, ServiceRole};
use crate::platform::ecs::EcsState;
use crate::platform::kubernetes::{self as k8s, FIELD_MANAGER, REVISION_LABEL, ROLLOUT_LABEL};

const FINALIZER: &str = "sluice.dev/traffic";
const UNBUILT_RUN: &str = "the run has no metrics: its templates could not be built; see the rollout's earlier events";
pub const PURPOSE_LABEL: &str = "sluice.dev/analysis-purpose";
/// How often an ECS rollout in motion is looked at: task sets send no watch events.
const ECS_POLL: Duration = Duration::from_secs(5);

pub async fn reconcile(watched: Arc<WatchedRollout>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = Instant::now();
    // No decision from half-filled caches: a restarted controller would see no ReplicaSets and
    // start the rollout over (a Healthy → Progressing → Healthy flap and its events).
    ctx.stores_ready().await;
    // One object's panic is that object's failure, never the process's: the others go on.
    let result = super::contained(pass(&watched, &ctx)).await;
    ctx.metrics.observe("rollout", started.elapsed());
    let failures = ctx.failing.record(&key(&*watched), result.is_err());
    // A panic is no passing hiccup: say so at once.
    let report = |error: &Error| failures == FAILURES_BEFORE_REPORT || (matches!(error, Error::Panicked(_)) && failures == 1);
    if let (Err(error), WatchedRollout::Readable(rollout)) = (&result, &*watched)
        && report(error)
    {
        report_failure(rollout, error, &ctx).await;
    }
    result
}

/// Whether deleting this Rollout needs the controller first: only when traffic must be sent
/// home. Without a router, garbage collection removes the ReplicaSets and nothing else is left.
fn needs_finalizer(watched: &WatchedRollout) -> bool {
    match watched {
        WatchedRollout::Readable(rollout) => alb_of(rollout).is_some(),
        // Its traffic cannot be read: keep a finalizer it has, so its deletion still warns.
        WatchedRollout::Unreadable(_) => watched.finalizers().iter().any(|f| f == FINALIZER),
    }
}

/// One pass, under the finalizer when the Rollout has traffic to restore on deletion.
async fn pass(watched: &Arc<WatchedRollout>, ctx: &Arc<Context>) -> Result<Requeue, Error> {
    let api: Api<WatchedRollout> = Api::namespaced(ctx.client.clone(), &watched.namespace().unwrap_or_default());
    if !needs_finalizer(watched) {
        release_finalizer(&api, watched).await?;
        if watched.meta().deletion_timestamp.is_some() {
            return Ok(Requeue::await_change());
        }
        return match &**watched {
            WatchedRollout::Readable(rollout) => apply(rollout, ctx).await,
            WatchedRollout::Unreadable(unreadable) => report_unreadable(watched, unreadable, ctx).await,
        };
    }
    let ctx = ctx.clone();
    finalizer(&api, FINALIZER, watched.clone(), |event| async {
        match event {
            Finalize::Apply(watched) => match &*watched {
                WatchedRollout::Readable(rollout) => apply(rollout, &ctx).await,
                WatchedRollout::Unreadable(unreadable) => report_unreadable(&watched, unreadable, &ctx).await,
            },
            Finalize::Cleanup(watched) => match &*watched {
                WatchedRollout::Readable(rollout) => cleanup(rollout, &ctx).await,
                WatchedRollout::Unreadable(unreadable) => release_unreadable(&watched, unreadable, &ctx).await,
            },
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// Removes this controller's finalizer from a Rollout that no longer needs one (one written by
/// an earlier version, or a Rollout whose router was removed).
async fn release_finalizer(api: &Api<WatchedRollout>, watched: &WatchedRollout) -> Result<(), Error> {
    let finalizers = watched.finalizers();
    let Some(index) = finalizers.iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    // Test-and-remove: a concurrent change to the list fails the patch instead of losing it.
    let patch = serde_json::json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]);
    let patch: json_patch::Patch = serde_json::from_value(patch).expect("a JSON patch");
    match api.patch(&watched.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(other) => Err(other.into()),
    }
}

/// Consecutive failed passes (retried after 5 s, then longer; besides the SDK's own retries) before a
/// rollout says so in its status: one throttled call is routine, a stream of them is news.
const FAILURES_BEFORE_REPORT: u32 = 3;

/// Puts a failure that keeps coming back in the status and an event. Best effort: the API
/// server may be what is failing.
async fn report_failure(rollout: &Rollout, error: &Error, ctx: &Context) {
    if stale(rollout, ctx) {
        return;
    }
    let status = rollout.status.clone().unwrap_or_default();
    let plan = engine::failing(&status, &error.to_string(), Timestamp::now());
    if write_status(rollout, &status, &plan, ctx).await.is_ok() {
        publish(rollout, &plan, ctx).await;
    }
}

pub fn error_policy(rollout: Arc<WatchedRollout>, error: &Error, ctx: Arc<Context>) -> Requeue {
    ctx.metrics.failures.get_or_create(&super::metrics::ErrorLabel { controller: "rollout", category: error.category() }).inc();
    Requeue::requeue(ctx.failing.wait(&key(&*rollout)))
}

/// The target groups of the stable and canary roles. Fixed for Kubernetes; for ECS the stable
/// role is the target group of the stable revision's task set, the canary role the other one
/// (their roles swap at every promotion, as with CodeDeploy).
fn target_groups(rollout: &Rollout, ecs: Option<&EcsState>) -> Option<(String, String)> {
    let alb = alb_of(rollout)?;
    let (blue, green) = (alb.stable_target_group_arn.clone(), alb.canary_target_group_arn.clone());
    let stable_revision = rollout.status.as_ref().and_then(|s| s.stable_revision.as_deref());
    match ecs.and_then(|state| state.target_group_of(stable_revision?)) {
        Some(tg) if tg == green => Some((green, blue)),
        _ => Some((blue, green)),
    }
}

async fn observe(rollout: &Rollout, ctx: &Context) -> Result<(Observed, Option<EcsState>), Error> {
    let ecs = match &rollout.spec.workload.ecs {
        Some(workload) => Some(ctx.ecs.observe(workload).await?),
        None => None,
    };
    let traffic = match (alb_of(rollout), target_groups(rollout, ecs.as_ref())) {
        (Some(alb), Some((stable, canary))) => Some(ctx.router.read(alb, &stable, &canary).await?.observation()),
        _ => None,
    };
    let namespace = rollout.namespace();
    let name = rollout.name_any();
    let analysis_runs = ctx
        .analysis_runs
        .state()
        .iter()
        .filter(|run| run.namespace() == namespace && run.labels().get(ROLLOUT_LABEL) == Some(&name))
        .map(|run| observation(run))
        .collect();
    let (revisions, services) = match &ecs {
        // ECS has no Services: the target groups follow the task sets.
        Some(state) => (state.revisions(), Default::default()),
        None => {
            let services = k8s::observe_services(&ctx.client, rollout, &ctx.services.state()).await?;
            (k8s::observe(rollout, &ctx.replica_sets.state()), services)
        }
    };
    Ok((Observed { revisions, traffic, analysis_runs, services }, ecs))
}

/// What the engine is told of one of the Rollout's runs.
fn observation(watched: &WatchedRun) -> AnalysisRunObservation {
    let name = watched.name_any();
    let (phase, message) = match watched {
        WatchedRun::Readable(run) => {
            let status = run.status.clone().unwrap_or_default();
            match (run.spec.metrics.is_empty(), status.phase.is_completed()) {
                // A run with nothing to measure never completes by itself: it is one that could
                // not be built, whose Error status was not written yet (the controller stopped
                // between the two writes).
                (true, false) => (crate::api::AnalysisPhase::Error, Some(UNBUILT_RUN.to_string())),
                _ => (status.phase, status.message),
            }
        }
        // A decision it reached before it became unreadable stands; else it decides nothing more.
        WatchedRun::Unreadable(unreadable) if unreadable.status.phase.is_completed() => {
            (unreadable.status.phase, unreadable.status.message.clone())
        }
        WatchedRun::Unreadable(unreadable) => {
            (crate::api::AnalysisPhase::Error, Some(super::analysis_runs::unreadable_message(&unreadable.error)))
        }
    };
    AnalysisRunObservation { name, phase, message }
}

fn key(rollout: &impl Resource) -> String {
    format!("{}/{}", rollout.namespace().unwrap_or_default(), rollout.name_any())
}

fn version(rollout: &impl Resource) -> Option<u64> {
    rollout.resource_version().and_then(|v| v.parse().ok())
}

/// Whether the watch cache still shows a copy older than this controller's last status write.
fn stale(rollout: &impl Resource, ctx: &Context) -> bool {
    let written = ctx.written.lock().expect("written lock").get(&key(rollout)).copied();
    matches!((written, version(rollout)), (Some(written), Some(seen)) if seen < written)
}

async fn apply(rollout: &Rollout, ctx: &Context) -> Result<Requeue, Error> {
    if stale(rollout, ctx) {
        return Ok(Requeue::requeue(Duration::from_millis(50)));
    }
    let started = Instant::now();
    let status = rollout.status.clone().unwrap_or_default();
    // Before anything is read from AWS or changed: the Rollout reaches only what it may.
    let commands = match super::tenancy::admit(rollout, &status, &ctx.services.state(), ctx).await {
        Ok(commands) => commands,
        Err(refused) => {
            write_status(rollout, &status, &refused, ctx).await?;
            publish(rollout, &refused, ctx).await;
            return Ok(Requeue::await_change());
        }
    };
    let (observed, ecs) = observe(rollout, ctx).await?;
    let name = rollout.name_any();
    let mut plan = engine::step(Input {
        name: &name,
        generation: rollout.metadata.generation,
        spec: &rollout.spec,
        status: &status,
        commands: &commands,
        observed: &observed,
        now: Timestamp::now(),
    });
    let target_groups = target_groups(rollout, ecs.as_ref());
    for action in &plan.actions {
        execute(action, rollout, ctx, &plan, target_groups.as_ref()).await?;
    }
    let due = ctx.wakes.lock().expect("wakes lock").remove(&key(rollout));
    if let Some(due) = due.filter(|due| *due <= started && !plan.actions.is_empty()) {
        ctx.metrics.step_delay.observe(due.elapsed().as_secs_f64());
    }
    let keep: Vec<&str> = [plan.status.stable_revision.as_deref(), plan.status.update_revision.as_deref()].into_iter().flatten().collect();
    if ecs.is_none() {
        k8s::prune_history(&ctx.client, rollout, &ctx.replica_sets.state(), &keep).await?;
    }
    let commit_time = rollout.annotations().get(super::dora::COMMIT_TIME_ANNOTATION).map(String::as_str);
    let delivered = super::dora::observe(&status, &mut plan.status, commit_time, Timestamp::now());
    // The notifications are written with the decision that makes them, so none is lost to a
    // restart; what reached every URL leaves the outbox.
    let settled = ctx.notifier.settled(rollout, &status.notifications);
    let decided = match ctx.notifier.has_targets(rollout) {
        true => {
            let uid = rollout.uid().unwrap_or_default();
            crate::notify::decided(&uid, rollout.metadata.generation, &plan.status, &plan.events, Timestamp::now())
        }
        false => Vec::new(),
    };
    let (outbox, crowded_out) = crate::notify::outbox(&status.notifications, &settled, decided);
    plan.status.notifications = outbox;
    write_status(rollout, &status, &plan, ctx).await?;
    // Counted once the status is written: a pass that fails is decided again from the same status.
    ctx.metrics.record_delivery(&rollout.namespace().unwrap_or_default(), &name, &delivered);
    if crowded_out > 0 {
        ctx.metrics.notifications.get_or_create(&super::OutcomeLabel { outcome: "dropped" }).inc_by(crowded_out as u64);
    }
    ctx.notifier.send(rollout, &plan.status.notifications);
    publish(rollout, &plan, ctx).await;
    let mut requeue = plan.requeue_after;
    if ecs.is_some() && plan.status.phase != Some(RolloutPhase::Healthy) {
        // ECS sends no watch events: look again while anything may still change.
        requeue = Some(requeue.map_or(ECS_POLL, |r| r.min(ECS_POLL)));
    }
    if let Some(after) = plan.requeue_after.filter(|after| !after.is_zero()) {
        ctx.wakes.lock().expect("wakes lock").insert(key(rollout), Instant::now() + after);
    }
    // Nothing to wait for: the next pass comes from a change in the Rollout, its ReplicaSets,
    // AnalysisRuns or Services, so an idle controller spends nothing.
    Ok(requeue.map_or_else(Requeue::await_change, Requeue::requeue))
}

/// An object that cannot be read as a Rollout: Degraded with the field at fault; nothing else
/// is touched until someone fixes it.
async fn report_unreadable(
    watched: &WatchedRollout,
    unreadable: &Unreadable<crate::api::RolloutStatus>,
    ctx: &Context,
) -> Result<Requeue, Error> {
    if stale(watched, ctx) {
        return Ok(Requeue::requeue(Duration::from_millis(50)));
    }
    let plan = engine::unreadable(&unreadable.status, unreadable.metadata.generation, &unreadable.error, Timestamp::now());
    write_status(watched, &unreadable.status, &plan, ctx).await?;
    publish(watched, &plan, ctx).await;
    Ok(Requeue::await_change())
}

/// Deleting an object that cannot be read: its traffic settings cannot be trusted, so they are
/// left as they are and the deletion goes ahead, with a warning, rather than hang.
async fn release_unreadable(
    watched: &WatchedRollout,
    unreadable: &Unreadable<crate::api::RolloutStatus>,
    ctx: &Context,
) -> Result<Requeue, Error> {
    let message = format!("deleted while unreadable ({}): traffic left as it was; check the load balancer's weights", unreadable.error);
    let event = engine::Event { reason: engine::EventReason::InvalidSpec, message };
    let plan = Plan { actions: Vec::new(), status: unreadable.status.clone(), events: vec![event], requeue_after: None };
    publish(watched, &plan, ctx).await;
    Ok(Requeue::await_change())
}

async fn execute(
    action: &Action,
    rollout: &Rollout,
    ctx: &Context,
    plan: &Plan,
    target_groups: Option<&(String, String)>,
) -> Result<(), Error> {
    if let Some(workload) = &rollout.spec.workload.ecs {
        match action {
            Action::Scale { revision, replicas } => {
                let alb = alb_of(rollout).ok_or(Error::Unsupported("an ECS workload without spec.traffic.alb"))?;
                let stable = plan.status.stable_revision.clone().unwrap_or_default();
                return Ok(ctx.ecs.scale(workload, alb, revision, &stable, *replicas).await?);
            }
            Action::MarkStable { revision } => return Ok(ctx.ecs.mark_stable(workload, revision).await?),
            Action::PointService { .. } => return Ok(()),
            _ => {}
        }
    }
    match action {
        Action::Scale { revision, replicas } => {
            match k8s::scale(&ctx.client, rollout, &ctx.replica_sets.state(), revision, *replicas).await {
                Ok(()) => {}
                Err(k8s::ScaleError::Kube(e)) => return Err(e.into()),
                Err(gone @ k8s::ScaleError::TemplateGone(_)) => return Err(Error::Platform(gone.to_string())),
            }
        }
        Action::PointService { role, revision } => {
            match k8s::point_service(&ctx.client, rollout, &ctx.services.state(), *role, revision).await {
                Ok(()) => {}
                Err(k8s::PointError::Kube(e)) => return Err(e.into()),
                Err(k8s::PointError::Refused(refusal)) => return Err(Error::Platform(refusal.0)),
            }
        }
        // Kubernetes has nothing to mark: the stable Service already selects the revision.
        Action::MarkStable { .. } => {}
        Action::SetWeight { canary_weight } => {
            let alb = alb_of(rollout).ok_or(Error::Unsupported("a weight without spec.traffic.alb"))?;
            let (stable, canary) = target_groups.ok_or(Error::Unsupported("a weight without target groups"))?;
            ctx.router.set_weight(alb, stable, canary, *canary_weight).await?;
        }
        Action::CreateAnalysisRun { name, revision, purpose, analysis } => {
            create_run(rollout, ctx, name, revision, *purpose, analysis).await?
        }
        Action::RouteTestTraffic { to } => {
            let (alb, target_group) = preview_target(rollout, target_groups, Some(*to))?;
            ctx.router.route_test_traffic(alb, target_group.unwrap_or_default()).await?;
        }
        Action::RouteHeader { to } => {
            let (alb, target_group) = preview_target(rollout, target_groups, *to)?;
            ctx.router.set_header_route(alb, target_group).await?;
        }
        Action::TerminateAnalysisRun { name } => {
            let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &rollout.namespace().unwrap_or_default());
            let patch = serde_json::json!({"spec": {"terminate": true}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
    }
    Ok(())
}

/// The ALB and the target group of a role (stable or canary, as they are for this rollout now).
fn preview_target<'a>(
    rollout: &'a Rollout,
    target_groups: Option<&'a (String, String)>,
    role: Option<ServiceRole>,
) -> Result<(&'a crate::api::AlbTraffic, Option<&'a str>), Error> {
    let alb = alb_of(rollout).ok_or(Error::Unsupported("a test or header route without spec.traffic.alb"))?;
    let (stable, canary) = target_groups.ok_or(Error::Unsupported("a test or header route without target groups"))?;
    let target_group = role.map(|role| match role {
        ServiceRole::Stable => stable.as_str(),
        ServiceRole::Canary => canary.as_str(),
    });
    Ok((alb, target_group))
}

/// Resolves the templates and creates the run. A run that cannot be built is still created, in
/// phase Error with the reason, so the engine aborts and the person sees why.
async fn create_run(
    rollout: &Rollout,
    ctx: &Context,
    name: &str,
    revision: &str,
    purpose: AnalysisPurpose,
    analysis: &RolloutAnalysis,
) -> Result<(), Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let mut templates = Vec::new();
    let mut problem = None;
    for reference in &analysis.templates {
        let found: Result<AnalysisTemplateSpec, kube::Error> = if reference.cluster_scope {
            Api::<ClusterAnalysisTemplate>::all(ctx.client.clone()).get(&reference.template_name).await.map(|t| t.spec.into())
        } else {
            Api::<AnalysisTemplate>::namespaced(ctx.client.clone(), &namespace).get(&reference.template_name).await.map(|t| t.spec)
        };
        match found {
            Ok(spec) => templates.push((reference.template_name.clone(), spec)),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let kind = if reference.cluster_scope { "ClusterAnalysisTemplate" } else { "AnalysisTemplate" };
                problem = Some(format!("{kind} {} not found in namespace {namespace}", reference.template_name));
            }
            Err(other) => return Err(other.into()),
        }
    }
    let built = match problem {
        Some(problem) => Err(problem),
        None => analysis_run::build(&templates, &analysis.args).map_err(|e| e.0),
    };
    let (spec, status) = match built {
        Ok(spec) => (spec, None),
        Err(message) => (
            AnalysisRunSpec { metrics: Vec::new(), args: analysis.args.clone(), terminate: false },
            Some(AnalysisRunStatus { phase: crate::api::AnalysisPhase::Error, message: Some(message), ..Default::default() }),
        ),
    };
    let mut run = AnalysisRun::new(name, spec);
    run.metadata.namespace = Some(namespace.clone());
    run.metadata.owner_references = rollout.controller_owner_ref(&()).map(|o| vec![o]);
    run.metadata.labels = Some(
        [(ROLLOUT_LABEL, rollout.name_any()), (REVISION_LABEL, revision.to_string()), (PURPOSE_LABEL, purpose.label())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    );
    let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.create(&PostParams::default(), &run).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(other) => return Err(other.into()),
    }
    if let Some(status) = status {
        let patch = serde_json::json!({"status": status});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(())
}

/// Server-side apply of the whole status under one field manager; skipped when nothing changed.
async fn write_status(
    rollout: &impl Resource<DynamicType = ()>,
    before: &crate::api::RolloutStatus,
    plan: &Plan,
    ctx: &Context,
) -> Result<(), Error> {
    if &plan.status == before {
        return Ok(());
    }
    let status = &plan.status;
    let patch = serde_json::json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "status": status});
    // Read back as a watched Rollout: the object may be one the types cannot read.
    let api: Api<WatchedRollout> = Api::namespaced(ctx.client.clone(), &rollout.namespace().unwrap_or_default());
    let updated = api.patch_status(&rollout.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    if let Some(version) = version(&updated) {
        ctx.written.lock().expect("written lock").insert(key(rollout), version);
    }
    if let Some(phase) = plan.status.phase {
        let key = key(rollout);
        let mut phases = ctx.phases.lock().expect("phases lock");
        phases.insert(key, phase);
        for gauge_phase in ["Progressing", "Paused", "Healthy", "Degraded"] {
            let count = phases.values().filter(|p| p.to_string() == gauge_phase).count();
            ctx.metrics.rollouts.get_or_create(&super::metrics::PhaseLabel { phase: gauge_phase.into() }).set(count as i64);
        }
    }
    Ok(())
}

fn action_of(event: &engine::Event) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(event.message.as_bytes());
    let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}-{short}", event.reason)
}

async fn publish(rollout: &impl Resource<DynamicType = ()>, plan: &Plan, ctx: &Context) {
    let reference = rollout.object_ref(&());
    for event in &plan.events {
        info!(rollout = %rollout.name_any(), reason = %event.reason, "{}", event.message);
        ctx.metrics.decisions.get_or_create(&super::metrics::EventLabel { reason: event.reason.to_string() }).inc();
        let kube_event = KubeEvent {
            type_: if event.reason.is_warning() { EventType::Warning } else { EventType::Normal },
            reason: event.reason.to_string(),
            note: Some(event.message.chars().take(1000).collect()),
            // The recorder folds events with the same action into one series and keeps the first
            // note: an action per distinct message keeps every decision readable, and a repeat of
            // the same decision shows as a count.
            action: action_of(event),
            secondary: None,
        };
        // An event that cannot be written never blocks a rollout.
        let _ = ctx.recorder.publish(&kube_event, &reference).await;
    }
}

fn alb_of(rollout: &Rollout) -> Option<&crate::api::AlbTraffic> {
    rollout.spec.traffic.as_ref().and_then(|t| t.alb.as_ref())
}

/// A Rollout being deleted: all traffic goes back to the stable target group before the
/// object goes; the ReplicaSets follow through garbage collection.
async fn cleanup(rollout: &Rollout, ctx: &Context) -> Result<Requeue, Error> {
    if let Err(refusal) = ctx.tenancy.check_arns(rollout).await {
        // Never touch what the Rollout was not allowed to name, not even to send traffic home.
        let event =
            engine::Event { reason: engine::EventReason::TenancyRefused, message: format!("deleted; AWS left as it was: {refusal}") };
        let plan =
            Plan { actions: Vec::new(), status: rollout.status.clone().unwrap_or_default(), events: vec![event], requeue_after: None };
        publish(rollout, &plan, ctx).await;
        return Ok(Requeue::await_change());
    }
    let ecs = match &rollout.spec.workload.ecs {
        Some(workload) => match ctx.ecs.observe(workload).await {
            Ok(state) => Some(state),
            // The service is gone: its target groups keep their roles as the spec names them.
            Err(gone) if gone.category() == "not_found" => None,
            Err(other) => return Err(other.into()),
        },
        None => None,
    };
    if let (Some(alb), Some((stable, canary))) = (alb_of(rollout), target_groups(rollout, ecs.as_ref())) {
        match ctx.router.set_weight(alb, &stable, &canary, 0).await {
            Ok(_) => {}
            // A listener or target group already gone has no traffic left to send home.
            Err(gone) if gone.category() == "not_found" => info!(rollout = %rollout.name_any(), "{gone}; nothing to restore"),
            Err(other) => return Err(other.into()),
        }
    }
    Ok(Requeue::await_change())
}
