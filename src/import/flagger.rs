//! Flagger (`flagger.app/v1beta1`): a Canary with its Deployment and MetricTemplates.
//!
//! Flagger's analysis loop (every `interval`: check the metrics, then add `stepWeight`) becomes
//! explicit canary steps: for each weight, `setWeight`, a pause of one interval, and an analysis
//! step measuring every metric once. Without weights but with `iterations`, it becomes a
//! blue/green whose pre-promotion analysis measures `iterations` times, one interval apart.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Fields, Object, Source, Warnings, metadata};
use crate::api::{
    AnalysisTemplate, AnalysisTemplateRef, AnalysisTemplateSpec, BlueGreenStrategy, CanaryStep, CanaryStrategy, CloudWatchMetric,
    DatadogAggregator, DatadogMetric, IntOrArg, Metric, MetricDataQuery, MetricDimension, MetricProvider, MetricStat, NewRelicMetric,
    Pause, PrometheusMetric, Rollout, RolloutAnalysis, RolloutSpec, ScaleDown, SecretKeyRef, Strategy, Workload,
};

pub const NOTIFY_ANNOTATION: &str = "sluice.dev/notify-webhook";
/// Flagger's default New Relic Secret, its Insights query key, and where Sluice looks for the
/// User API key NerdGraph needs instead.
const NEW_RELIC_SECRET: &str = "newrelic";
const NEW_RELIC_QUERY_KEY: &str = "newrelic_query_key";
pub const NEW_RELIC_API_KEY: &str = "newrelic_api_key";

/// What the loop needs to know, read from `spec.analysis`.
struct Loop {
    interval: String,
    threshold: i32,
    weights: Vec<i32>,
    iterations: Option<i32>,
}

/// Webhooks sorted by when Flagger calls them.
#[derive(Default)]
struct Hooks {
    pre_rollout: Vec<Metric>,
    each_check: Vec<Metric>,
    confirm_rollout: bool,
    confirm_promotion: bool,
    confirm_traffic_increase: bool,
    notify: Vec<String>,
}

pub fn canary(document: Value, source: &Source, w: &mut Warnings) -> Vec<Object> {
    let mut top = Fields::new("", document);
    top.ignore(&["apiVersion", "kind", "status"]);
    let mut meta = metadata(&mut top, w);
    let mut spec = top.object("spec").unwrap_or_else(|| Fields::new("spec", Value::Null));
    top.finish(w);
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone();

    let mut target = spec.object("targetRef").unwrap_or_else(|| Fields::new("spec.targetRef", Value::Null));
    let target_name = target.string("name").unwrap_or_else(|| name.clone());
    let target_kind = target.string("kind").unwrap_or_else(|| "Deployment".into());
    target.ignore(&["apiVersion"]);
    target.finish(w);
    // The Deployment stays where it is: the Rollout adopts it, and its pods give way once the
    // Rollout's are Healthy, as Flagger scales its target down behind the primary.
    let workload = match target_kind.as_str() {
        "Deployment" => super::adopted_deployment(source, &target_name, namespace.as_deref(), ScaleDown::OnSuccess),
        other => {
            w.warn("spec.targetRef", format!("{other} {target_name}: Sluice adopts Deployments only; the pod template is a placeholder"));
            super::placeholder_workload(&target_name, 1)
        }
    };

    let provider = spec.string("provider");
    if let Some(provider) = provider.as_deref().filter(|p| *p != "kubernetes") {
        w.warn(
            &spec.at("provider"),
            format!("{provider}: Sluice routes traffic through an ALB or by replica ratio; weights become replica ratios"),
        );
    }
    let progress_deadline_seconds = spec.int("progressDeadlineSeconds", w);
    let paused = spec.bool("suspend").unwrap_or(false);
    spec.drop(
        "autoscalerRef",
        "point the HorizontalPodAutoscaler's scaleTargetRef at the Rollout (sluice.dev/v1alpha1, it has a scale subresource)",
        w,
    );
    let ingress = spec.take("ingressRef").and_then(|r| r["name"].as_str().map(String::from));
    if ingress.is_some() {
        w.warn(&spec.at("ingressRef"), "Sluice routes traffic through an ALB or by replica ratio; dropped");
    }
    // Deleting the Rollout always gives the Deployment its replicas back.
    spec.ignore(&["revertOnDeletion"]);
    if spec.bool("skipAnalysis") == Some(true) {
        w.warn(
            &spec.at("skipAnalysis"),
            "Sluice has no switch to skip analysis: `kubectl sluice promote --full` skips the remaining steps",
        );
    }
    let mut service = spec.object("service").unwrap_or_else(|| Fields::new("spec.service", Value::Null));
    let service_name = service.string("name").unwrap_or_else(|| target_name.clone());
    let port = service.string("port").unwrap_or_else(|| "?".into());
    let service_path = service.path.clone();

    let mut analysis =
        spec.object("analysis").or_else(|| spec.object("canaryAnalysis")).unwrap_or_else(|| Fields::new("spec.analysis", Value::Null));
    let flow = analysis_loop(&mut analysis, w);
    let mut variables = BTreeMap::from([
        ("namespace".to_string(), namespace.clone().unwrap_or_else(|| "default".into())),
        ("target".to_string(), target_name.clone()),
        ("service".to_string(), service_name.clone()),
    ]);
    if let Some(ingress) = ingress {
        variables.insert("ingress".into(), ingress);
    }
    let blue_green = flow.weights.is_empty() && flow.iterations.is_some();
    // Flagger counts failed checks over the whole canary: with a tolerance, the checks run beside
    // the steps (background analysis, one measurement an interval) so the failures add up.
    let tolerant_canary = !blue_green && !flow.weights.is_empty() && flow.threshold > 1;
    let mut checks = Vec::new();
    for (path, metric) in analysis.list("metrics") {
        if let Some(mut metric) = metric_of(Fields::new(path, metric), &flow, &variables, provider.as_deref(), source, w) {
            if blue_green || tolerant_canary {
                metric.interval = Some(flow.interval.as_str().into());
                metric.count = flow.iterations.filter(|_| blue_green).map(IntOrArg::Int);
                metric.failure_limit = Some(IntOrArg::Int((flow.threshold - 1).max(0)));
            }
            checks.push(metric);
        }
    }
    let hooks = webhooks(&mut analysis, &name, namespace.as_deref(), flow.threshold, w);
    analysis.finish(w);
    spec.finish(w);

    let mut objects = Vec::new();
    let mut template = |suffix: &str, metrics: Vec<Metric>| -> Option<RolloutAnalysis> {
        if metrics.is_empty() {
            return None;
        }
        let template_name = format!("{name}-{suffix}");
        let mut t = AnalysisTemplate::new(&template_name, AnalysisTemplateSpec { args: Vec::new(), metrics });
        t.metadata.namespace = namespace.clone();
        objects.push(Object::AnalysisTemplate(t));
        Some(RolloutAnalysis { templates: vec![AnalysisTemplateRef { template_name, cluster_scope: false }], args: Vec::new() })
    };
    let mut each_check = checks;
    each_check.extend(hooks.each_check.into_iter().map(|mut hook| {
        if blue_green || tolerant_canary {
            // Flagger calls rollout hooks (load tests) on every iteration.
            hook.interval = Some(flow.interval.as_str().into());
            hook.count = flow.iterations.filter(|_| blue_green).map(IntOrArg::Int);
            // A failed hook is a failed check, counted against the same threshold.
            hook.failure_limit = Some(IntOrArg::Int((flow.threshold - 1).max(0)));
        }
        hook
    }));
    let pre_rollout = template("pre-rollout", hooks.pre_rollout);
    let per_check = template("analysis", each_check);
    let (per_check, background) = if tolerant_canary { (None, per_check) } else { (per_check, None) };

    let strategy = if blue_green {
        w.warn(
            &service_path,
            format!(
                "Flagger generates its Services from this block; Sluice points existing ones, named as Flagger names them so \
                 webhooks keep working: create Services {service_name} (port {port}) for blueGreen.activeService and \
                 {service_name}-canary for previewService (Sluice sets their selectors); the rest of the block is dropped"
            ),
        );
        let mut pre_promotion = pre_rollout;
        if let Some(checks) = per_check {
            match &mut pre_promotion {
                Some(analysis) => analysis.templates.extend(checks.templates),
                None => pre_promotion = Some(checks),
            }
        }
        Strategy {
            blue_green: Some(BlueGreenStrategy {
                active_service: service_name.clone(),
                preview_service: Some(format!("{service_name}-canary")),
                approve_before_preview: hooks.confirm_rollout.then_some(true),
                auto_promotion_enabled: hooks.confirm_promotion.then_some(false),
                pre_promotion_analysis: pre_promotion,
                ..Default::default()
            }),
            ..Default::default()
        }
    } else {
        w.warn(
            &service_path,
            format!(
                "Flagger generates its Services and mesh routes from this block; Sluice splits traffic by replica ratio behind \
                 Service {service_name} (port {port}), which must select the pod template's labels (the pods of both revisions), \
                 and points the Services Flagger names, so webhooks keep working: create {service_name}-primary (stableService) and \
                 {service_name}-canary (canaryService); Sluice sets their selectors; the rest of the block is dropped"
            ),
        );
        if flow.weights.is_empty() {
            w.warn("spec.analysis", "no stepWeight, stepWeights or iterations: imported as a canary with no steps (a rolling update)");
        }
        let mut steps = Vec::new();
        if hooks.confirm_rollout {
            steps.push(CanaryStep { pause: Some(Pause::default()), ..Default::default() });
        }
        if let Some(analysis) = pre_rollout {
            steps.push(CanaryStep { analysis: Some(analysis), ..Default::default() });
        }
        for weight in &flow.weights {
            if hooks.confirm_traffic_increase {
                steps.push(CanaryStep { pause: Some(Pause::default()), ..Default::default() });
            }
            steps.push(CanaryStep { set_weight: Some(*weight), ..Default::default() });
            steps.push(CanaryStep { pause: Some(Pause { duration: Some(flow.interval.as_str().into()) }), ..Default::default() });
            if let Some(analysis) = &per_check {
                steps.push(CanaryStep { analysis: Some(analysis.clone()), ..Default::default() });
            }
        }
        if hooks.confirm_promotion {
            steps.push(CanaryStep { pause: Some(Pause::default()), ..Default::default() });
        }
        let canary = CanaryStrategy {
            steps,
            analysis: background,
            stable_service: Some(format!("{service_name}-primary")),
            canary_service: Some(format!("{service_name}-canary")),
            ..Default::default()
        };
        super::argo::warn_unreachable_weights(&canary, workload.replicas, "spec.analysis", w);
        Strategy { canary: Some(canary), ..Default::default() }
    };
    if !hooks.notify.is_empty() {
        meta.annotations.get_or_insert_with(Default::default).insert(NOTIFY_ANNOTATION.into(), hooks.notify.join(","));
    }
    let mut rollout = Rollout::new(
        &name,
        RolloutSpec {
            workload: Workload { kubernetes: Some(workload), ecs: None },
            traffic: None,
            strategy,
            progress_deadline_seconds,
            progress_deadline_abort: false,
            paused,
            restart_at: None,
            rollback_window: None,
            hooks: Vec::new(),
        },
    );
    rollout.metadata = meta;
    let mut out = vec![Object::Rollout(Box::new(rollout))];
    out.extend(objects);
    out
}

fn analysis_loop(analysis: &mut Fields, w: &mut Warnings) -> Loop {
    let interval = super::duration_field(analysis, "interval", w).map_or_else(|| "1m".to_string(), |d| d.0);
    let threshold = analysis.int("threshold", w).unwrap_or(1).max(1);
    let max_weight = analysis.int("maxWeight", w).unwrap_or(100).clamp(1, 100);
    let step_weight = analysis.int("stepWeight", w).unwrap_or(0);
    let mut weights: Vec<i32> =
        analysis.list("stepWeights").into_iter().filter_map(|(_, v)| v.as_i64()).map(|v| v.clamp(0, 100) as i32).collect();
    if weights.is_empty() && step_weight > 0 {
        weights = (1..).map(|i| i * step_weight).take_while(|w| *w <= max_weight).collect();
    }
    let iterations = analysis.int("iterations", w).filter(|n| *n > 0);
    if threshold > 1 && !weights.is_empty() {
        w.warn(
            &analysis.at("threshold"),
            format!(
                "Flagger's tolerance of {} failed checks over the whole canary is kept: the checks run as background analysis \
                 (strategy.canary.analysis), once every {interval}, and the rollout rolls back at failed check {threshold}; \
                 unlike Flagger, a failed check does not hold the weight where it is",
                threshold - 1
            ),
        );
    }
    analysis.drop("stepWeightPromotion", "Sluice promotes in one step after the last one", w);
    analysis.drop(
        "match",
        "Flagger's A/B match is not imported (iterations become a blue/green); to route by header, give a canary behind an ALB a setHeaderRoute step",
        w,
    );
    analysis.drop("mirror", "Sluice does not mirror traffic", w);
    analysis.drop("mirrorWeight", "Sluice does not mirror traffic", w);
    analysis.drop("primaryReadyThreshold", "Sluice waits for every replica of the stable revision", w);
    analysis.drop("canaryReadyThreshold", "Sluice waits for every replica of the canary", w);
    analysis.drop("sessionAffinity", "Sluice keeps no cookie affinity; an ALB listener rule can hold stickiness", w);
    analysis.drop("alerts", "use Sluice's notifications: the sluice.dev/notify-webhook annotation (docs/notifications.md)", w);
    Loop { interval, threshold, weights, iterations }
}

/// `{{ namespace }}`, `{{ target }}`, `{{ interval }}`, `{{ variables.NAME }}`... filled in now:
/// the import knows every value.
fn fill(query: &str, variables: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = query;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..].find("}}").map(|e| start + e).ok_or_else(|| "an unclosed {{".to_string())?;
        let key = rest[start + 2..end].trim().trim_start_matches('.');
        let value = variables.get(key).ok_or_else(|| format!("`{{{{ {key} }}}}` has no value"))?;
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn double(value: f64) -> String {
    if value.fract() == 0.0 { format!("{value:.1}") } else { value.to_string() }
}

fn metric_of(
    mut metric: Fields,
    flow: &Loop,
    variables: &BTreeMap<String, String>,
    provider: Option<&str>,
    source: &Source,
    w: &mut Warnings,
) -> Option<Metric> {
    let name = metric.string("name").unwrap_or_default();
    let interval = super::duration_field(&mut metric, "interval", w).map_or_else(|| flow.interval.clone(), |d| d.0);
    let mut variables = variables.clone();
    variables.insert("interval".into(), interval.clone());
    if let Some(Value::Object(vars)) = metric.take("templateVariables") {
        for (k, v) in vars {
            variables.insert(format!("variables.{k}"), v.as_str().map_or_else(|| v.to_string(), String::from));
        }
    }
    let mut range = metric.object("thresholdRange").unwrap_or_else(|| Fields::new(metric.at("thresholdRange"), Value::Null));
    let min = range.take("min").and_then(|v| v.as_f64());
    let max = range.take("max").and_then(|v| v.as_f64());
    range.finish(w);
    // Flagger's older `threshold`: a minimum for request-success-rate, a maximum for the rest.
    let threshold = metric.take("threshold").and_then(|v| v.as_f64());
    let (min, max) = match (min, max, threshold) {
        (None, None, Some(t)) if name == "request-success-rate" => (Some(t), None),
        (None, None, Some(t)) => (None, Some(t)),
        (min, max, _) => (min, max),
    };
    let path = metric.path.clone();
    let provider = if let Some(mut reference) = metric.object("templateRef") {
        let template = reference.string("name").unwrap_or_default();
        let namespace = reference.string("namespace");
        reference.finish(w);
        let found = source.of_kind(super::FLAGGER_GROUP, "MetricTemplate").find(|t| {
            t["metadata"]["name"] == template.as_str()
                && namespace.as_deref().is_none_or(|n| t["metadata"]["namespace"].as_str().is_none_or(|m| m == n))
        });
        let Some(found) = found else {
            w.warn(&format!("{path}.templateRef"), format!("MetricTemplate {template} is not in the input; metric {name} dropped"));
            metric.finish(w);
            return None;
        };
        from_template(found, &template, &interval, &variables, &path, w)?
    } else if let Some(query) = metric.string("query") {
        let filled = fill(&query, &variables).unwrap_or(query);
        w.warn(
            &format!("{path}.query"),
            format!("Flagger's metrics server is not in the Canary: fill in the Prometheus address ({})", super::PLACEHOLDER_PROMETHEUS),
        );
        MetricProvider {
            prometheus: Some(PrometheusMetric { address: super::PLACEHOLDER_PROMETHEUS.into(), query: filled, ..Default::default() }),
            ..Default::default()
        }
    } else {
        builtin(&name, provider, &variables, &interval, &path, w)?
    };
    metric.finish(w);
    // Flagger reads one number from New Relic's one row; Sluice hands the row over whole.
    let condition = if provider.new_relic.is_some() {
        threshold_condition(min, max, "result[field]").map(|each| format!("result.all(field, {each})"))
    } else {
        threshold_condition(min, max, "result")
    };
    if condition.is_none() {
        w.warn(&format!("{path}.thresholdRange"), "missing: the metric has no condition, so any value with data passes");
    }
    Some(Metric { name: metric_name(&name), success_condition: condition, provider, ..Default::default() })
}

/// Flagger's threshold range as a condition on `value`.
fn threshold_condition(min: Option<f64>, max: Option<f64>, value: &str) -> Option<String> {
    match (min, max) {
        (Some(min), Some(max)) => Some(format!("{value} >= {} && {value} <= {}", double(min), double(max))),
        (Some(min), None) => Some(format!("{value} >= {}", double(min))),
        (None, Some(max)) => Some(format!("{value} <= {}", double(max))),
        (None, None) => None,
    }
}

/// Flagger allows spaces in metric names; Sluice's names go into labels and messages.
fn metric_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect()
}

/// Flagger's two builtin checks, written for the Istio telemetry it reads; other meshes name
/// their series differently, so their query is left to fill in.
fn builtin(
    name: &str,
    provider: Option<&str>,
    vars: &BTreeMap<String, String>,
    interval: &str,
    path: &str,
    w: &mut Warnings,
) -> Option<MetricProvider> {
    let (ns, service) = (&vars["namespace"], &vars["service"]);
    let selector = format!(r#"reporter="destination", destination_workload_namespace="{ns}", destination_service_name="{service}""#);
    let query = match (name, provider) {
        ("request-success-rate", Some("istio")) => format!(
            r#"100 * sum(rate(istio_requests_total{{{selector}, response_code!~"5.."}}[{interval}])) / sum(rate(istio_requests_total{{{selector}}}[{interval}]))"#
        ),
        ("request-duration", Some("istio")) => {
            format!(r#"histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{{{selector}}}[{interval}])))"#)
        }
        ("request-success-rate" | "request-duration", _) => "FILL-IN-QUERY".into(),
        _ => {
            w.warn(path, format!("{name} is neither a builtin check nor has a templateRef; metric dropped"));
            return None;
        }
    };
    let what = if query == "FILL-IN-QUERY" {
        format!("Flagger's builtin {name} check depends on its mesh provider: fill in the PromQL query and the Prometheus address")
    } else {
        format!(
            "Flagger's builtin {name} check, written for Istio: it measures Service {service} as a whole (stable and canary); fill in \
             the Prometheus address"
        )
    };
    w.warn(path, what);
    Some(MetricProvider {
        prometheus: Some(PrometheusMetric { address: super::PLACEHOLDER_PROMETHEUS.into(), query, ..Default::default() }),
        ..Default::default()
    })
}

fn from_template(
    template: &Value,
    name: &str,
    interval: &str,
    variables: &BTreeMap<String, String>,
    metric_path: &str,
    w: &mut Warnings,
) -> Option<MetricProvider> {
    let mut spec = Fields::new(format!("MetricTemplate/{name}.spec"), template["spec"].clone());
    let mut provider = spec.object("provider").unwrap_or_else(|| Fields::new(spec.at("provider"), Value::Null));
    let kind = provider.string("type").unwrap_or_else(|| "prometheus".into());
    let address = provider.string("address");
    let region = provider.string("region");
    let secret_path = provider.at("secretRef");
    let secret = provider.take("secretRef").and_then(|r| r["name"].as_str().map(String::from));
    provider.drop("insecureSkipVerify", "Sluice always verifies TLS certificates", w);
    provider.finish(w);
    if secret.is_some() && !["datadog", "newrelic"].contains(&kind.as_str()) {
        w.warn(&secret_path, "Sluice reads one header from a Secret: set provider.prometheus.authHeader {name, secretKeyRef}; dropped");
    }
    let query = spec.string("query").unwrap_or_default();
    spec.finish(w);
    let query = match fill(&query, variables) {
        Ok(query) => query,
        Err(reason) => {
            w.warn(&format!("{metric_path}.templateRef"), format!("MetricTemplate {name}: {reason}; metric dropped"));
            return None;
        }
    };
    match kind.as_str() {
        "prometheus" => {
            let address = address.filter(|a| a.starts_with("http://") || a.starts_with("https://")).unwrap_or_else(|| {
                w.warn(&format!("MetricTemplate/{name}.spec.provider.address"), "missing or not an http(s) URL: fill in the placeholder");
                super::PLACEHOLDER_PROMETHEUS.into()
            });
            Some(MetricProvider { prometheus: Some(PrometheusMetric { address, query, ..Default::default() }), ..Default::default() })
        }
        "cloudwatch" => match cloudwatch_queries(&query) {
            Some(queries) => Some(MetricProvider {
                cloud_watch: Some(CloudWatchMetric { window: interval.into(), metric_data_queries: queries, region }),
                ..Default::default()
            }),
            None => {
                w.warn(&format!("MetricTemplate/{name}.spec.query"), "not a JSON list of MetricDataQueries; metric dropped");
                None
            }
        },
        // Flagger's Datadog keys, in the Secret its `secretRef` names; the last point over the interval.
        "datadog" => {
            let secret = secret.unwrap_or_else(|| "datadog".into());
            let key = |key: &str| SecretKeyRef { name: secret.clone(), key: key.into() };
            Some(MetricProvider {
                datadog: Some(DatadogMetric {
                    address,
                    query: Some(query),
                    interval: Some(interval.into()),
                    aggregator: Some(DatadogAggregator::Last),
                    api_key: key("datadog_api_key"),
                    application_key: key("datadog_application_key"),
                    ..Default::default()
                }),
                ..Default::default()
            })
        }
        "newrelic" => Some(MetricProvider { new_relic: Some(new_relic(name, query, interval, address, secret, w)?), ..Default::default() }),
        other => {
            w.warn(
                &format!("MetricTemplate/{name}.spec.provider.type"),
                format!("{other}: Sluice measures with Prometheus, CloudWatch, Datadog, New Relic or web; metric dropped"),
            );
            None
        }
    }
}

/// Flagger's New Relic template: the account id in the Secret `secretRef` names (`newrelic` by
/// default) under `newrelic_account_id`, and the NRQL over the metric's interval, which Flagger
/// appends to each query as `SINCE … seconds ago`. Flagger asks the Insights API with an Insights
/// query key, which NerdGraph does not take: the User API key goes beside it.
fn new_relic(
    name: &str,
    query: String,
    interval: &str,
    address: Option<String>,
    secret: Option<String>,
    w: &mut Warnings,
) -> Option<NewRelicMetric> {
    let path = format!("MetricTemplate/{name}.spec.provider");
    let Ok(interval) = crate::api::parse_duration(interval) else {
        w.warn(&path, format!("the metric's interval `{interval}` is not a duration Sluice reads; metric dropped"));
        return None;
    };
    if address.is_some() {
        w.warn(
            &format!("{path}.address"),
            "an Insights API address; Sluice asks NerdGraph: set provider.newRelic.address to a proxy of it; dropped",
        );
    }
    let secret = secret.unwrap_or_else(|| NEW_RELIC_SECRET.into());
    w.warn(
        &format!("{path}.secretRef"),
        format!(
            "Flagger's {NEW_RELIC_QUERY_KEY} is an Insights query key, which NerdGraph does not take: add a User API key (NRAK-…) to Secret {secret} under {NEW_RELIC_API_KEY}"
        ),
    );
    let key = |key: &str| SecretKeyRef { name: secret.clone(), key: key.into() };
    Some(NewRelicMetric {
        query: format!("{} SINCE {} seconds ago", query.trim_end(), interval.as_secs().max(1)),
        account_id_secret_key_ref: Some(key("newrelic_account_id")),
        api_key: key(NEW_RELIC_API_KEY),
        ..Default::default()
    })
}

/// Flagger's CloudWatch query: the GetMetricData queries as JSON, in the AWS API's spelling.
fn cloudwatch_queries(query: &str) -> Option<Vec<MetricDataQuery>> {
    let items: Vec<Value> = serde_json::from_str(query).ok()?;
    items
        .iter()
        .map(|q| {
            let stat = &q["MetricStat"];
            Some(MetricDataQuery {
                id: q["Id"].as_str()?.to_string(),
                expression: q["Expression"].as_str().map(String::from),
                metric_stat: stat.is_object().then(|| MetricStat {
                    namespace: stat["Metric"]["Namespace"].as_str().unwrap_or_default().into(),
                    metric_name: stat["Metric"]["MetricName"].as_str().unwrap_or_default().into(),
                    dimensions: stat["Metric"]["Dimensions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|d| MetricDimension {
                            name: d["Name"].as_str().unwrap_or_default().into(),
                            value: d["Value"].as_str().unwrap_or_default().into(),
                        })
                        .collect(),
                    period: stat["Period"].as_i64().unwrap_or(60) as i32,
                    stat: stat["Stat"].as_str().unwrap_or("Average").into(),
                    unit: stat["Unit"].as_str().map(String::from),
                }),
                return_data: q["ReturnData"].as_bool(),
            })
        })
        .collect()
}

fn webhooks(analysis: &mut Fields, canary: &str, namespace: Option<&str>, threshold: i32, w: &mut Warnings) -> Hooks {
    let mut hooks = Hooks::default();
    for (path, hook) in analysis.list("webhooks") {
        let mut hook = Fields::new(path.clone(), hook);
        let name = hook.string("name").unwrap_or_else(|| "webhook".into());
        let kind = hook.string("type").unwrap_or_else(|| "rollout".into());
        let url = hook.string("url").unwrap_or_default();
        let timeout = hook.take("timeout").and_then(|v| super::duration(&v));
        let metadata = hook.take("metadata").unwrap_or(json!({}));
        hook.ignore(&["muteAlert"]);
        let body =
            json!({"name": canary, "namespace": namespace.unwrap_or("default"), "phase": "Progressing", "metadata": metadata}).to_string();
        let as_metric = |w: &mut Warnings| {
            w.warn(
                &path,
                format!(
                    "{kind} webhook {name} is called as a web metric (POST, passes on a 2xx answer; an empty answer is no data and \
                     pauses the rollout)"
                ),
            );
            let mut metric = super::argo::web_metric(&metric_name(&name), url.clone(), Some(body.clone()), timeout.clone());
            metric.consecutive_error_limit = Some(IntOrArg::Int((threshold - 1).max(0)));
            metric
        };
        match kind.as_str() {
            "pre-rollout" => hooks.pre_rollout.push(as_metric(w)),
            "rollout" => hooks.each_check.push(as_metric(w)),
            "confirm-rollout" => {
                hooks.confirm_rollout = true;
                w.warn(&path, format!("confirm-rollout webhook {name} becomes a manual gate: a person runs `kubectl sluice promote`"));
            }
            "confirm-promotion" => {
                hooks.confirm_promotion = true;
                w.warn(&path, format!("confirm-promotion webhook {name} becomes a manual gate: a person runs `kubectl sluice promote`"));
            }
            "confirm-traffic-increase" => {
                hooks.confirm_traffic_increase = true;
                w.warn(
                    &path,
                    format!("confirm-traffic-increase webhook {name} becomes a manual gate before each weight: a person runs `kubectl sluice promote`"),
                );
            }
            "event" => {
                hooks.notify.push(url.clone());
                w.warn(
                    &path,
                    format!("event webhook {name} becomes a Sluice notification ({NOTIFY_ANNOTATION}); Sluice posts its own JSON payload, not Flagger's"),
                );
            }
            other => w.warn(
                &path,
                format!(
                    "{other} webhook {name}: Sluice calls no hook at this point; its notifications ({NOTIFY_ANNOTATION}) tell a URL \
                     about Promoted, Aborted and Healthy; dropped"
                ),
            ),
        }
        hook.finish(w);
    }
    hooks
}
