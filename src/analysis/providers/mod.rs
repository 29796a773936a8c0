//! Metric providers: each takes one measurement of a metric (Prometheus, CloudWatch metrics,
//! CloudWatch alarms, web, Datadog, New Relic, a Lambda function, a Job) and returns a value for the
//! conditions to judge, or says the measurement is still in progress (Lambda, Job).
//!
//! [`Providers`] is built once with long-lived clients (one HTTP client, CloudWatch clients per
//! region, the Kubernetes client for Secrets) and dispatches on the metric's provider. Every
//! measurement runs under a deadline: the provider's `timeout`, else [`DEFAULT_TIMEOUT`]. A
//! metric with a `judge` is measured by [`prometheus`] with two range queries (four with totals)
//! and judged by [`crate::analysis::judge`].

mod cloudwatch;
mod cloudwatch_alarm;
mod datadog;
pub mod job;
pub mod lambda;
mod newrelic;
mod prometheus;
pub mod secret;
mod web;

use std::sync::Arc;
use std::time::Duration;

use super::condition::MeasuredValue;
use crate::api::{DurationString, HttpMethod, Metric, format_duration};
use crate::egress::{Egress, EgressError, ReadError};
use crate::ports::{Measure, Measuring, ProviderError};

/// The deadline of a measurement whose provider sets no `timeout` (CloudWatch sets none).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Takes measurements. Build it once and keep it: it holds the clients.
pub struct Providers {
    egress: Arc<Egress>,
    kube: Option<kube::Client>,
    cloudwatch: cloudwatch::Clients,
    lambda: lambda::Clients,
    signing: prometheus::AwsSigning,
}

impl Providers {
    /// `kube` reads the Secrets that headers name; without it such metrics are errors. Web and
    /// Prometheus requests go only where `egress` allows.
    pub fn new(aws: &aws_config::SdkConfig, kube: Option<kube::Client>, egress: Arc<Egress>) -> Self {
        crate::aws::install_crypto_provider();
        let signing =
            prometheus::AwsSigning { credentials: aws.credentials_provider(), region: aws.region().map(|r| r.as_ref().to_string()) };
        Self { egress, kube, cloudwatch: cloudwatch::Clients::new(aws), lambda: lambda::Clients::new(aws), signing }
    }

    fn access<'a>(&'a self, namespace: &'a str) -> prometheus::Access<'a> {
        prometheus::Access { egress: &self.egress, signing: &self.signing, kube: self.kube.as_ref(), namespace }
    }

    /// One measurement of `metric` where and when `at` says.
    pub async fn measure(&self, at: &Measuring<'_>, metric: &Metric) -> Result<MeasuredValue, ProviderError> {
        let (namespace, now) = (at.namespace, at.now);
        let provider = &metric.provider;
        if let Some(judge) = &metric.judge {
            let Some(prometheus) = &provider.prometheus else {
                return Err(ProviderError::Config(format!(
                    "metric {}: a judge compares Prometheus range queries; set provider.prometheus with a range",
                    metric.name
                )));
            };
            if metric.success_condition.is_none() && metric.failure_condition.is_none() {
                return Err(ProviderError::Config(format!(
                    "metric {}: a judge needs a condition on its verdict, such as successCondition: result.verdict == 'Pass'",
                    metric.name
                )));
            }
            let timeout = timeout_of(prometheus.timeout.as_ref(), "provider.prometheus.timeout")?;
            let what = format!("prometheus at {}", prometheus.address);
            let hint = server_hint("provider.prometheus.timeout", prometheus.timeout.is_some());
            let access = self.access(namespace);
            let measuring = prometheus::judged(&access, prometheus, judge, now, timeout);
            return within(&what, &hint, timeout, measuring).await;
        }
        if let Some(prometheus) = &provider.prometheus {
            let timeout = timeout_of(prometheus.timeout.as_ref(), "provider.prometheus.timeout")?;
            let what = format!("prometheus at {}", prometheus.address);
            let hint = server_hint("provider.prometheus.timeout", prometheus.timeout.is_some());
            let access = self.access(namespace);
            let measuring = prometheus::measure(&access, prometheus, now, timeout);
            return within(&what, &hint, timeout, measuring).await;
        }
        if let Some(cloud_watch) = &provider.cloud_watch {
            let what = format!("CloudWatch GetMetricData for metric {}", metric.name);
            return within(&what, AWS_HINT, DEFAULT_TIMEOUT, self.cloudwatch.measure(cloud_watch, now)).await;
        }
        if let Some(alarm) = &provider.cloud_watch_alarm {
            let what = format!("CloudWatch DescribeAlarms for alarm {}", alarm.alarm_name);
            return within(&what, AWS_HINT, DEFAULT_TIMEOUT, cloudwatch_alarm::measure(&self.cloudwatch, alarm)).await;
        }
        if let Some(web) = &provider.web {
            let timeout = timeout_of(web.timeout.as_ref(), "provider.web.timeout")?;
            let method = if web.method == Some(HttpMethod::Post) { "POST" } else { "GET" };
            let what = format!("web {method} {}", web.url);
            let hint = server_hint("provider.web.timeout", web.timeout.is_some());
            return within(&what, &hint, timeout, web::measure(&self.egress, self.kube.as_ref(), namespace, web)).await;
        }
        if let Some(datadog) = &provider.datadog {
            let timeout = timeout_of(datadog.timeout.as_ref(), "provider.datadog.timeout")?;
            let what = format!("datadog query of metric {}", metric.name);
            let hint = server_hint("provider.datadog.timeout", datadog.timeout.is_some());
            return within(&what, &hint, timeout, datadog::measure(&self.egress, self.kube.as_ref(), namespace, datadog, now)).await;
        }
        if let Some(new_relic) = &provider.new_relic {
            let timeout = timeout_of(new_relic.timeout.as_ref(), "provider.newRelic.timeout")?;
            let what = format!("new relic query of metric {}", metric.name);
            let hint = server_hint("provider.newRelic.timeout", new_relic.timeout.is_some());
            let measuring = newrelic::measure(&self.egress, self.kube.as_ref(), namespace, new_relic, timeout);
            return within(&what, &hint, timeout, measuring).await;
        }
        if let Some(function) = &provider.lambda {
            let what = format!("Lambda Invoke of {}", function.function_arn);
            let hint = "(Lambda's limit for one invocation); answer IN_PROGRESS from a function that takes long";
            return within(&what, hint, lambda::MAX_INVOCATION, lambda::measure(&self.lambda, at, &metric.name, function)).await;
        }
        if let Some(job) = &provider.job {
            let what = format!("the Job of metric {}", metric.name);
            let hint = "(the default); check that the Kubernetes API server answers";
            return within(&what, hint, DEFAULT_TIMEOUT, job::measure(self.kube.as_ref(), at, &metric.name, job)).await;
        }
        Err(ProviderError::Config(format!(
            "metric {}: no provider; set exactly one of prometheus, cloudWatch, cloudWatchAlarm, web, datadog, newRelic, lambda or job",
            metric.name
        )))
    }
}

#[async_trait::async_trait]
impl Measure for Providers {
    async fn measure(&self, at: &Measuring<'_>, metric: &Metric) -> Result<MeasuredValue, ProviderError> {
        Providers::measure(self, at, metric).await
    }
}

/// A request the outbound policy refused, or could not check, as a provider error.
fn egress_error(what: &str, error: EgressError) -> ProviderError {
    match error {
        EgressError::Denied(why) => ProviderError::Denied(format!("{what}: not sent: {why}")),
        EgressError::Unresolvable(why) => ProviderError::Unreachable(format!("{what}: {why}; check the host name")),
        EgressError::Invalid(why) => ProviderError::Config(format!("{what}: {why}")),
    }
}

/// The text of an answer, at most `max` bytes; a redirect is an error (never followed).
async fn read_answer(what: &str, response: reqwest::Response, max: usize) -> Result<String, ProviderError> {
    let status = response.status();
    if status.is_redirection() {
        return Err(ProviderError::Status(format!(
            "{what}: answered {status}; redirects are not followed: use the address it redirects to"
        )));
    }
    match crate::egress::read_capped(response, max).await {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(ReadError::TooLarge(_)) => {
            Err(ProviderError::Response(format!("{what}: answer larger than {}; select less", crate::text::size(max))))
        }
        Err(ReadError::Http(e)) => Err(http_error(what, &e)),
    }
}

fn timeout_of(timeout: Option<&DurationString>, field: &str) -> Result<Duration, ProviderError> {
    match timeout {
        None => Ok(DEFAULT_TIMEOUT),
        Some(d) => match d.to_duration() {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(ProviderError::Config(format!("{field} is 0: give a positive duration such as 30s"))),
            Err(e) => Err(ProviderError::Config(format!("{field}: {e}"))),
        },
    }
}

const AWS_HINT: &str = "(the default); check the network path to the AWS endpoint";

/// What to do about a server that did not answer in time.
fn server_hint(field: &str, configured: bool) -> String {
    if configured {
        format!("(set by {field}); check that the server is up and answers in time, or raise {field}")
    } else {
        format!("(the default); check that the server is up and answers in time, or set {field}")
    }
}

/// Runs a measurement under its deadline.
async fn within<F>(what: &str, hint: &str, timeout: Duration, measuring: F) -> Result<MeasuredValue, ProviderError>
where
    F: Future<Output = Result<MeasuredValue, ProviderError>>,
{
    match tokio::time::timeout(timeout, measuring).await {
        Ok(outcome) => outcome,
        Err(_) => Err(ProviderError::Timeout(format!("{what}: no answer within {} {hint}", format_duration(timeout)))),
    }
}

/// An error and its causes on one line ("error sending request: … : Connection refused").
fn chain(error: &dyn std::error::Error) -> String {
    crate::egress::describe(error)
}

/// A reqwest failure as a provider error: connect failures, timeouts and the rest.
fn http_error(what: &str, error: &reqwest::Error) -> ProviderError {
    let detail = chain(error);
    if error.is_timeout() {
        ProviderError::Timeout(format!("{what}: timed out: {detail}"))
    } else if error.is_connect() {
        ProviderError::Unreachable(format!("{what}: cannot connect: {detail}; check the address and that the server is running"))
    } else if error.is_builder() {
        ProviderError::Config(format!("{what}: invalid request: {detail}"))
    } else if let Some(status) = error.status() {
        ProviderError::Status(format!("{what}: answered {status}"))
    } else if error.is_decode() {
        ProviderError::Response(format!("{what}: the answer does not parse: {detail}"))
    } else {
        ProviderError::Unreachable(format!("{what}: request failed: {detail}"))
    }
}

/// The first characters of a body, for messages.
fn excerpt(body: &str) -> String {
    const MAX: usize = 200;
    let trimmed = body.trim();
    match trimmed.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &trimmed[..end]),
        None => trimmed.to_string(),
    }
}

/// A number as a double for conditions; NaN and ±Inf are no data.
fn finite(value: f64) -> MeasuredValue {
    if value.is_finite() { MeasuredValue::scalar(value) } else { MeasuredValue::NoData }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;

    #[test]
    fn categories_are_bounded() {
        let all = [
            ProviderError::Config(String::new()),
            ProviderError::Secret(String::new()),
            ProviderError::Unreachable(String::new()),
            ProviderError::Timeout(String::new()),
            ProviderError::Status(String::new()),
            ProviderError::Query(String::new()),
            ProviderError::Response(String::new()),
            ProviderError::NotFound(String::new()),
            ProviderError::Denied(String::new()),
        ];
        let categories: std::collections::BTreeSet<&str> = all.iter().map(ProviderError::category).collect();
        assert_eq!(categories.len(), all.len());
    }

    #[test]
    fn timeouts_default_and_refuse_zero() {
        assert_eq!(timeout_of(None, "t"), Ok(DEFAULT_TIMEOUT));
        assert_eq!(timeout_of(Some(&"250ms".into()), "t"), Ok(Duration::from_millis(250)));
        assert!(matches!(timeout_of(Some(&"0s".into()), "t"), Err(ProviderError::Config(_))));
        assert!(matches!(timeout_of(Some(&"soon".into()), "t"), Err(ProviderError::Config(_))));
    }

    #[tokio::test]
    async fn a_judge_is_refused_without_a_condition_or_off_prometheus() {
        let aws = aws_config::SdkConfig::builder().behavior_version(aws_config::BehaviorVersion::latest()).build();
        let providers = Providers::new(&aws, None, Arc::new(Egress::new(Default::default(), None, crate::egress::DEFAULT_MAX_ANSWER)));
        let mut metric: Metric = serde_json::from_value(serde_json::json!({
            "name": "latency",
            "provider": {"prometheus": {"address": "http://127.0.0.1:1", "query": "x", "range": {"window": "5m", "step": "30s"}}},
            "judge": {"baselineQuery": "y", "direction": "Increase"}
        }))
        .unwrap();
        let at = Measuring::at("ns", Timestamp::UNIX_EPOCH);
        let error = providers.measure(&at, &metric).await.unwrap_err();
        assert_eq!(error.category(), "config");
        assert!(error.to_string().contains("successCondition: result.verdict == 'Pass'"), "{error}");
        metric.success_condition = Some("result.verdict == 'Pass'".into());
        metric.provider.prometheus.as_mut().unwrap().range = None;
        let error = providers.measure(&at, &metric).await.unwrap_err();
        assert!(error.to_string().contains("set provider.prometheus.range"), "{error}");
        metric.provider.prometheus = None;
        metric.provider.web = Some(crate::api::WebMetric { url: "http://127.0.0.1:1".into(), ..Default::default() });
        let error = providers.measure(&at, &metric).await.unwrap_err();
        assert!(error.to_string().contains("a judge compares Prometheus range queries"), "{error}");
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt("  ok \n"), "ok");
        assert_eq!(excerpt(&"é".repeat(300)).chars().count(), 201);
    }
}
