//! Measuring analysis runs: take every measurement that is due, record it, requeue for the next.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;

use super::{Context, Error};
use crate::analysis::condition::MeasuredValue;
use crate::analysis::run as analysis_run;
use crate::api::{AnalysisRun, Metric};

/// Takes one measurement of a metric (the metric providers implement it).
pub trait Measure: Send + Sync + 'static {
    fn measure<'a>(&'a self, namespace: &'a str, metric: &'a Metric, now: Timestamp) -> BoxFuture<'a, Result<MeasuredValue, String>>;
}

pub struct Runner {
    pub context: Arc<Context>,
    pub measure: Arc<dyn Measure>,
}

pub async fn reconcile(run: Arc<AnalysisRun>, runner: Arc<Runner>) -> Result<Requeue, Error> {
    let started = std::time::Instant::now();
    let before = run.status.clone().unwrap_or_default();
    let mut status = before.clone();
    // A run with no metrics is one that could not be built: its creator writes its Error status.
    if status.phase.is_completed() || run.spec.metrics.is_empty() {
        return Ok(Requeue::await_change());
    }
    let now = Timestamp::now();
    status.started_at.get_or_insert(Time(now));
    let namespace = run.namespace().unwrap_or_default();
    for index in analysis_run::due(&run.spec, &status, now) {
        let metric = &run.spec.metrics[index];
        let outcome = runner.measure.measure(&namespace, metric, now).await;
        analysis_run::record(&run.spec, &mut status, index, now, Timestamp::now(), outcome);
    }
    analysis_run::settle(&run.spec, &mut status);
    if status != before {
        let api: Api<AnalysisRun> = Api::namespaced(runner.context.client.clone(), &namespace);
        let patch = serde_json::json!({"status": status});
        api.patch_status(&run.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    runner.context.metrics.observe("analysisrun", started.elapsed());
    Ok(match analysis_run::next_due(&run.spec, &status) {
        Some(at) => Requeue::requeue(Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)),
        None => Requeue::await_change(),
    })
}

pub fn error_policy(_run: Arc<AnalysisRun>, error: &Error, runner: Arc<Runner>) -> Requeue {
    let label = super::metrics::ErrorLabel { controller: "analysisrun", category: error.category() };
    runner.context.metrics.failures.get_or_create(&label).inc();
    Requeue::requeue(Duration::from_secs(5))
}
