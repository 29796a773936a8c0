//! Analysis verdicts: measurements → metric phase → run phase, and when to measure next.
//!
//! The rules (docs/analysis.md says them for users):
//! * A measurement is Successful, Failed, Inconclusive (including "no data") or Error.
//! * Errors do not count toward `count`; more than `consecutiveErrorLimit` (default 4) errors in a
//!   row make the metric Error.
//! * More than `failureLimit` (default 0) failures make it Failed; more than `inconclusiveLimit`
//!   (default 0) inconclusive measurements make it Inconclusive.
//! * Once `count` measurements are taken it is Successful only if at least one succeeded:
//!   no data is never success.
//! * A run is Failed if any metric failed, Error if any erred, Running while any runs,
//!   Inconclusive if any is, otherwise Successful. Dry-run metrics are recorded but never decide.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::{AnalysisPhase, DurationString, IntOrArg, InvalidDuration, Measurement, Metric, MetricResult};

pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: i32 = 4;
/// Measurements kept per metric in an AnalysisRun's status; the counters keep the totals.
pub const MEASUREMENT_RETENTION: usize = 20;

/// The limits and timing of one metric, resolved from its spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricPolicy {
    /// `None`: measure until the run is terminated.
    pub count: Option<i32>,
    pub interval: Option<Duration>,
    pub initial_delay: Duration,
    pub failure_limit: i32,
    pub inconclusive_limit: i32,
    pub consecutive_error_limit: i32,
    pub dry_run: bool,
}

/// A metric whose timing or limits cannot be used as written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidPolicy {
    #[error("{field}: {source}")]
    Duration { field: &'static str, source: InvalidDuration },
    #[error("{field} is `{text}`, not a whole number of at least {min}")]
    Number { field: &'static str, text: String, min: i32 },
}

impl MetricPolicy {
    pub fn of(metric: &Metric) -> Result<Self, InvalidPolicy> {
        let duration = |field, value: &Option<DurationString>| {
            value.as_ref().map(|d| d.to_duration()).transpose().map_err(|source| InvalidPolicy::Duration { field, source })
        };
        let interval = duration("interval", &metric.interval)?;
        let count = match (number("count", &metric.count, 1)?, interval) {
            (Some(count), _) => Some(count),
            (None, None) => Some(1),
            (None, Some(_)) => None,
        };
        Ok(Self {
            count,
            interval,
            initial_delay: duration("initialDelay", &metric.initial_delay)?.unwrap_or_default(),
            failure_limit: limit(number("failureLimit", &metric.failure_limit, -1)?),
            inconclusive_limit: limit(number("inconclusiveLimit", &metric.inconclusive_limit, -1)?),
            consecutive_error_limit: number("consecutiveErrorLimit", &metric.consecutive_error_limit, 0)?
                .unwrap_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT),
            dry_run: metric.dry_run,
        })
    }
}

/// A number field at or above `min`. The text of a replaced argument is read as a number here.
pub fn number(field: &'static str, value: &Option<IntOrArg>, min: i32) -> Result<Option<i32>, InvalidPolicy> {
    let n = match value {
        None => return Ok(None),
        Some(IntOrArg::Int(n)) => Some(*n),
        Some(IntOrArg::Arg(text)) => text.trim().parse::<i32>().ok(),
    };
    match n {
        Some(n) if n >= min => Ok(Some(n)),
        _ => Err(InvalidPolicy::Number { field, text: text_of(value), min }),
    }
}

fn text_of(value: &Option<IntOrArg>) -> String {
    match value {
        Some(IntOrArg::Int(n)) => n.to_string(),
        Some(IntOrArg::Arg(text)) => text.chars().take(64).collect(),
        None => String::new(),
    }
}

/// A failure or inconclusive limit: 0 by default, and -1 (Argo's "no limit") never reached.
fn limit(written: Option<i32>) -> i32 {
    match written {
        Some(-1) => i32::MAX,
        other => other.unwrap_or(0).max(0),
    }
}

/// Adds a measurement to a metric's result and recomputes its phase.
pub fn record(policy: &MetricPolicy, result: &mut MetricResult, measurement: Measurement) {
    // A measurement still in progress is kept as the last one until it is decided; it counts
    // toward nothing.
    if result.measurements.last().is_some_and(|last| last.phase == AnalysisPhase::Running) {
        result.measurements.pop();
    }
    match measurement.phase {
        AnalysisPhase::Running => {}
        // Saturating: the counts come from a status anyone with `patch analysisruns/status` can write.
        AnalysisPhase::Error => {
            result.error = result.error.saturating_add(1);
            result.consecutive_error = result.consecutive_error.saturating_add(1);
        }
        phase => {
            result.consecutive_error = 0;
            result.count = result.count.saturating_add(1);
            let counter = match phase {
                AnalysisPhase::Successful => &mut result.successful,
                AnalysisPhase::Failed => &mut result.failed,
                _ => &mut result.inconclusive,
            };
            *counter = counter.saturating_add(1);
        }
    }
    result.measurements.push(measurement);
    if result.measurements.len() > MEASUREMENT_RETENTION {
        let excess = result.measurements.len() - MEASUREMENT_RETENTION;
        result.measurements.drain(..excess);
    }
    result.dry_run = policy.dry_run;
    let (phase, message) = metric_phase(policy, result);
    result.phase = phase;
    result.message = message;
}

fn last_value(result: &MetricResult) -> String {
    result
        .measurements
        .last()
        .map(|m| match (&m.value, &m.message) {
            (Some(value), _) => format!("; last value {value}"),
            (None, Some(message)) => format!("; last: {message}"),
            (None, None) => String::new(),
        })
        .unwrap_or_default()
}

/// The phase of one metric from its counters.
pub fn metric_phase(policy: &MetricPolicy, result: &MetricResult) -> (AnalysisPhase, Option<String>) {
    let name = &result.name;
    let last = last_value(result);
    if result.consecutive_error > policy.consecutive_error_limit {
        let message =
            format!("metric {name}: {} errors in a row (limit {}){last}", result.consecutive_error, policy.consecutive_error_limit);
        return (AnalysisPhase::Error, Some(message));
    }
    if result.failed > policy.failure_limit {
        let message =
            format!("metric {name}: {} of {} measurements failed (limit {}){last}", result.failed, result.count, policy.failure_limit);
        return (AnalysisPhase::Failed, Some(message));
    }
    if result.inconclusive > policy.inconclusive_limit {
        let message =
            format!("metric {name}: {} inconclusive measurements (limit {}){last}", result.inconclusive, policy.inconclusive_limit);
        return (AnalysisPhase::Inconclusive, Some(message));
    }
    if policy.count.is_some_and(|count| result.count >= count) {
        if result.successful == 0 {
            return (AnalysisPhase::Inconclusive, Some(format!("metric {name}: no successful measurement{last}")));
        }
        return (
            AnalysisPhase::Successful,
            Some(format!("metric {name}: {} of {} measurements successful{last}", result.successful, result.count)),
        );
    }
    if let Some(last) = result.measurements.last().filter(|m| m.phase == AnalysisPhase::Running) {
        let note = last.message.as_deref().unwrap_or("in progress");
        return (AnalysisPhase::Running, Some(format!("metric {name}: {note}")));
    }
    if result.count + result.error == 0 {
        return (AnalysisPhase::Pending, None);
    }
    (AnalysisPhase::Running, Some(format!("metric {name}: {} measurements so far{last}", result.count)))
}

/// When the next measurement of a metric is due; `None` once the metric is decided.
pub fn next_measurement_at(policy: &MetricPolicy, result: &MetricResult, run_started: Timestamp) -> Option<Timestamp> {
    if metric_phase(policy, result).0.is_completed() {
        return None;
    }
    match result.measurements.last() {
        None => Some(after(run_started, policy.initial_delay)),
        Some(last) if last.phase == AnalysisPhase::Running => Some(last.resume_at.as_ref().map_or(run_started, |t| t.0)),
        Some(last) => {
            let finished = last.finished_at.as_ref().unwrap_or(&last.started_at).0;
            Some(after(finished, policy.interval.unwrap_or(Duration::ZERO)))
        }
    }
}

/// `t` plus `d`, saturating at the end of time.
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

/// The phase of a run from its metrics. A terminated run settles its still-running metrics:
/// Successful if they had a success, Inconclusive if not.
pub fn run_phase(policies: &[MetricPolicy], results: &[MetricResult], terminated: bool) -> (AnalysisPhase, Option<String>) {
    let deciding: Vec<(AnalysisPhase, Option<String>)> = policies
        .iter()
        .zip(results)
        .filter(|(policy, _)| !policy.dry_run)
        .map(|(policy, result)| {
            let (phase, message) = metric_phase(policy, result);
            match phase {
                AnalysisPhase::Pending | AnalysisPhase::Running if terminated => {
                    if result.successful > 0 && result.failed == 0 {
                        (AnalysisPhase::Successful, message)
                    } else {
                        let message = format!(
                            "metric {}: stopped after {} successful and {} failed measurements",
                            result.name, result.successful, result.failed
                        );
                        (AnalysisPhase::Inconclusive, Some(message))
                    }
                }
                _ => (phase, message),
            }
        })
        .collect();
    let first = |wanted: &[AnalysisPhase]| deciding.iter().find(|(p, _)| wanted.contains(p)).cloned();
    if let Some(verdict) = first(&[AnalysisPhase::Failed]).or_else(|| first(&[AnalysisPhase::Error])) {
        return verdict;
    }
    if let Some((_, message)) = first(&[AnalysisPhase::Pending, AnalysisPhase::Running]) {
        let any_started = deciding.iter().any(|(p, _)| *p != AnalysisPhase::Pending);
        return (if any_started { AnalysisPhase::Running } else { AnalysisPhase::Pending }, message);
    }
    if let Some(verdict) = first(&[AnalysisPhase::Inconclusive]) {
        return verdict;
    }
    (AnalysisPhase::Successful, Some("all metrics successful".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn minus_one_is_no_limit_as_in_argo() {
        let metric = Metric { failure_limit: Some((-1).into()), inconclusive_limit: Some((-1).into()), ..Default::default() };
        let policy = MetricPolicy::of(&metric).unwrap();
        assert_eq!((policy.failure_limit, policy.inconclusive_limit), (i32::MAX, i32::MAX));
        let unset = MetricPolicy::of(&Metric::default()).unwrap();
        assert_eq!((unset.failure_limit, unset.inconclusive_limit), (0, 0));
    }

    #[test]
    fn a_replaced_argument_is_read_as_a_number_and_checked_against_the_field_minimum() {
        let arg = |text: &str| Some(IntOrArg::Arg(text.into()));
        let metric = Metric { count: arg("5"), failure_limit: arg(" -1 "), consecutive_error_limit: arg("2"), ..Default::default() };
        let policy = MetricPolicy::of(&metric).unwrap();
        assert_eq!((policy.count, policy.failure_limit, policy.consecutive_error_limit), (Some(5), i32::MAX, 2));
        let bad = [
            (Metric { count: arg("five"), ..Default::default() }, "count is `five`, not a whole number of at least 1"),
            (Metric { count: Some(0.into()), ..Default::default() }, "count is `0`, not a whole number of at least 1"),
            (Metric { failure_limit: arg("{{args.limit}}"), ..Default::default() }, "failureLimit is `{{args.limit}}`"),
            (Metric { interval: Some("{{args.every}}".into()), ..Default::default() }, "interval: `{{args.every}}` is not a duration"),
        ];
        for (metric, expected) in bad {
            let error = MetricPolicy::of(&metric).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    fn policy(count: Option<i32>, failure_limit: i32) -> MetricPolicy {
        MetricPolicy {
            count,
            interval: Some(Duration::from_secs(60)),
            initial_delay: Duration::ZERO,
            failure_limit,
            inconclusive_limit: 0,
            consecutive_error_limit: DEFAULT_CONSECUTIVE_ERROR_LIMIT,
            dry_run: false,
        }
    }

    fn measure(policy: &MetricPolicy, result: &mut MetricResult, phases: &[AnalysisPhase]) {
        for (i, phase) in phases.iter().enumerate() {
            let at = Timestamp::from_second(i as i64 * 60).unwrap();
            record(
                policy,
                result,
                Measurement {
                    phase: *phase,
                    value: Some("0.5".into()),
                    started_at: Time(at),
                    finished_at: Some(Time(at)),
                    message: None,
                    resume_at: None,
                },
            );
        }
    }

    fn result() -> MetricResult {
        MetricResult { name: "error-rate".into(), ..Default::default() }
    }

    use AnalysisPhase::*;

    #[test]
    fn failures_beyond_the_limit_fail_the_metric() {
        let p = policy(Some(5), 1);
        let mut r = result();
        measure(&p, &mut r, &[Successful, Failed]);
        assert_eq!(metric_phase(&p, &r).0, Running);
        measure(&p, &mut r, &[Failed]);
        let (phase, message) = metric_phase(&p, &r);
        assert_eq!(phase, Failed);
        assert!(message.unwrap().contains("2 of 3 measurements failed (limit 1); last value 0.5"));
    }

    #[test]
    fn errors_do_not_count_and_a_streak_beyond_the_limit_errs() {
        let p = policy(Some(2), 0);
        let mut r = result();
        measure(&p, &mut r, &[Error, Error, Error, Error, Successful]);
        assert_eq!(r.count, 1);
        assert_eq!(metric_phase(&p, &r).0, Running, "four errors are within the default limit, and reset by a success");
        measure(&p, &mut r, &[Error, Error, Error, Error, Error]);
        assert_eq!(metric_phase(&p, &r).0, Error);
    }

    #[test]
    fn no_data_is_never_success() {
        let p = MetricPolicy { inconclusive_limit: 5, ..policy(Some(2), 0) };
        let mut r = result();
        measure(&p, &mut r, &[Inconclusive, Inconclusive]);
        assert_eq!(metric_phase(&p, &r).0, Inconclusive);
    }

    #[test]
    fn unbounded_metrics_run_until_terminated() {
        let p = policy(None, 0);
        let mut r = result();
        measure(&p, &mut r, &[Successful, Successful, Successful]);
        assert_eq!(metric_phase(&p, &r).0, Running);
        assert_eq!(run_phase(std::slice::from_ref(&p), std::slice::from_ref(&r), false).0, Running);
        assert_eq!(run_phase(&[p], &[r], true).0, Successful);
    }

    #[test]
    fn dry_run_metrics_never_decide() {
        let deciding = policy(Some(1), 0);
        let dry = MetricPolicy { dry_run: true, ..policy(Some(1), 0) };
        let (mut good, mut bad) = (result(), result());
        measure(&deciding, &mut good, &[Successful]);
        measure(&dry, &mut bad, &[Failed]);
        assert_eq!(run_phase(&[deciding.clone(), dry.clone()], &[good.clone(), bad.clone()], false).0, Successful);
        let strict = MetricPolicy { dry_run: false, ..dry };
        assert_eq!(run_phase(&[deciding, strict], &[good, bad], false).0, Failed);
    }

    #[test]
    fn the_next_measurement_waits_for_the_delay_then_the_interval() {
        let p = MetricPolicy { initial_delay: Duration::from_secs(30), ..policy(Some(3), 0) };
        let mut r = result();
        let start = Timestamp::from_second(1_000).unwrap();
        assert_eq!(next_measurement_at(&p, &r, start), Some(Timestamp::from_second(1_030).unwrap()));
        measure(&p, &mut r, &[Successful]);
        assert_eq!(next_measurement_at(&p, &r, start), Some(Timestamp::from_second(60).unwrap()));
        measure(&p, &mut r, &[Successful, Successful]);
        assert_eq!(next_measurement_at(&p, &r, start), None);
    }

    #[test]
    fn retention_is_bounded_but_totals_are_kept() {
        let p = policy(None, 100);
        let mut r = result();
        measure(&p, &mut r, &[Successful; MEASUREMENT_RETENTION + 7]);
        assert_eq!(r.measurements.len(), MEASUREMENT_RETENTION);
        assert_eq!(r.successful as usize, MEASUREMENT_RETENTION + 7);
    }
}
