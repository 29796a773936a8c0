//! Analysis templates and the runs made from them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::templated::{duration_or_arg, int_or_arg_rule};
use super::{AnalysisArg, DurationString, IntOrArg};

/// Metrics that decide whether a version is good, with the arguments they take.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    namespaced,
    derive = "PartialEq",
    shortname = "sat",
    category = "sluice",
    doc = "Metrics that decide whether a version is good"
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub args: Vec<ArgumentSpec>,
    #[schemars(length(min = 1, max = 20))]
    pub metrics: Vec<Metric>,
}

/// The same as an AnalysisTemplate, usable from every namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "ClusterAnalysisTemplate",
    derive = "PartialEq",
    shortname = "scat",
    category = "sluice",
    doc = "Metrics that decide whether a version is good, for every namespace"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAnalysisTemplateSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub args: Vec<ArgumentSpec>,
    #[schemars(length(min = 1, max = 20))]
    pub metrics: Vec<Metric>,
}

impl From<ClusterAnalysisTemplateSpec> for AnalysisTemplateSpec {
    fn from(spec: ClusterAnalysisTemplateSpec) -> Self {
        Self { args: spec.args, metrics: spec.metrics }
    }
}

/// An argument a template takes; without a value the Rollout must supply one.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ArgumentSpec {
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.judge) || (has(self.provider.prometheus) && has(self.provider.prometheus.range))").message("a judge compares samples from Prometheus range queries: set provider.prometheus with a range (window and step)"))]
#[x_kube(validation = Rule::new("!has(self.judge) || has(self.successCondition) || has(self.failureCondition)").message("a metric with a judge needs a condition on its verdict, such as successCondition: result.verdict == 'Pass'"))]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    #[schemars(length(min = 1))]
    pub name: String,
    /// Time between measurements. Without it, `count` measurements are taken back to back.
    /// This and the other timing and limit fields may be `{{args.NAME}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_or_arg")]
    pub interval: Option<DurationString>,
    /// Wait before the first measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_or_arg")]
    pub initial_delay: Option<DurationString>,
    /// Measurements to take. Unset: 1 without an interval, unbounded with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(int_or_arg_rule(1)).message("count is a number from 1, or `{{args.NAME}}`"))]
    pub count: Option<IntOrArg>,
    /// Expression over `result` that marks a measurement Successful, e.g. `result < 0.01`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// Expression over `result` that marks a measurement Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated before the metric fails (default 0; -1: no limit, as in Argo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(int_or_arg_rule(-1)).message("failureLimit is a number from -1 (no limit), or `{{args.NAME}}`"))]
    pub failure_limit: Option<IntOrArg>,
    /// Inconclusive measurements tolerated before the metric is Inconclusive (default 0; -1: no
    /// limit, as in Argo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(int_or_arg_rule(-1)).message("inconclusiveLimit is a number from -1 (no limit), or `{{args.NAME}}`"))]
    pub inconclusive_limit: Option<IntOrArg>,
    /// Errors in a row tolerated before the metric errs (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(int_or_arg_rule(0)).message("consecutiveErrorLimit is a number from 0, or `{{args.NAME}}`"))]
    pub consecutive_error_limit: Option<IntOrArg>,
    /// Measure and record, but never fail the run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    pub provider: MetricProvider,
    /// Compare the canary's samples (the provider's query) with the baseline's statistically;
    /// the measured value is then the verdict, e.g. `successCondition: result.verdict == 'Pass'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<MetricJudge>,
}

/// A statistical comparison of canary and baseline samples over the provider's range.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricJudge {
    /// The baseline's (stable revision's) query, in the provider's language; the provider's own
    /// query gives the canary's samples.
    #[schemars(length(min = 1))]
    pub baseline_query: String,
    /// The change that is a regression: Increase (latency, errors) or Decrease (success rate).
    pub direction: JudgeDirection,
    /// Relative change tolerated in the bad direction, e.g. 0.1: the canary may be 10% worse (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub tolerance: Option<f64>,
    /// p-value below which a difference counts as real (default 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0001, max = 0.5))]
    pub significance: Option<f64>,
    /// Samples each side needs; with fewer the measurement is no data (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 100000))]
    pub min_samples: Option<i32>,
    /// The queries count events (such as errors); these count the trials (such as requests). Then
    /// the error proportions are compared instead of the distributions of values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totals: Option<JudgeTotals>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum JudgeDirection {
    /// A higher canary value is worse.
    #[default]
    Increase,
    /// A lower canary value is worse.
    Decrease,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct JudgeTotals {
    #[schemars(length(min = 1))]
    pub baseline_query: String,
    #[schemars(length(min = 1))]
    pub canary_query: String,
}

/// Where a measurement comes from: exactly one provider.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("(has(self.prometheus) ? 1 : 0) + (has(self.cloudWatch) ? 1 : 0) + (has(self.cloudWatchAlarm) ? 1 : 0) + (has(self.web) ? 1 : 0) + (has(self.datadog) ? 1 : 0) + (has(self.newRelic) ? 1 : 0) + (has(self.lambda) ? 1 : 0) + (has(self.job) ? 1 : 0) == 1").message("a metric provider sets exactly one of prometheus, cloudWatch, cloudWatchAlarm, web, datadog, newRelic, lambda or job"))]
#[serde(rename_all = "camelCase")]
pub struct MetricProvider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch: Option<CloudWatchMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch_alarm: Option<CloudWatchAlarmMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datadog: Option<DatadogMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_relic: Option<NewRelicMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<LambdaMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobMetric>,
}

/// An AWS Lambda function called as ECS and CodeDeploy call lifecycle hooks. It answers
/// `{"hookStatus": "SUCCEEDED" | "FAILED" | "IN_PROGRESS"}`; on IN_PROGRESS it is called again
/// after its `callBackDelay` (seconds, default 30), with the `hookDetails` it answered, until
/// `timeout`. The value judged is its answer: without conditions, SUCCEEDED passes and any other
/// final answer fails.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LambdaMetric {
    /// The function's ARN, optionally ending in a version or alias. Its namespace must be allowed
    /// it, as every AWS resource a Rollout names.
    #[x_kube(validation = Rule::new("self.startsWith('arn:') || self.startsWith('{{args.')").message("functionArn is the function's ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME), or `{{args.NAME}}`"))]
    #[schemars(length(min = 1, max = 256))]
    pub function_arn: String,
    /// Passed to the function in its payload as `details`, with every `{{args.NAME}}` replaced.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 50))]
    pub details: std::collections::BTreeMap<String, String>,
    /// How long the function may answer IN_PROGRESS before the measurement fails (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_or_arg")]
    pub timeout: Option<DurationString>,
}

/// A Kubernetes Job made from this template in the rollout's namespace, owned by the run: the
/// measurement passes when the Job completes and fails when it fails (or outlasts `timeout`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct JobMetric {
    /// Labels and annotations for the Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JobMetadata>,
    /// A Job's spec, as `kubectl explain job.spec` describes it; the API server checks it when the
    /// Job is made.
    #[schemars(schema_with = "job_spec")]
    pub spec: k8s_openapi::api::batch::v1::JobSpec,
    /// How long the Job may run before the measurement fails (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_or_arg")]
    pub timeout: Option<DurationString>,
}

/// A Job spec's schema, left to the API server: the whole pod template would make the CRDs larger
/// than client-side apply can store.
fn job_spec(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "A Job's spec (batch/v1), checked by the API server when the Job is made",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"template": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        "x-kubernetes-validations": [{"rule": "has(self.template)", "message": "provider.job.spec needs a pod template"}],
    })
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct JobMetadata {
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Datadog metrics queries (API v2, scalar): each query reduces to one value per group over
/// `interval`, and `formula` combines them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.query) != has(self.queries)").message("datadog sets exactly one of query or queries (with a formula)"))]
#[x_kube(validation = Rule::new("!has(self.formula) || has(self.queries)").message("datadog.formula combines named queries: set queries"))]
#[serde(rename_all = "camelCase")]
pub struct DatadogMetric {
    /// The API's address for the account's site. Default: the `address` key of the API key's
    /// Secret if it has one (as Argo Rollouts reads it), else https://api.datadoghq.com.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub address: Option<String>,
    /// One metrics query, e.g. `sum:requests.errors{service:checkout}.as_count()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub query: Option<String>,
    /// Named queries that `formula` combines, e.g. `errors` and `requests` for `errors / requests`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 10))]
    pub queries: std::collections::BTreeMap<String, String>,
    /// How the named queries combine (default: the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula: Option<String>,
    /// How far back the queries look (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<DurationString>,
    /// How a query's points reduce to one value (default last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregator: Option<DatadogAggregator>,
    /// The API key (`DD-API-KEY`), from a Secret in the rollout's namespace offered to Sluice.
    pub api_key: SecretKeyRef,
    /// The application key (`DD-APPLICATION-KEY`), from a Secret likewise.
    pub application_key: SecretKeyRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationString>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DatadogAggregator {
    Avg,
    Min,
    Max,
    Sum,
    #[default]
    Last,
    Mean,
    Area,
    L2norm,
    Percentile,
}

/// New Relic: one NRQL query through NerdGraph, New Relic's GraphQL API. The value judged is
/// the query's first row as an object (`result.errorRate`) when it answers one row, the list of
/// rows when several, and no data when none (or when the one row's values are all null).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.accountId) != has(self.accountIdSecretKeyRef)").message("newRelic sets exactly one of accountId or accountIdSecretKeyRef"))]
#[x_kube(validation = Rule::new("!has(self.address) || !has(self.region)").message("newRelic.address replaces the region's address: set one of address or region"))]
#[serde(rename_all = "camelCase")]
pub struct NewRelicMetric {
    /// NRQL, e.g. `SELECT percentage(count(*), WHERE error IS true) AS errorRate FROM Transaction
    /// WHERE appName = 'checkout' SINCE 5 minutes ago`; `{{args.NAME}}` is replaced.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
    /// The account queried, e.g. `1234567`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{1,10}|\{\{args\.[^}]{1,63}\}\})$"))]
    pub account_id: Option<String>,
    /// The account queried, from a Secret in the rollout's namespace offered to Sluice (as Argo
    /// Rollouts keeps it under `account-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id_secret_key_ref: Option<SecretKeyRef>,
    /// A User API key (`NRAK-…`, sent as `API-Key`), from a Secret in the rollout's namespace
    /// offered to Sluice.
    pub api_key: SecretKeyRef,
    /// The account's data center, which picks NerdGraph's address. Unset, and without `address`:
    /// the API key's Secret's `base-url-nerdgraph`, else its `region` (`us` or `eu`), as Argo
    /// Rollouts reads them, else US.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<NewRelicRegion>,
    /// NerdGraph's address, for a proxy (default: the region's, https://api.newrelic.com/graphql).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"), length(max = 2048))]
    pub address: Option<String>,
    /// How long a measurement may take (default 30s); also sent as NerdGraph's NRQL timeout, at
    /// most its limit of 120s (New Relic's own default is 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationString>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum NewRelicRegion {
    #[default]
    Us,
    Eu,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.sigv4) || !has(self.authHeader)").message("a prometheus query is signed with sigv4 or carries authHeader, not both"))]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    #[schemars(regex(pattern = r"^https?://"))]
    pub address: String,
    /// PromQL; `{{args.NAME}}` is replaced by the argument's value.
    #[schemars(length(min = 1))]
    pub query: String,
    /// Evaluate over a range ending now (a range query with `step`), instead of an instant query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<PrometheusRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationString>,
    /// Header sent with each query (for example Authorization), its value from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<SecretHeader>,
    /// Sign each query with AWS Signature Version 4, as Amazon Managed Service for Prometheus
    /// requires, with the controller's own AWS credentials (the default chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigv4: Option<PrometheusSigV4>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSigV4 {
    /// The workspace's region (default: the controller's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9-]{1,32}$"))]
    pub region: Option<String>,
    /// The name the signature is for (default `aps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9-]{1,32}$"))]
    pub service: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusRange {
    pub window: DurationString,
    pub step: DurationString,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchMetric {
    /// How far back the queries look.
    pub window: DurationString,
    #[schemars(length(min = 1, max = 20))]
    pub metric_data_queries: Vec<MetricDataQuery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.expression) != has(self.metricStat)").message("a metricDataQuery sets exactly one of expression or metricStat"))]
#[serde(rename_all = "camelCase")]
pub struct MetricDataQuery {
    #[schemars(length(min = 1))]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_stat: Option<MetricStat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_data: Option<bool>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricStat {
    pub namespace: String,
    pub metric_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<MetricDimension>,
    #[schemars(range(min = 1))]
    pub period: i32,
    pub stat: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct MetricDimension {
    pub name: String,
    pub value: String,
}

/// A CloudWatch alarm: in ALARM state the measurement fails (CodeDeploy's rollback on alarm).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchAlarmMetric {
    #[schemars(length(min = 1))]
    pub alarm_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WebMetric {
    /// An http(s) URL; it may start with `{{args.NAME}}`, substituted when the run is built.
    #[schemars(regex(pattern = r"^(https?://|\{\{args\.)"))]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub headers: Vec<WebHeader>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Where the value sits in the JSON answer, e.g. `$.data.errorRate`. Unset: the whole body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationString>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMethod {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.value) != has(self.secretKeyRef)").message("a header sets exactly one of value or secretKeyRef"))]
#[serde(rename_all = "camelCase")]
pub struct WebHeader {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretHeader {
    pub name: String,
    pub secret_key_ref: SecretKeyRef,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// One execution of analysis templates for a rollout: every measurement that decided a step.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "AnalysisRun",
    namespaced,
    status = "AnalysisRunStatus",
    derive = "PartialEq",
    shortname = "sar",
    category = "sluice",
    doc = "One execution of analysis templates, with every measurement taken",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunSpec {
    /// The metrics, with every `{{args.NAME}}` already replaced. Empty only in a run that could
    /// not be built: it is created in phase Error with the reason, so the rollout aborts and says why.
    #[schemars(length(max = 20))]
    pub metrics: Vec<Metric>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisArg>,
    /// Stop measuring; a run terminated without failures counts as Successful.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub terminate: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema, PartialOrd, Ord, Hash)]
pub enum AnalysisPhase {
    #[default]
    Pending,
    Running,
    Successful,
    Failed,
    Error,
    Inconclusive,
}

impl AnalysisPhase {
    pub fn is_completed(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}

impl std::fmt::Display for AnalysisPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    #[serde(default)]
    pub phase: AnalysisPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_results: Vec<MetricResult>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    pub name: String,
    #[serde(default)]
    pub phase: AnalysisPhase,
    #[serde(default)]
    pub count: i32,
    #[serde(default)]
    pub successful: i32,
    #[serde(default)]
    pub failed: i32,
    #[serde(default)]
    pub inconclusive: i32,
    #[serde(default)]
    pub error: i32,
    #[serde(default)]
    pub consecutive_error: i32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The most recent measurements (older ones are dropped past a bound; counts above keep the totals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub phase: AnalysisPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub started_at: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Of a measurement still in progress (phase Running): when it is taken up again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_at: Option<Time>,
}
