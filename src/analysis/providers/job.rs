//! Kubernetes Jobs as measurements (Argo's `job` provider): each measurement makes one Job from
//! the metric's template in the rollout's namespace, owned by the run, and is decided when the
//! Job controller says it completed or failed. A Job that outlasts the metric's timeout is
//! deleted and the measurement fails. The value judged says how the Job ended.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::ProviderError;
use crate::analysis::condition::MeasuredValue;
use crate::api::{JobMetric, format_duration};
use crate::ports::Measuring;

/// How long a Job may run when the metric sets no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest name a Job may have: its pods carry it as a label value.
const MAX_NAME: usize = 63;

/// The name of the Job of measurement `number` of `metric` in `run`: readable while it fits,
/// else cut with a hash of the whole, so every measurement has its own.
pub fn job_name(run: &str, metric: &str, number: i32) -> String {
    let full: String =
        format!("{run}-{metric}-{number}").to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let full = full.trim_matches('-').to_string();
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash: String = Sha256::digest(full.as_bytes()).iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hash}", full[..MAX_NAME - hash.len() - 1].trim_end_matches('-'))
}

/// The Job as made for a measurement: the metric's template, owned by the run.
pub fn job_of(at: &Measuring<'_>, name: &str, spec: &JobMetric) -> Job {
    let owner = OwnerReference {
        api_version: "sluice.dev/v1alpha1".into(),
        kind: "AnalysisRun".into(),
        name: at.run.to_string(),
        uid: at.run_uid.to_string(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let metadata = spec.metadata.clone().unwrap_or_default();
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(at.namespace.to_string()),
            labels: (!metadata.labels.is_empty()).then_some(metadata.labels),
            annotations: (!metadata.annotations.is_empty()).then_some(metadata.annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(spec.spec.clone()),
        status: None,
    }
}

pub fn timeout_of(spec: &JobMetric) -> Result<Duration, ProviderError> {
    match &spec.timeout {
        None => Ok(DEFAULT_TIMEOUT),
        Some(d) => d.to_duration().map_err(|e| ProviderError::Config(format!("provider.job.timeout: {e}"))),
    }
}

pub async fn measure(
    kube: Option<&kube::Client>,
    at: &Measuring<'_>,
    metric: &str,
    spec: &JobMetric,
) -> Result<MeasuredValue, ProviderError> {
    let Some(kube) = kube else {
        return Err(ProviderError::Config(format!(
            "metric {metric}: a job metric needs the Kubernetes API, and this measurement has none"
        )));
    };
    let timeout = timeout_of(spec)?;
    let name = job_name(at.run, metric, at.number);
    let jobs: Api<Job> = Api::namespaced(kube.clone(), at.namespace);
    let what = format!("Job {}/{name}", at.namespace);
    let job = match jobs.get_opt(&name).await.map_err(|e| kube_error(&what, e))? {
        Some(job) => job,
        None => match jobs.create(&PostParams::default(), &job_of(at, &name, spec)).await {
            Ok(job) => job,
            Err(kube::Error::Api(refused)) if refused.code == 409 => jobs.get(&name).await.map_err(|e| kube_error(&what, e))?,
            Err(e) => return Err(kube_error(&what, e)),
        },
    };
    let owned = job.metadata.owner_references.iter().flatten().any(|o| o.uid == at.run_uid && o.kind == "AnalysisRun");
    if !owned {
        return Err(ProviderError::Config(format!(
            "{what} exists and is not this run's; it is left alone: delete or rename it, then retry the rollout"
        )));
    }
    if let Some((phase, reason, message)) = ended(&job) {
        return Ok(MeasuredValue::Json(json!({"phase": phase, "job": name, "reason": reason, "message": message})));
    }
    let waited = Duration::try_from(at.now.duration_since(at.since())).unwrap_or_default();
    if waited >= timeout {
        let background = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
        jobs.delete(&name, &background).await.map_err(|e| kube_error(&what, e))?;
        let message = format!("still running after {}, past provider.job.timeout; deleted", format_duration(waited));
        return Ok(MeasuredValue::Json(json!({"phase": "TimedOut", "job": name, "reason": "Timeout", "message": message})));
    }
    // Look again soon while the Job is young, then less often.
    let retry_after = (waited / 10).clamp(Duration::from_secs(1), Duration::from_secs(10));
    let note = format!("{what} is running; looked at again in {}", format_duration(retry_after));
    Ok(MeasuredValue::InProgress { retry_after, carried: Some(Value::String(name)), note })
}

/// How the Job ended, from its Complete or Failed condition.
fn ended(job: &Job) -> Option<(&'static str, String, String)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().filter(|c| c.status == "True").find_map(|c| {
        let phase = match c.type_.as_str() {
            "Complete" => "Succeeded",
            "Failed" => "Failed",
            _ => return None,
        };
        Some((phase, c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
    })
}

fn kube_error(what: &str, error: kube::Error) -> ProviderError {
    match &error {
        kube::Error::Api(refused) if refused.code == 403 => ProviderError::Denied(format!(
            "{what}: the controller may not manage Jobs here ({}); its ClusterRole needs create, get and delete on batch/jobs",
            refused.message
        )),
        kube::Error::Api(refused) if refused.code == 422 || refused.code == 400 => {
            ProviderError::Config(format!("{what}: the API server refused the Job: {}; fix provider.job.spec", refused.message))
        }
        _ => ProviderError::Unreachable(format!("{what}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_fit_a_label_and_stay_distinct() {
        assert_eq!(job_name("web-abc-0-step-1", "smoke", 0), "web-abc-0-step-1-smoke-0");
        assert_eq!(job_name("web", "Smoke_Test", 2), "web-smoke-test-2");
        let long = "a".repeat(200);
        let (first, second) = (job_name(&long, "smoke", 0), job_name(&long, "smoke", 1));
        assert!(first.len() <= MAX_NAME && second.len() <= MAX_NAME, "{first}");
        assert_ne!(first, second);
        assert!(first.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        assert!(!first.ends_with('-') && !first.starts_with('-'));
    }

    #[test]
    fn a_job_is_owned_by_its_run_and_carries_the_template() {
        let spec: JobMetric = serde_json::from_value(json!({
            "metadata": {"labels": {"team": "web"}},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "smoke", "image": "smoke:1"}]}}}
        }))
        .unwrap();
        let at = Measuring { run: "web-run", run_uid: "uid-1", ..Measuring::at("shop", jiff::Timestamp::UNIX_EPOCH) };
        let job = job_of(&at, "web-run-smoke-0", &spec);
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()), ("AnalysisRun", "web-run", "uid-1"));
        assert_eq!(job.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(job.metadata.labels.unwrap()["team"], "web");
        assert_eq!(job.spec.unwrap().backoff_limit, Some(0));
    }
}
