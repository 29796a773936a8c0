//! Building an AnalysisRun from templates and advancing it measurement by measurement.
//! Pure: the caller takes the measurements (providers do I/O) and passes the time in.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::condition::{self, MeasuredValue};
use super::verdict::{self as analysis, InvalidPolicy, MetricPolicy};
use crate::api::{
    AnalysisArg, AnalysisPhase, AnalysisRunSpec, AnalysisRunStatus, AnalysisTemplateSpec, IntOrArg, Measurement, Metric, MetricResult,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RunError(pub String);

/// Merges templates into one run spec, with every `{{args.NAME}}` replaced.
/// `builtins` (Sluice's `sluice.*` arguments) are known to every template without being
/// declared. A Rollout argument overrides a template's default; one from a Secret stays a
/// reference in the run, replaced only when a measurement is taken
/// (`providers::secret::substitute_args`), so the Secret's value is never stored. An argument
/// left without a value is an error.
pub fn build(
    templates: &[(String, AnalysisTemplateSpec)],
    args: &[AnalysisArg],
    builtins: &[AnalysisArg],
) -> Result<AnalysisRunSpec, RunError> {
    let mut resolved: Vec<AnalysisArg> = Vec::new();
    let mut metrics = Vec::new();
    for (template_name, template) in templates {
        for arg in &template.args {
            let given = args.iter().find(|a| a.name == arg.name);
            let from_secret = given.and_then(|a| a.value_from.clone()).filter(|from| from.secret_key_ref.is_some());
            let value = given.and_then(|a| a.value.clone()).or_else(|| arg.value.clone());
            let entry = match (from_secret, value) {
                (Some(from), _) => AnalysisArg { name: arg.name.clone(), value: None, value_from: Some(from) },
                (None, Some(value)) => AnalysisArg::new(&arg.name, value),
                (None, None) => {
                    return Err(RunError(format!(
                        "analysis template {template_name} needs argument `{}`; add it to the rollout's analysis args",
                        arg.name
                    )));
                }
            };
            if !resolved.iter().any(|a| a.name == arg.name) {
                resolved.push(entry);
            }
        }
        for metric in &template.metrics {
            if metrics.iter().any(|m: &crate::api::Metric| m.name == metric.name) {
                return Err(RunError(format!("metric `{}` appears in more than one template", metric.name)));
            }
            let text = serde_json::to_string(metric).expect("metric serializes");
            // Built-ins last: a Rollout argument's value may name one.
            let substituted = substitute(&text, resolved.iter().chain(builtins));
            if let Some(missing) = references(&substituted).find(|name| !resolved.iter().any(|a| a.name == *name && a.value.is_none())) {
                return Err(RunError(format!(
                    "template {template_name}, metric {}: `{{{{args.{missing}}}}}` names an argument the template does not declare",
                    metric.name
                )));
            }
            let mut metric: crate::api::Metric = serde_json::from_str(&substituted).expect("substitution keeps JSON valid");
            settle_numbers(&mut metric).map_err(|e| RunError(format!("template {template_name}, metric {}: {e}", metric.name)))?;
            for expression in [&metric.success_condition, &metric.failure_condition].into_iter().flatten() {
                condition::check(expression).map_err(|e| RunError(format!("template {template_name}, metric {}: {e}", metric.name)))?;
            }
            MetricPolicy::of(&metric).map_err(|e| RunError(format!("template {template_name}, metric {}: {e}", metric.name)))?;
            metrics.push(metric);
        }
    }
    if metrics.is_empty() {
        return Err(RunError("the analysis templates define no metrics".into()));
    }
    resolved.extend(builtins.iter().cloned());
    Ok(AnalysisRunSpec { metrics, args: resolved, terminate: false })
}

/// The names of the `{{args.NAME}}` references left in `text`.
pub fn references(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("{{args.").filter_map(|(at, opening)| {
        let rest = &text[at + opening.len()..];
        rest.find("}}").map(|end| &rest[..end])
    })
}

/// A number field written as `{{args.NAME}}` holds the argument's text once it is replaced; the
/// run keeps the number it reads as.
fn settle_numbers(metric: &mut Metric) -> Result<(), InvalidPolicy> {
    let fields = [
        ("count", &mut metric.count, 1),
        ("failureLimit", &mut metric.failure_limit, -1),
        ("inconclusiveLimit", &mut metric.inconclusive_limit, -1),
        ("consecutiveErrorLimit", &mut metric.consecutive_error_limit, 0),
    ];
    for (field, value, min) in fields {
        *value = analysis::number(field, value, min)?.map(IntOrArg::Int);
    }
    Ok(())
}

fn substitute<'a>(text: &str, args: impl Iterator<Item = &'a AnalysisArg>) -> String {
    args.filter(|arg| arg.value.is_some()).fold(text.to_string(), |acc, arg| {
        let value = serde_json::to_string(arg.value.as_deref().unwrap_or_default()).expect("string serializes");
        acc.replace(&format!("{{{{args.{}}}}}", arg.name), &value[1..value.len() - 1])
    })
}

fn policies(spec: &AnalysisRunSpec) -> Vec<MetricPolicy> {
    spec.metrics
        .iter()
        .map(|m| MetricPolicy::of(m).unwrap_or_else(|_| MetricPolicy::of(&Default::default()).expect("default policy")))
        .collect()
}

/// Indices of the metrics due for a measurement at `now`.
pub fn due(spec: &AnalysisRunSpec, status: &AnalysisRunStatus, now: Timestamp) -> Vec<usize> {
    if spec.terminate || status.phase.is_completed() {
        return Vec::new();
    }
    let started = status.started_at.as_ref().map_or(now, |t| t.0);
    policies(spec)
        .iter()
        .enumerate()
        .filter(|(i, policy)| {
            let result = result_of(spec, status, *i);
            analysis::next_measurement_at(policy, &result, started).is_some_and(|at| at <= now)
        })
        .map(|(i, _)| i)
        .collect()
}

/// When the next measurement of any metric is due.
pub fn next_due(spec: &AnalysisRunSpec, status: &AnalysisRunStatus) -> Option<Timestamp> {
    if spec.terminate || status.phase.is_completed() {
        return None;
    }
    let started = status.started_at.as_ref()?.0;
    policies(spec).iter().enumerate().filter_map(|(i, p)| analysis::next_measurement_at(p, &result_of(spec, status, i), started)).min()
}

fn result_of(spec: &AnalysisRunSpec, status: &AnalysisRunStatus, index: usize) -> MetricResult {
    let name = &spec.metrics[index].name;
    status
        .metric_results
        .iter()
        .find(|r| &r.name == name)
        .cloned()
        .unwrap_or_else(|| MetricResult { name: name.clone(), ..Default::default() })
}

/// A measurement an earlier pass left in progress: since when, and what it carried.
#[derive(Clone, Debug, PartialEq)]
pub struct Resumed {
    pub since: Timestamp,
    pub carried: Option<serde_json::Value>,
}

/// Which measurement of `metric` comes next (from 0), and, when the last one is still in
/// progress, when it started and what it carried.
pub fn progress(status: &AnalysisRunStatus, metric: &str) -> (i32, Option<Resumed>) {
    let Some(result) = status.metric_results.iter().find(|r| r.name == metric) else {
        return (0, None);
    };
    let number = result.count.saturating_add(result.error);
    let resumed = result
        .measurements
        .last()
        .filter(|m| m.phase == AnalysisPhase::Running)
        .map(|m| Resumed { since: m.started_at.0, carried: m.value.as_deref().and_then(|v| serde_json::from_str(v).ok()) });
    (number, resumed)
}

/// The most of a measured value an AnalysisRun stores; the rest is cut, so the status always fits.
pub const MAX_STORED_VALUE: usize = 4096;
/// The most of a measurement's (or the run's) message an AnalysisRun stores.
pub const MAX_MESSAGE: usize = 1024;

/// A measurement's phase, value and message, as stored (cut to the limits above).
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    pub phase: AnalysisPhase,
    pub value: Option<String>,
    pub message: Option<String>,
    /// Of a measurement still in progress (phase Running): how long until it is taken up again.
    pub retry_after: Option<std::time::Duration>,
}

impl Judged {
    /// A measurement that could not be judged.
    pub fn error(message: impl Into<String>) -> Self {
        let message = Some(crate::text::truncate(&message.into(), MAX_MESSAGE));
        Self { phase: AnalysisPhase::Error, value: None, message, retry_after: None }
    }
}

/// Judges what a provider returned for `metric` (an `Err` is a provider error). The whole value
/// is judged; only the stored copy is cut. CPU-bound: the controller runs it off its async workers.
pub fn judge(metric: &crate::api::Metric, outcome: Result<MeasuredValue, String>) -> Judged {
    let (success, failure) = conditions_of(metric);
    let stored = |value: &MeasuredValue| value.display().map(|v| crate::text::truncate(&v, MAX_STORED_VALUE));
    let checked = [success, failure].into_iter().flatten().try_for_each(condition::check);
    if let Ok(MeasuredValue::InProgress { retry_after, note, .. }) = &outcome {
        let value = outcome.as_ref().ok().and_then(stored);
        let message = Some(crate::text::truncate(note, MAX_MESSAGE));
        return Judged { phase: AnalysisPhase::Running, value, message, retry_after: Some(*retry_after) };
    }
    let (phase, value, message) = match (outcome, checked) {
        (Err(error), _) => (AnalysisPhase::Error, None, Some(error)),
        (Ok(value), Err(e)) => (AnalysisPhase::Error, stored(&value), Some(e.to_string())),
        (Ok(value), Ok(())) => match condition::judge(success, failure, &value) {
            Ok(phase) => {
                let message = matches!(value, MeasuredValue::NoData).then(|| "no data".to_string());
                (phase, stored(&value), message)
            }
            Err(e) => (AnalysisPhase::Error, stored(&value), Some(e.to_string())),
        },
    };
    Judged { phase, value, message: message.map(|m| crate::text::truncate(&m, MAX_MESSAGE)), retry_after: None }
}

/// Records what a provider returned for metric `index` (an `Err` is a provider error).
pub fn record(
    spec: &AnalysisRunSpec,
    status: &mut AnalysisRunStatus,
    index: usize,
    started: Timestamp,
    finished: Timestamp,
    outcome: Result<MeasuredValue, String>,
) {
    let judged = judge(&spec.metrics[index], outcome);
    record_judged(spec, status, index, started, finished, judged);
}

/// Records a judged measurement of metric `index`.
pub fn record_judged(
    spec: &AnalysisRunSpec,
    status: &mut AnalysisRunStatus,
    index: usize,
    started: Timestamp,
    finished: Timestamp,
    judged: Judged,
) {
    let metric = &spec.metrics[index];
    let policy = MetricPolicy::of(metric).unwrap_or_else(|_| MetricPolicy::of(&Default::default()).expect("default policy"));
    let Judged { phase, value, message, retry_after } = judged;
    // A measurement taken up again keeps the start of its first attempt.
    let started = match status.metric_results.iter().find(|r| r.name == metric.name).and_then(|r| r.measurements.last()) {
        Some(last) if last.phase == AnalysisPhase::Running => last.started_at.0,
        _ => started,
    };
    let resume_at = retry_after.map(|after| Time(analysis::after(finished, after)));
    let finished_at = resume_at.is_none().then_some(Time(finished));
    let measurement = Measurement { phase, value, started_at: Time(started), finished_at, message, resume_at };
    let position = match status.metric_results.iter().position(|r| r.name == metric.name) {
        Some(position) => position,
        None => {
            status.metric_results.push(MetricResult { name: metric.name.clone(), ..Default::default() });
            status.metric_results.len() - 1
        }
    };
    analysis::record(&policy, &mut status.metric_results[position], measurement);
    settle(spec, status);
}

/// A metric's conditions. Without any, a CloudWatch alarm fails while in ALARM, a Lambda hook
/// passes on SUCCEEDED and a Job when it completes; any other final answer of those two fails.
fn conditions_of(metric: &crate::api::Metric) -> (Option<&str>, Option<&str>) {
    let (success, failure) = (metric.success_condition.as_deref(), metric.failure_condition.as_deref());
    if success.is_some() || failure.is_some() {
        return (success, failure);
    }
    let provider = &metric.provider;
    if provider.cloud_watch_alarm.is_some() {
        (None, Some(ALARM_FAILS))
    } else if provider.lambda.is_some() {
        (Some(LAMBDA_SUCCEEDS), Some(LAMBDA_FAILS))
    } else if provider.job.is_some() {
        (Some(JOB_SUCCEEDS), Some(JOB_FAILS))
    } else {
        (None, None)
    }
}

/// The failure condition of a CloudWatch alarm metric that states none: its value is the alarm state.
pub const ALARM_FAILS: &str = "result == 'ALARM'";
/// The conditions of a Lambda metric that states none: its value is the function's answer.
pub const LAMBDA_SUCCEEDS: &str = "result.hookStatus == 'SUCCEEDED'";
pub const LAMBDA_FAILS: &str = "result.hookStatus != 'SUCCEEDED'";
/// The conditions of a Job metric that states none: its value says how the Job ended.
pub const JOB_SUCCEEDS: &str = "result.phase == 'Succeeded'";
pub const JOB_FAILS: &str = "result.phase != 'Succeeded'";

/// Recomputes the run's phase from its metrics.
pub fn settle(spec: &AnalysisRunSpec, status: &mut AnalysisRunStatus) {
    if status.phase.is_completed() {
        return;
    }
    let results: Vec<MetricResult> = (0..spec.metrics.len()).map(|i| result_of(spec, status, i)).collect();
    let (phase, message) = analysis::run_phase(&policies(spec), &results, spec.terminate);
    status.phase = phase;
    status.message = message.map(|m| crate::text::truncate(&m, MAX_MESSAGE));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ArgumentSpec, MetricProvider, PrometheusMetric};

    fn template(query: &str) -> AnalysisTemplateSpec {
        AnalysisTemplateSpec {
            args: vec![
                ArgumentSpec { name: "service".into(), value: None },
                ArgumentSpec { name: "window".into(), value: Some("5m".into()) },
            ],
            metrics: vec![Metric {
                name: "error-rate".into(),
                success_condition: Some("result < 0.01".into()),
                provider: MetricProvider {
                    prometheus: Some(PrometheusMetric {
                        address: "http://prometheus:9090".into(),
                        query: query.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_measurement_in_progress_counts_for_nothing_until_decided_and_keeps_its_start() {
        let metric: Metric = serde_json::from_value(serde_json::json!({
            "name": "smoke", "provider": {"lambda": {"functionArn": "arn:aws:lambda:us-east-1:1:function:smoke"}}
        }))
        .unwrap();
        let spec = AnalysisRunSpec { metrics: vec![metric], args: vec![], terminate: false };
        let t0 = Timestamp::from_second(1_000).unwrap();
        let mut status = AnalysisRunStatus { started_at: Some(Time(t0)), ..Default::default() };
        let waiting = |step: u64| MeasuredValue::InProgress {
            retry_after: std::time::Duration::from_secs(5),
            carried: Some(serde_json::json!({"step": step})),
            note: format!("step {step}"),
        };
        record(&spec, &mut status, 0, t0, t0, Ok(waiting(1)));
        assert_eq!(status.phase, AnalysisPhase::Running);
        assert_eq!(next_due(&spec, &status), Some(Timestamp::from_second(1_005).unwrap()), "taken up again after its delay");
        assert!(due(&spec, &status, Timestamp::from_second(1_004).unwrap()).is_empty());
        let (number, resumed) = progress(&status, "smoke");
        assert_eq!(number, 0);
        assert_eq!(resumed, Some(Resumed { since: t0, carried: Some(serde_json::json!({"step": 1})) }));

        let t1 = Timestamp::from_second(1_005).unwrap();
        record(&spec, &mut status, 0, t1, t1, Ok(waiting(2)));
        let result = &status.metric_results[0];
        assert_eq!((result.measurements.len(), result.count), (1, 0), "one measurement, still undecided");
        assert_eq!(progress(&status, "smoke").1.map(|r| r.since), Some(t0));

        let t2 = Timestamp::from_second(1_010).unwrap();
        record(&spec, &mut status, 0, t2, t2, Ok(MeasuredValue::Json(serde_json::json!({"hookStatus": "SUCCEEDED"}))));
        let result = &status.metric_results[0];
        assert_eq!((result.measurements.len(), result.count, result.successful), (1, 1, 1));
        assert_eq!(result.measurements[0].started_at.0, t0, "the decided measurement started with its first attempt");
        assert_eq!(result.measurements[0].resume_at, None);
        assert_eq!(status.phase, AnalysisPhase::Successful);
        assert_eq!(progress(&status, "smoke"), (1, None));
    }

    #[test]
    fn lambda_and_job_metrics_without_conditions_pass_only_on_success() {
        let metric = |provider: serde_json::Value| -> Metric {
            serde_json::from_value(serde_json::json!({"name": "m", "provider": provider})).unwrap()
        };
        let lambda = metric(serde_json::json!({"lambda": {"functionArn": "arn:aws:lambda:us-east-1:1:function:f"}}));
        let job = metric(serde_json::json!({"job": {"spec": {"template": {}}}}));
        let phase = |m: &Metric, value: serde_json::Value| judge(m, Ok(MeasuredValue::Json(value))).phase;
        assert_eq!(phase(&lambda, serde_json::json!({"hookStatus": "SUCCEEDED"})), AnalysisPhase::Successful);
        assert_eq!(phase(&lambda, serde_json::json!({"hookStatus": "FAILED"})), AnalysisPhase::Failed);
        assert_eq!(phase(&lambda, serde_json::json!({"hookStatus": "TIMED_OUT"})), AnalysisPhase::Failed);
        assert_eq!(phase(&job, serde_json::json!({"phase": "Succeeded"})), AnalysisPhase::Successful);
        assert_eq!(phase(&job, serde_json::json!({"phase": "TimedOut"})), AnalysisPhase::Failed);
    }

    #[test]
    fn arguments_are_substituted_with_rollout_values_first() {
        let t = template(r#"sum(rate(errors{service="{{args.service}}"}[{{args.window}}]))"#);
        let args = [AnalysisArg::new("service", "checkout")];
        let spec = build(&[("success-rate".into(), t)], &args, &[]).unwrap();
        let query = &spec.metrics[0].provider.prometheus.as_ref().unwrap().query;
        assert_eq!(query, r#"sum(rate(errors{service="checkout"}[5m]))"#);
    }

    #[test]
    fn built_in_arguments_need_no_declaration_and_a_rollout_value_may_name_one() {
        let t = template(r#"errors{tg="{{args.sluice.canaryTargetGroup}}",rev="{{args.service}}"}"#);
        let builtins = [AnalysisArg::new("sluice.canaryTargetGroup", "targetgroup/green/2")];
        let args = [AnalysisArg::new("service", "{{args.sluice.canaryRevision}}")];
        let with_revision = [builtins[0].clone(), AnalysisArg::new("sluice.canaryRevision", "abc123")];
        let spec = build(&[("t".into(), t)], &args, &with_revision).unwrap();
        let query = &spec.metrics[0].provider.prometheus.as_ref().unwrap().query;
        assert_eq!(query, r#"errors{tg="targetgroup/green/2",rev="abc123"}"#);
        assert!(spec.args.iter().any(|a| a.name == "sluice.canaryTargetGroup"), "the run shows the values it used");
    }

    #[test]
    fn an_argument_from_a_secret_stays_a_reference_in_the_run() {
        let t = template(r#"up{token="{{args.service}}"}"#);
        let from = crate::api::ArgValueFrom {
            secret_key_ref: Some(crate::api::SecretKeyRef { name: "tokens".into(), key: "api".into() }),
            field_ref: None,
        };
        let args = [AnalysisArg { name: "service".into(), value: None, value_from: Some(from.clone()) }];
        let spec = build(&[("t".into(), t)], &args, &[]).unwrap();
        assert_eq!(spec.metrics[0].provider.prometheus.as_ref().unwrap().query, r#"up{token="{{args.service}}"}"#);
        let stored = spec.args.iter().find(|a| a.name == "service").unwrap();
        assert_eq!((stored.value.as_deref(), stored.value_from.as_ref()), (None, Some(&from)), "no value is stored");
    }

    #[test]
    fn timing_and_limits_written_as_arguments_take_the_rollouts_values() {
        let mut t = template("up");
        t.args.extend(["count", "limit", "every"].map(|name| ArgumentSpec { name: name.into(), value: None }));
        let metric = &mut t.metrics[0];
        metric.count = Some(IntOrArg::Arg("{{args.count}}".into()));
        metric.failure_limit = Some(IntOrArg::Arg("{{args.limit}}".into()));
        metric.interval = Some("{{args.every}}".into());
        metric.initial_delay = Some("{{args.window}}".into());
        let with = |count: &str| {
            let values = [("service", "checkout"), ("count", count), ("limit", "-1"), ("every", "30s")];
            let args: Vec<AnalysisArg> = values.iter().map(|(name, value)| AnalysisArg::new(*name, *value)).collect();
            build(&[("budget".into(), t.clone())], &args, &[])
        };
        let spec = with("6").unwrap();
        let metric = &spec.metrics[0];
        assert_eq!((metric.count.clone(), metric.failure_limit.clone()), (Some(IntOrArg::Int(6)), Some(IntOrArg::Int(-1))));
        assert_eq!((metric.interval.as_ref().unwrap().0.as_str(), metric.initial_delay.as_ref().unwrap().0.as_str()), ("30s", "5m"));
        let refused = with("six").unwrap_err();
        assert_eq!(refused.0, "template budget, metric error-rate: count is `six`, not a whole number of at least 1");
    }

    #[test]
    fn a_missing_argument_says_what_to_add() {
        let err = build(&[("success-rate".into(), template("up"))], &[], &[]).unwrap_err();
        assert!(err.0.contains("needs argument `service`"), "{err}");
        let undeclared = build(&[("t".into(), template("x{{args.nope}}"))], &[AnalysisArg::new("service", "a")], &[]).unwrap_err();
        assert!(undeclared.0.contains("{{args.nope}}"), "{undeclared}");
    }

    #[test]
    fn a_run_is_decided_by_its_measurements() {
        let args = [AnalysisArg::new("service", "checkout")];
        let spec = build(&[("t".into(), template("up"))], &args, &[]).unwrap();
        let t0 = Timestamp::from_second(0).unwrap();
        let mut status = AnalysisRunStatus { started_at: Some(Time(t0)), ..Default::default() };
        assert_eq!(due(&spec, &status, t0), vec![0]);
        record(&spec, &mut status, 0, t0, t0, Ok(MeasuredValue::scalar(0.2)));
        assert_eq!(status.phase, AnalysisPhase::Failed);
        assert!(status.message.as_deref().unwrap().contains("last value 0.2"), "{:?}", status.message);
        assert!(due(&spec, &status, t0).is_empty());
    }

    #[test]
    fn a_huge_value_is_judged_whole_and_stored_cut() {
        let args = [AnalysisArg::new("service", "checkout")];
        let mut spec = build(&[("t".into(), template("up"))], &args, &[]).unwrap();
        spec.metrics[0].success_condition = Some("size(result) == 200000 && result.all(x, x < 0.01)".into());
        let t0 = Timestamp::from_second(0).unwrap();
        let mut status = AnalysisRunStatus { started_at: Some(Time(t0)), ..Default::default() };
        record(&spec, &mut status, 0, t0, t0, Ok(MeasuredValue::vector(vec![0.001; 200_000])));
        let measurement = &status.metric_results[0].measurements[0];
        assert_eq!(measurement.phase, AnalysisPhase::Successful, "{:?}", measurement.message);
        let stored = measurement.value.as_deref().unwrap();
        assert!(stored.len() < MAX_STORED_VALUE + 64 && stored.contains("(truncated; "), "{}", stored.len());
        record(&spec, &mut status, 0, t0, t0, Err("x".repeat(100_000)));
        assert!(status.metric_results[0].measurements[1].message.as_ref().unwrap().len() < MAX_MESSAGE + 64);
        assert!(serde_json::to_string(&status).unwrap().len() < 16 * 1024);
    }
}
