//! Reconciling one Rollout: admit it, run the one pass ([`crate::pass`]) through its adapters,
//! count what the pass delivered, requeue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::finalizer::{Event as Finalize, finalizer};
use kube::{Resource, ResourceExt};
use tracing::info;

use super::adapters::{Adapters, alb_of, publish, resolved, write_status};
use super::watched::{Unreadable, WatchedRollout};
use super::{Context, Error, key, version};
use crate::api::{COMMIT_TIME_ANNOTATION, Rollout};
use crate::engine;
use crate::pass::{self, Subject};
use crate::platform::adoption::adopted_name;

const FINALIZER: &str = "sluice.dev/traffic";

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
/// home, or an adopted Deployment given its replicas back. Otherwise garbage collection removes
/// the ReplicaSets and nothing else is left.
fn needs_finalizer(watched: &WatchedRollout) -> bool {
    match watched {
        WatchedRollout::Readable(rollout) => alb_of(rollout).is_some() || adopted_name(rollout).is_some(),
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
    match write_status(rollout, &status, &plan.status, ctx).await {
        Ok(()) => publish(rollout, &plan.events, ctx).await,
        // No status can be written at all: an event is the one place left to say why.
        Err(refused) => {
            if let Some(message) = older_crd(&refused) {
                tracing::warn!(rollout = %rollout.name_any(), "{message}");
                publish(rollout, &[engine::Event { reason: engine::EventReason::ReconcileFailed, message }], ctx).await;
            }
        }
    }
}

/// The API server refuses a server-side apply that sets a field its schema does not declare:
/// the installed CRD is older than this controller (an upgrade that did not reach the CRDs).
fn older_crd(error: &kube::Error) -> Option<String> {
    let kube::Error::Api(status) = error else { return None };
    let (_, field) = status.message.split_once("): ").filter(|_| status.message.contains("field not declared in schema"))?;
    let field = field.split(':').next().unwrap_or(field).trim();
    Some(format!(
        "the installed Rollout CRD is older than this controller ({field} is not in its schema), so no status can be written: \
         upgrade the CRDs with the chart (`helm upgrade`), or `kubectl apply -f crds/` where the chart does not install them"
    ))
}

pub fn error_policy(rollout: Arc<WatchedRollout>, error: &Error, ctx: Arc<Context>) -> Requeue {
    ctx.metrics.failures.get_or_create(&super::metrics::ErrorLabel { controller: "rollout", category: error.category() }).inc();
    Requeue::requeue(ctx.failing.wait(&key(&*rollout)))
}

/// Whether the watch cache still shows a copy older than this controller's last status write.
fn stale(rollout: &impl Resource, ctx: &Context) -> bool {
    let written = ctx.memory.written(&key(rollout));
    matches!((written, version(rollout)), (Some(written), Some(seen)) if seen < written)
}

async fn apply(rollout: &Rollout, ctx: &Context) -> Result<Requeue, Error> {
    if stale(rollout, ctx) {
        return Ok(Requeue::requeue(Duration::from_millis(50)));
    }
    let started = Instant::now();
    let status = rollout.status.clone().unwrap_or_default();
    let (rollout, adopted) = resolved(rollout, ctx).await.map_err(Error::Port)?;
    let rollout = &*rollout;
    // Before anything is read from AWS or changed: the Rollout reaches only what it may.
    let commands = match super::tenancy::admit(rollout, &status, &ctx.services.state(), ctx).await {
        Ok(commands) => commands,
        Err(refused) => {
            write_status(rollout, &status, &refused.status, ctx).await?;
            publish(rollout, &refused.events, ctx).await;
            return Ok(Requeue::await_change());
        }
    };
    let (namespace, name) = (rollout.namespace().unwrap_or_default(), rollout.name_any());
    let subject = Subject {
        namespace: &namespace,
        name: &name,
        generation: rollout.metadata.generation,
        spec: &rollout.spec,
        status: &status,
        commands: &commands,
        commit_time: rollout.annotations().get(COMMIT_TIME_ANNOTATION).map(String::as_str),
        labels: rollout.metadata.labels.as_ref(),
        annotations: rollout.metadata.annotations.as_ref(),
    };
    let adapters = Adapters::for_rollout(rollout, adopted.as_deref(), ctx);
    let outcome = pass::run(subject, adapters.ports(), Timestamp::now()).await.map_err(|cut| Error::Port(cut.error))?;
    let key = key(rollout);
    if let Some(due) = ctx.memory.take_wake(&key).filter(|due| *due <= started && !outcome.plan.actions.is_empty()) {
        ctx.metrics.step_delay.observe(due.elapsed().as_secs_f64());
    }
    // Counted once the status is written: a pass that fails is decided again from the same status.
    ctx.metrics.record_delivery(&namespace, &name, &outcome.plan.delivered);
    if let Some(after) = outcome.plan.requeue_after.filter(|after| !after.is_zero()) {
        ctx.memory.wake_at(&key, Instant::now() + after);
    }
    // Nothing to wait for: the next pass comes from a change in the Rollout, its ReplicaSets,
    // AnalysisRuns or Services, so an idle controller spends nothing.
    Ok(outcome.requeue_after.map_or_else(Requeue::await_change, Requeue::requeue))
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
    write_status(watched, &unreadable.status, &plan.status, ctx).await?;
    publish(watched, &plan.events, ctx).await;
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
    publish(watched, &[event], ctx).await;
    Ok(Requeue::await_change())
}

/// A Rollout being deleted: an adopted Deployment gets its replicas back and all traffic goes
/// back to the stable target group before the object goes; the ReplicaSets follow through
/// garbage collection.
async fn cleanup(rollout: &Rollout, ctx: &Context) -> Result<Requeue, Error> {
    let (rollout, adopted) = resolved(rollout, ctx).await.map_err(Error::Port)?;
    let rollout = &*rollout;
    let adapters = Adapters::for_rollout(rollout, adopted.as_deref(), ctx);
    let ports = adapters.ports();
    if ports.platform.release_adopted().await.map_err(Error::Port)?.changed() {
        info!(rollout = %rollout.name_any(), "the adopted Deployment has its replicas back");
    }
    if alb_of(rollout).is_none() {
        return Ok(Requeue::await_change());
    }
    if let Err(refusal) = ctx.tenancy.check_arns(rollout).await {
        // Never touch what the Rollout was not allowed to name, not even to send traffic home.
        let event =
            engine::Event { reason: engine::EventReason::TenancyRefused, message: format!("deleted; AWS left as it was: {refusal}") };
        publish(rollout, &[event], ctx).await;
        return Ok(Requeue::await_change());
    }
    let registrations = match ports.platform.observe().await {
        Ok(observed) => observed.registrations,
        // The platform is gone: its target groups keep their roles as the spec names them.
        Err(gone) if gone.category == "not_found" => Default::default(),
        Err(other) => return Err(Error::Port(other)),
    };
    let stable = rollout.status.as_ref().and_then(|s| s.stable_revision.as_deref());
    if let Some(target_groups) = engine::target_groups::roles(&rollout.spec, stable, &registrations) {
        match ports.router.set_weight(&target_groups, 0, false).await {
            Ok(_) => {}
            // A listener or target group already gone has no traffic left to send home.
            Err(gone) if gone.category == "not_found" => info!(rollout = %rollout.name_any(), "{gone}; nothing to restore"),
            Err(other) => return Err(Error::Port(other)),
        }
    }
    Ok(Requeue::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_refused_by_an_older_crd_says_to_upgrade_the_crds() {
        let message =
            "failed to create typed patch object (/; sluice.dev/v1alpha1, Kind=Rollout): .status.weight: field not declared in schema";
        let refused = kube::Error::Api(Box::new(kube::core::Status::failure(message, "").with_code(500)));
        let said = older_crd(&refused).expect("recognised");
        assert!(
            said.starts_with("the installed Rollout CRD is older than this controller (.status.weight is not in its schema)"),
            "{said}"
        );
        assert!(said.contains("kubectl apply -f crds/"), "{said}");
        let other = kube::Error::Api(Box::new(kube::core::Status::failure("etcdserver: request timed out", "").with_code(500)));
        assert_eq!(older_crd(&other), None);
    }
}
