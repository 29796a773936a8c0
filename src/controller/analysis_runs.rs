//! Measuring analysis runs: take every measurement that is due, record it, requeue for the next.
//!
//! Only runs that Sluice created for a Rollout are measured: a run must carry a controller
//! ownerReference to a Rollout that exists in its namespace with that uid. Anyone else's
//! AnalysisRun is marked once and never measured, so creating one is not a way to make the
//! controller fetch URLs or read Secrets.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event as KubeEvent, EventType};
use tracing::warn;

use super::watched::{Unreadable, WatchedRun};
use super::{Context, Error};
use crate::analysis::condition;
use crate::analysis::providers::secret;
use crate::analysis::run::{self as analysis_run, Judged};
use crate::api::{AnalysisPhase, AnalysisRun, AnalysisRunStatus, Rollout};
use crate::engine::tenancy::{NamedResource, Refusal};
use crate::platform::kubernetes::FIELD_MANAGER;
use crate::ports::Measuring;

pub struct Runner {
    pub context: Arc<Context>,
    pub measure: Arc<dyn crate::ports::Measure>,
    /// Consecutive failed passes per run, for the backoff of its retries.
    pub failing: super::backoff::Failures,
}

/// Server-side apply of the status fields the controller sets on a run, under its field manager.
pub(super) async fn apply_status<K>(api: &Api<K>, name: &str, status: serde_json::Value) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch =
        serde_json::json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun", "metadata": {"name": name}, "status": status});
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await.map(|_| ())
}

/// The status message of a run that is not measured because Sluice did not create it.
pub const NOT_MEASURED: &str = "not measured: Sluice measures only the AnalysisRuns it creates for a Rollout";

/// One run's pass, its panics contained, its failures counted for the backoff of its retries.
pub async fn reconcile(watched: Arc<WatchedRun>, runner: Arc<Runner>) -> Result<Requeue, Error> {
    let result = super::contained(async {
        match &*watched {
            WatchedRun::Readable(run) => pass(run, &runner).await,
            WatchedRun::Unreadable(unreadable) => report_unreadable(&watched, unreadable, &runner).await,
        }
    })
    .await;
    runner.failing.record(&key(&*watched), result.is_err());
    result
}

fn key(run: &impl kube::Resource) -> String {
    format!("{}/{}", run.namespace().unwrap_or_default(), run.name_any())
}

/// The status message of a run whose object the controller's types cannot read.
pub fn unreadable_message(error: &str) -> String {
    let message = format!(
        "not measured: this AnalysisRun cannot be read ({error}); it was stored under an older schema or edited past it: delete it, and retry the rollout for a new run"
    );
    crate::text::truncate(&message, analysis_run::MAX_MESSAGE)
}

/// A run that cannot be read is never measured: it ends in Error with the field at fault, said
/// once in its status, an event and the log. A decision it reached before stands.
async fn report_unreadable(watched: &WatchedRun, unreadable: &Unreadable<AnalysisRunStatus>, runner: &Runner) -> Result<Requeue, Error> {
    if unreadable.status.phase.is_completed() {
        return Ok(Requeue::await_change());
    }
    let (namespace, name) = (watched.namespace().unwrap_or_default(), watched.name_any());
    let message = unreadable_message(&unreadable.error);
    warn!(%namespace, run = %name, error = %unreadable.error, "an AnalysisRun cannot be read; it is not measured");
    let api: Api<WatchedRun> = Api::namespaced(runner.context.client.clone(), &namespace);
    apply_status(&api, &name, serde_json::json!({"phase": AnalysisPhase::Error, "message": message})).await?;
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: crate::engine::EventReason::InvalidSpec.to_string(),
        note: Some(message),
        action: "Measure".into(),
        secondary: None,
    };
    // An event that cannot be written changes nothing: the status says it.
    let _ = runner.context.recorder.publish(&event, &kube::Resource::object_ref(watched, &())).await;
    Ok(Requeue::await_change())
}

async fn pass(run: &AnalysisRun, runner: &Runner) -> Result<Requeue, Error> {
    let started = std::time::Instant::now();
    let before = run.status.clone().unwrap_or_default();
    let mut status = before.clone();
    // A run with no metrics is one that could not be built: its creator writes its Error status.
    if status.phase.is_completed() || run.spec.metrics.is_empty() {
        return Ok(Requeue::await_change());
    }
    let namespace = run.namespace().unwrap_or_default();
    // Written as a watched run: what the API server answers is read behind the same guard.
    let api: Api<WatchedRun> = Api::namespaced(runner.context.client.clone(), &namespace);
    if let Some(why) = not_created_by_sluice(&runner.context, run, &namespace).await? {
        // It can never run: its phase says so, as `kubectl get analysisruns` shows it.
        let message = format!("{NOT_MEASURED} ({why})");
        apply_status(&api, &run.name_any(), serde_json::json!({"phase": AnalysisPhase::Error, "message": message})).await?;
        return Ok(Requeue::await_change());
    }
    let now = Timestamp::now();
    status.started_at.get_or_insert(Time(now));
    let (name, uid) = (run.name_any(), run.uid().unwrap_or_default());
    let valued: Vec<_> = run.spec.args.iter().filter(|a| a.value.is_some()).cloned().collect();
    for index in analysis_run::due(&run.spec, &status, now) {
        let metric = run.spec.metrics[index].clone();
        let client = Some(&runner.context.client);
        let (number, resumed) = analysis_run::progress(&status, &metric.name);
        let at = Measuring { namespace: &namespace, run: &name, run_uid: &uid, args: &valued, now, number, resumed };
        let outcome = match secret::substitute_args(client, &namespace, &metric, &run.spec.args).await {
            Ok((measured, secrets)) => match allowed(&runner.context, &namespace, &measured) {
                Ok(()) => runner.measure.measure(&at, &measured).await.map_err(|e| secret::scrub(&e.to_string(), &secrets)),
                Err(refused) => Err(refused.0),
            },
            Err(unreadable) => Err(unreadable.to_string()),
        };
        let judged = condition::bounded(condition::DEADLINE, move || analysis_run::judge(&metric, outcome))
            .await
            .unwrap_or_else(|overran| Judged::error(overran.to_string()));
        analysis_run::record_judged(&run.spec, &mut status, index, now, Timestamp::now(), judged);
    }
    analysis_run::settle(&run.spec, &mut status);
    if status != before {
        match apply_status(&api, &run.name_any(), serde_json::json!(status)).await {
            Ok(()) => {}
            Err(kube::Error::Api(refused)) if too_large(&refused) => {
                // Retrying the same write would fail forever: end the run with the reason instead.
                let ended = unstorable(&status, &refused.message);
                apply_status(&api, &run.name_any(), serde_json::json!(ended)).await?;
                return Ok(Requeue::await_change());
            }
            Err(other) => return Err(other.into()),
        }
    }
    runner.context.metrics.observe("analysisrun", started.elapsed());
    Ok(match analysis_run::next_due(&run.spec, &status) {
        Some(at) => Requeue::requeue(Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)),
        None => Requeue::await_change(),
    })
}

/// Why a run is not Sluice's own, if it is not: no controller ownerReference to a Rollout, or
/// one naming a Rollout that is not there with that uid.
async fn not_created_by_sluice(context: &Context, run: &AnalysisRun, namespace: &str) -> Result<Option<String>, Error> {
    let owner = run.owner_references().iter().find(|o| o.controller == Some(true));
    let Some(owner) = owner.filter(|o| o.kind == "Rollout" && o.api_version == "sluice.dev/v1alpha1") else {
        return Ok(Some(
            "it has no controller ownerReference to a Rollout; reference an AnalysisTemplate from a Rollout's analysis instead".into(),
        ));
    };
    // The watch cache answers for every run of a live Rollout; the API server only for the rest
    // (a cache not yet filled, a Rollout just created or gone).
    let cached = context.rollouts.get(&kube::runtime::reflector::ObjectRef::new(&owner.name).within(namespace));
    if cached.is_some_and(|rollout| rollout.uid().as_deref() == Some(owner.uid.as_str())) {
        return Ok(None);
    }
    let rollouts: Api<Rollout> = Api::namespaced(context.client.clone(), namespace);
    Ok(match rollouts.get_metadata_opt(&owner.name).await? {
        Some(rollout) if rollout.metadata.uid.as_deref() == Some(owner.uid.as_str()) => None,
        Some(_) => Some(format!("its owner Rollout {} has another uid", owner.name)),
        None => Some(format!("its owner Rollout {} does not exist in namespace {namespace}", owner.name)),
    })
}

/// An API server refusal of a write for its size (etcd's request limit, or validation).
fn too_large(status: &kube::core::Status) -> bool {
    let message = status.message.to_ascii_lowercase();
    status.code == 413
        || (matches!(status.code, 422 | 500) && ["too large", "too long", "larger than max"].iter().any(|m| message.contains(m)))
}

/// A metric that calls into AWS on the controller's identity (a Lambda function) names only
/// resources the run's namespace is allowed.
fn allowed(ctx: &Context, namespace: &str, metric: &crate::api::Metric) -> Result<(), Refusal> {
    match &metric.provider.lambda {
        Some(function) => {
            let resource = NamedResource { field: "provider.lambda.functionArn", arn: function.function_arn.clone() };
            ctx.tenancy.check_arn(namespace, &resource)
        }
        None => Ok(()),
    }
}

/// The status as it was before this pass, ended in Error with why the new measurements could not
/// be stored; small enough to store.
fn unstorable(written: &AnalysisRunStatus, refusal: &str) -> AnalysisRunStatus {
    let reason = crate::text::truncate(refusal, 256);
    AnalysisRunStatus {
        phase: AnalysisPhase::Error,
        message: Some(format!(
            "the measurements could not be stored in the AnalysisRun (the API server refused the status: {reason}); make the metric's answer smaller"
        )),
        metric_results: Vec::new(),
        started_at: written.started_at.clone(),
    }
}

/// A failed pass is tried again as a Rollout's is: after 5 s, doubling to 5 minutes, with jitter.
pub fn error_policy(run: Arc<WatchedRun>, error: &Error, runner: Arc<Runner>) -> Requeue {
    let label = super::metrics::ErrorLabel { controller: "analysisrun", category: error.category() };
    runner.context.metrics.failures.get_or_create(&label).inc();
    Requeue::requeue(runner.failing.wait(&key(&*run)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_refusals_are_recognised_and_end_the_run() {
        let status = |code: u16, message: &str| kube::core::Status { code, message: message.into(), ..Default::default() };
        assert!(too_large(&status(413, "Request Entity Too Large")));
        assert!(too_large(&status(422, "etcdserver: request is too large")));
        assert!(too_large(&status(500, "rpc error: code = ResourceExhausted desc = trying to send message larger than max")));
        assert!(!too_large(&status(409, "conflict")));
        let ended = unstorable(&AnalysisRunStatus::default(), &"x".repeat(10_000));
        assert_eq!(ended.phase, AnalysisPhase::Error);
        assert!(ended.message.as_ref().unwrap().len() < 1024);
    }
}
