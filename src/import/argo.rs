//! Argo Rollouts (`argoproj.io/v1alpha1`): Rollout, AnalysisTemplate, ClusterAnalysisTemplate.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::expr::{Translation, translate_condition};
use super::{Fields, Source, Warnings, duration_field, metadata};
use crate::api::{
    AlbTraffic, AnalysisArg, AnalysisTemplate, AnalysisTemplateRef, AnalysisTemplateSpec, ArgValueFrom, ArgumentSpec, BlueGreenStrategy,
    CanaryStep, CanaryStrategy, CloudWatchMetric, DatadogMetric, DurationString, FieldRef, HeaderMatch, HeaderValueMatch, HttpMethod,
    IntOrArg, JobMetadata, JobMetric, KubernetesWorkload, Metric, MetricDataQuery, MetricDimension, MetricProvider, MetricStat,
    NewRelicMetric, Pause, PrometheusMetric, PrometheusSigV4, RollbackWindow, Rollout, RolloutAnalysis, RolloutSpec, ScaleDown,
    SecretKeyRef, SetCanaryScale, SetHeaderRoute, StepKind, Strategy, Traffic, WebHeader, WebMetric, Workload,
};
use crate::engine::builtins;

const ROUTERS: &str = "Sluice routes traffic through an ALB or by replica ratio";
/// The name given to a Rollout written without one.
pub const PLACEHOLDER_NAME: &str = "fill-in-name";
/// The Secret Argo Rollouts reads Datadog's keys from when a metric names none.
const DATADOG_SECRET: &str = "datadog";
/// The Secret Argo Rollouts reads New Relic's key and account from when a metric names no `profile`.
const NEW_RELIC_SECRET: &str = "newrelic";
/// `abortScaleDownDelaySeconds` that keeps an aborted canary running.
const KEEP_ABORTED_CANARY: i32 = -1;

/// An Argo Rollout; `step_order` holds the keys of each canary step as written.
pub fn rollout(document: Value, step_order: &[Vec<String>], source: &Source, w: &mut Warnings) -> Rollout {
    let mut top = Fields::new("", document);
    top.ignore(&["apiVersion", "kind", "status"]);
    let meta = metadata(&mut top, w);
    let mut spec = top.object("spec").unwrap_or_else(|| Fields::new("spec", Value::Null));
    top.finish(w);
    let mut meta = meta;
    if meta.name.as_deref().is_none_or(str::is_empty) {
        let placeholder = meta.generate_name.take().map_or_else(|| PLACEHOLDER_NAME.to_string(), |g| format!("{g}{PLACEHOLDER_NAME}"));
        w.warn(
            "metadata.name",
            format!("missing: the Rollout is named {placeholder}; rename it (Sluice needs a name to name its pods and runs)"),
        );
        meta.name = Some(placeholder);
    }
    let name = meta.name.clone().unwrap_or_default();

    let mut workload = kubernetes_workload(&mut spec, &meta, source, w);
    if let Some(seconds) = spec.int("minReadySeconds", w) {
        workload.min_ready_seconds = Some(seconds);
    }
    if let Some(limit) = spec.int("revisionHistoryLimit", w) {
        workload.revision_history_limit = Some(limit);
    }
    let paused = spec.bool("paused").unwrap_or(false);
    let progress_deadline_seconds = spec.int("progressDeadlineSeconds", w);
    let progress_deadline_abort = spec.bool("progressDeadlineAbort").unwrap_or(false);
    let restart_at = spec.take("restartAt").and_then(|v| serde_json::from_value::<Time>(v).ok());
    let rollback_window = spec.object("rollbackWindow").and_then(|mut window| {
        let revisions = window.int("revisions", w);
        window.finish(w);
        revisions.map(|revisions| RollbackWindow { revisions: revisions.clamp(1, 10) })
    });
    spec.drop("analysis", "Sluice keeps no separate history limits for successful and unsuccessful AnalysisRuns", w);

    let mut strategy = Strategy::default();
    let mut traffic = None;
    let mut strategies = spec.object("strategy").unwrap_or_else(|| Fields::new("spec.strategy", Value::Null));
    if let Some(canary) = strategies.object("canary") {
        let (converted, router) = canary_strategy(canary, step_order, w);
        strategy.canary = Some(converted);
        traffic = router;
    } else if let Some(blue_green) = strategies.object("blueGreen") {
        strategy.blue_green = Some(blue_green_strategy(blue_green, &name, w));
    } else {
        w.warn("spec.strategy", "neither canary nor blueGreen: imported as a canary with no steps (a rolling update)");
        strategy.canary = Some(CanaryStrategy::default());
    }
    strategies.finish(w);
    spec.finish(w);
    if let Some(canary) = strategy.canary.as_ref().filter(|_| traffic.is_none()) {
        warn_unreachable_weights(canary, workload.replicas, "spec.strategy.canary.steps", w);
    }

    let mut rollout = Rollout::new(
        &name,
        RolloutSpec {
            workload: Workload { kubernetes: Some(workload), ecs: None },
            traffic,
            strategy,
            progress_deadline_seconds,
            progress_deadline_abort,
            paused,
            restart_at,
            rollback_window,
            hooks: Vec::new(),
        },
    );
    rollout.metadata = meta;
    rollout
}

/// Without a router the replica ratio is the split: say where few replicas hold a step's weight
/// away from what it names.
pub(super) fn warn_unreachable_weights(canary: &CanaryStrategy, replicas: i32, path: &str, w: &mut Warnings) {
    // Steps that do not parse are reported when the Rollout is validated.
    let Ok(steps) = canary.steps.iter().map(|s| s.kind()).collect::<Result<Vec<_>, _>>() else { return };
    let weights = steps.iter().enumerate().filter_map(|(i, s)| match s {
        StepKind::SetWeight(weight) => Some((i, *weight)),
        _ => None,
    });
    for (index, weight) in weights {
        let (new, old) = crate::engine::ratio_split_at(canary, &steps, index, replicas);
        let reached = crate::engine::ratio_weight(new, old);
        if reached != weight.clamp(0, 100) {
            w.warn(
                path,
                format!(
                    "step {index} (setWeight {weight}): with {replicas} replicas and no traffic router the replica ratio reaches \
                     {reached}% ({new} canary, {old} stable pods); raise the replicas or route through an ALB for finer weights"
                ),
            );
        }
    }
}

/// The pods: the Rollout's own template, or the Deployment its `workloadRef` names.
fn kubernetes_workload(spec: &mut Fields, meta: &ObjectMeta, source: &Source, w: &mut Warnings) -> KubernetesWorkload {
    let replicas = spec.int("replicas", w);
    let selector: Option<LabelSelector> = spec.take("selector").and_then(|v| serde_json::from_value(v).ok());
    let name = meta.name.clone().unwrap_or_default();
    let mut workload = if let Some(template) = spec.take("template") {
        match serde_json::from_value(template) {
            Ok(template) => KubernetesWorkload { template, ..Default::default() },
            Err(e) => {
                w.warn("spec.template", format!("not a pod template ({e}); replaced by a placeholder to fill in"));
                super::placeholder_workload(&name, 1)
            }
        }
    } else if let Some(mut reference) = spec.object("workloadRef") {
        let target = reference.string("name").unwrap_or_default();
        let kind = reference.string("kind").unwrap_or_else(|| "Deployment".into());
        let scale_down = match reference.string("scaleDown").as_deref() {
            None | Some("never") => ScaleDown::Never,
            Some("onsuccess") => ScaleDown::OnSuccess,
            Some("progressively") => ScaleDown::Progressively,
            Some(other) => {
                w.warn(
                    &reference.at("scaleDown"),
                    format!("{other}: not never, onsuccess or progressively; the Deployment is never scaled down"),
                );
                ScaleDown::Never
            }
        };
        reference.ignore(&["apiVersion", "kind", "name"]);
        reference.finish(w);
        if kind != "Deployment" {
            w.warn("spec.workloadRef", format!("{kind} {target}: Sluice adopts Deployments only; the pod template is a placeholder"));
            super::placeholder_workload(&name, 1)
        } else {
            super::adopted_deployment(source, &target, meta.namespace.as_deref(), scale_down)
        }
    } else {
        w.warn("spec.template", "missing: the pod template is a placeholder to fill in");
        super::placeholder_workload(&name, 1)
    };
    if let Some(replicas) = replicas {
        workload.replicas = replicas;
    }
    // An adopted Deployment's selector is its own.
    if let Some(selector) = selector.filter(|_| workload.deployment_ref.is_none()) {
        workload.selector = selector;
    }
    workload
}

fn int_or_string(value: Value) -> Option<IntOrString> {
    match value {
        Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()).map(IntOrString::Int),
        Value::String(s) => Some(IntOrString::String(s)),
        _ => None,
    }
}

fn canary_strategy(mut canary: Fields, step_order: &[Vec<String>], w: &mut Warnings) -> (CanaryStrategy, Option<Traffic>) {
    let mut out = CanaryStrategy {
        stable_service: canary.string("stableService"),
        canary_service: canary.string("canaryService"),
        max_surge: canary.take("maxSurge").and_then(int_or_string),
        max_unavailable: canary.take("maxUnavailable").and_then(int_or_string),
        scale_down_delay_seconds: canary.int("scaleDownDelaySeconds", w),
        abort_scale_down_delay_seconds: abort_scale_down_delay(&mut canary, w),
        ..Default::default()
    };
    if let Some(mut analysis) = canary.object("analysis") {
        analysis.drop("startingStep", "Sluice's background analysis runs from the first step", w);
        out.analysis = rollout_analysis(analysis, w);
    }
    for (index, (path, step)) in canary.list("steps").into_iter().enumerate() {
        let order = step_order.get(index).map_or(&[][..], Vec::as_slice);
        out.steps.extend(canary_step(Fields::new(path, step), order, w));
    }
    let traffic = canary.object("trafficRouting").and_then(|routing| traffic_routing(routing, &out, w));
    if traffic.is_none() {
        let before = out.steps.len();
        out.steps.retain(|s| s.set_header_route.is_none());
        if out.steps.len() < before {
            let dropped = before - out.steps.len();
            w.warn(
                &canary.at("steps"),
                format!("{dropped} setHeaderRoute step(s) dropped: a header route is an ALB listener rule, and this Rollout has no ALB"),
            );
        }
    }
    canary.drop("canaryMetadata", "Sluice labels each revision's pods with sluice.dev/revision instead", w);
    canary.drop("stableMetadata", "Sluice labels each revision's pods with sluice.dev/revision instead", w);
    canary.drop("antiAffinity", "set pod anti-affinity in the pod template", w);
    canary.drop("dynamicStableScale", "Sluice keeps the stable revision at full size until promotion", w);
    canary.drop("scaleDownDelayRevisionLimit", "Sluice keeps at most the stable and the new revision running", w);
    canary.drop("minPodsPerReplicaSet", "Sluice sizes the canary from the weight or setCanaryScale only", w);
    canary.drop("pingPong", "Sluice uses fixed stable and canary target groups (spec.traffic.alb)", w);
    canary.finish(w);
    (out, traffic)
}

/// One of Argo's step list items as Sluice steps: an item that carries several actions becomes
/// one step per action, in the order its keys are written (`order`; acting before waiting when
/// that is not known).
fn canary_step(step: Fields, order: &[String], w: &mut Warnings) -> Vec<CanaryStep> {
    let path = step.path.clone();
    let mut keyed = canary_step_actions(step, w);
    keyed.sort_by_key(|(key, _)| order.iter().position(|k| k == key).unwrap_or(usize::MAX));
    let out: Vec<CanaryStep> = keyed.into_iter().map(|(_, step)| step).collect();
    if out.len() > 1 {
        let kinds: Vec<&str> = out.iter().map(step_kind).collect();
        w.warn(&path, format!("carries several actions: split into {} steps, in this order: {}", out.len(), kinds.join(", ")));
    }
    out
}

/// Each action of a step list item with the key it was written under.
fn canary_step_actions(mut step: Fields, w: &mut Warnings) -> Vec<(&'static str, CanaryStep)> {
    let mut out = Vec::new();
    if let Some(mut scale) = step.object("setCanaryScale") {
        let set_canary_scale = SetCanaryScale {
            replicas: scale.int("replicas", w),
            weight: scale.int("weight", w),
            match_traffic_weight: scale.bool("matchTrafficWeight").unwrap_or(false),
        };
        scale.finish(w);
        out.push(("setCanaryScale", CanaryStep { set_canary_scale: Some(set_canary_scale), ..Default::default() }));
    }
    if let Some(weight) = step.int("setWeight", w) {
        out.push(("setWeight", CanaryStep { set_weight: Some(weight), ..Default::default() }));
    }
    if let Some(experiment) = step.object("experiment") {
        let analysis = experiment_step(experiment, w);
        out.extend(analysis.map(|analysis| ("experiment", CanaryStep { analysis: Some(analysis), ..Default::default() })));
    }
    if let Some(analysis) = step.object("analysis") {
        let analysis = rollout_analysis(analysis, w);
        out.extend(analysis.map(|analysis| ("analysis", CanaryStep { analysis: Some(analysis), ..Default::default() })));
    }
    if let Some(route) = step.object("setHeaderRoute") {
        out.extend(
            header_route(route, w).map(|route| ("setHeaderRoute", CanaryStep { set_header_route: Some(route), ..Default::default() })),
        );
    }
    if let Some(pause) = step.take("pause") {
        let mut pause = Fields::new(step.at("pause"), pause);
        let written = pause.has("duration");
        let duration = duration_field(&mut pause, "duration", w);
        if written && duration.is_none() {
            w.warn(&pause.at("duration"), "unreadable, so this pause waits for `kubectl sluice promote`");
        }
        out.push(("pause", CanaryStep { pause: Some(Pause { duration }), ..Default::default() }));
        pause.finish(w);
    }
    step.drop("setMirrorRoute", "Sluice does not mirror traffic", w);
    step.drop("plugin", "Sluice has no step plugins", w);
    step.finish(w);
    out
}

fn step_kind(step: &CanaryStep) -> &'static str {
    match (&step.set_canary_scale, step.set_weight, &step.analysis, &step.set_header_route) {
        (Some(_), ..) => "setCanaryScale",
        (_, Some(_), ..) => "setWeight",
        (_, _, Some(_), _) => "analysis",
        (.., Some(_)) => "setHeaderRoute",
        _ => "pause",
    }
}

/// Argo's `setHeaderRoute`: exact and prefix matches carry over; a regex has no ALB form, and a
/// route left with no match would remove the route, so it is dropped whole.
fn header_route(mut route: Fields, w: &mut Warnings) -> Option<SetHeaderRoute> {
    let name = route.string("name").unwrap_or_default();
    let written = route.has("match");
    let mut matches = Vec::new();
    let mut dropped = false;
    for (path, item) in route.list("match") {
        let mut item = Fields::new(path, item);
        let header_name = item.string("headerName").unwrap_or_default();
        let mut value = item.object("headerValue").unwrap_or_else(|| Fields::new(item.at("headerValue"), Value::Null));
        let (exact, prefix) = (value.string("exact"), value.string("prefix"));
        if value.has("regex") {
            value.drop("regex", "an ALB rule matches exact values and prefixes, not regular expressions", w);
            dropped = true;
        }
        value.finish(w);
        item.finish(w);
        if exact.is_some() || prefix.is_some() {
            matches.push(HeaderMatch { header_name, header_value: HeaderValueMatch { exact, prefix } });
        }
    }
    let path = route.path.clone();
    route.finish(w);
    if written && matches.is_empty() && dropped {
        w.warn(&path, "has no match an ALB rule can hold; dropped");
        return None;
    }
    Some(SetHeaderRoute { name, matches })
}

/// An experiment step: its analyses become an analysis step when they can run without the
/// experiment's own pods; what is lost is named.
fn experiment_step(mut experiment: Fields, w: &mut Warnings) -> Option<RolloutAnalysis> {
    let path = experiment.path.clone();
    let pods: Vec<String> = experiment
        .list("templates")
        .into_iter()
        .map(|(_, t)| format!("{} ({} pods)", t["name"].as_str().unwrap_or("?"), t["specRef"].as_str().unwrap_or("?")))
        .collect();
    let duration = experiment.string("duration");
    experiment.ignore(&["dryRun", "scaleDownDelaySeconds"]);
    let mut merged = RolloutAnalysis::default();
    let mut needs_pods = Vec::new();
    for (analysis_path, analysis) in experiment.list("analyses") {
        let text = analysis.to_string();
        let name = analysis["name"].as_str().unwrap_or("?").to_string();
        if text.contains("podTemplateHashValue") || text.contains("{{templates.") {
            needs_pods.push(name);
            continue;
        }
        let mut fields = Fields::new(analysis_path, analysis);
        fields.ignore(&["name", "requiredForCompletion"]);
        let mut wrapped = serde_json::Map::new();
        let reference = serde_json::json!([{"templateName": fields.string("templateName"), "clusterScope": fields.bool("clusterScope")}]);
        wrapped.insert("templates".into(), reference);
        if let Some(args) = fields.take("args") {
            wrapped.insert("args".into(), args);
        }
        let path = fields.path.clone();
        fields.finish(w);
        if let Some(converted) = rollout_analysis(Fields::new(path, Value::Object(wrapped)), w) {
            merged.templates.extend(converted.templates);
            for arg in converted.args {
                if !merged.args.iter().any(|m| m.name == arg.name) {
                    merged.args.push(arg);
                }
            }
        }
    }
    let pods = if pods.is_empty() { "none".to_string() } else { pods.join(", ") };
    let lasting = duration.map_or(String::new(), |d| format!(" for {d}"));
    if merged.templates.is_empty() {
        let what = if needs_pods.is_empty() {
            "it has no analysis".to_string()
        } else {
            format!("analyses {} measure the experiment's own pods", needs_pods.join(", "))
        };
        w.warn(
            &path,
            format!("Sluice runs no experiments and {what}: the step is dropped, with its pods ({pods}){lasting} and its analysis gate"),
        );
        experiment.finish(w);
        return None;
    }
    let lost = if needs_pods.is_empty() {
        String::new()
    } else {
        format!("; analyses {} measure the experiment's own pods and are dropped", needs_pods.join(", "))
    };
    w.warn(
        &path,
        format!("Sluice runs no experiments: becomes an analysis step measuring the rollout's own revisions; the experiment's pods ({pods}){lasting} are not run{lost}"),
    );
    experiment.finish(w);
    Some(merged)
}

/// Argo's `abortScaleDownDelaySeconds: 0` keeps the aborted canary running, which is Sluice's -1
/// (Sluice's 0 scales it down at once).
fn abort_scale_down_delay(canary: &mut Fields, w: &mut Warnings) -> Option<i32> {
    match canary.int("abortScaleDownDelaySeconds", w)? {
        0 => Some(KEEP_ABORTED_CANARY),
        seconds => Some(seconds),
    }
}

fn traffic_routing(mut routing: Fields, canary: &CanaryStrategy, w: &mut Warnings) -> Option<Traffic> {
    let mut traffic = None;
    if let Some(mut alb) = routing.object("alb") {
        let mut ingresses: Vec<String> = alb.string("ingress").into_iter().collect();
        if let Some(more) = alb.take("ingresses").and_then(|v| v.as_array().cloned()) {
            for name in more.iter().filter_map(|v| v.as_str()) {
                if !ingresses.iter().any(|known| known == name) {
                    ingresses.push(name.to_string());
                }
            }
        }
        let port = alb.take("servicePort").and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
        let root = alb.string("rootService");
        let stable = canary.stable_service.clone().unwrap_or_else(|| "?".into());
        let header_routes = canary.steps.iter().any(|s| s.set_header_route.is_some());
        alb.drop("stickinessConfig", "the stickiness stays as the listener rule or the Ingress's annotations configure it", w);
        alb.drop(
            "annotationPrefix",
            "Sluice writes the action under alb.ingress.kubernetes.io, the AWS Load Balancer Controller's own prefix",
            w,
        );
        let port_text = port.map_or_else(|| "?".to_string(), |p| p.to_string());
        let alb_traffic = if header_routes {
            // Sluice's header routes are listener rules it makes itself, beside a rule it names.
            let preview = canary.canary_service.as_deref().unwrap_or("?");
            w.warn(
                &alb.path,
                format!(
                    "the steps set header routes, which Sluice makes as listener rules beside a rule it names, so it sets the \
                     weights on the load balancer itself, not through Ingress {}: fill in spec.traffic.alb.ruleArn with the ARN of \
                     the listener rule that forwards to Service {} port {port_text} (or replace it by listenerArn for a listener's \
                     default action), stableTargetGroupArn with the target group of Service {stable} and canaryTargetGroupArn with \
                     the target group of Service {preview}",
                    ingresses.first().map_or("?", String::as_str),
                    root.as_deref().unwrap_or(&stable),
                ),
            );
            AlbTraffic {
                rule_arn: Some(super::PLACEHOLDER_RULE_ARN.into()),
                stable_target_group_arn: super::PLACEHOLDER_STABLE_TG_ARN.into(),
                canary_target_group_arn: super::PLACEHOLDER_CANARY_TG_ARN.into(),
                ..Default::default()
            }
        } else {
            if let Some(root) = root.filter(|root| *root != stable) {
                w.warn(
                    &alb.at("rootService"),
                    format!(
                        "Sluice writes the weighted action under the stable Service's name: point the Ingress rule's backend at \
                         Service {stable} with port name use-annotation (instead of {root})"
                    ),
                );
            }
            if port.is_none() {
                w.warn(
                    &alb.at("servicePort"),
                    "missing or not a number; set spec.traffic.alb.servicePort to the Services' port".to_string(),
                );
            }
            AlbTraffic { ingresses, service_port: Some(port.and_then(|p| i32::try_from(p).ok()).unwrap_or(80)), ..Default::default() }
        };
        alb.finish(w);
        traffic = Some(Traffic { alb: Some(alb_traffic) });
    }
    for mesh in ["istio", "nginx", "smi", "ambassador", "appMesh", "traefik", "apisix", "plugins", "gatewayAPI"] {
        routing.drop(mesh, ROUTERS, w);
    }
    routing.drop("managedRoutes", "Sluice manages no header or mirror routes per step", w);
    routing.finish(w);
    traffic
}

fn blue_green_strategy(mut bg: Fields, name: &str, w: &mut Warnings) -> BlueGreenStrategy {
    let active_service = bg.string("activeService").unwrap_or_else(|| {
        w.warn(&bg.at("activeService"), format!("missing; set to {name}, the Service Sluice points at the active revision"));
        name.to_string()
    });
    let mut out = BlueGreenStrategy {
        active_service,
        preview_service: bg.string("previewService"),
        auto_promotion_enabled: bg.bool("autoPromotionEnabled"),
        auto_promotion_seconds: bg.int("autoPromotionSeconds", w),
        preview_replica_count: bg.int("previewReplicaCount", w),
        scale_down_delay_seconds: bg.int("scaleDownDelaySeconds", w),
        ..Default::default()
    };
    if let Some(analysis) = bg.object("prePromotionAnalysis") {
        out.pre_promotion_analysis = rollout_analysis(analysis, w);
    }
    if let Some(analysis) = bg.object("postPromotionAnalysis") {
        out.post_promotion_analysis = rollout_analysis(analysis, w);
    }
    bg.drop("abortScaleDownDelaySeconds", "Sluice has no abort scale-down delay for blue/green", w);
    bg.drop("scaleDownDelayRevisionLimit", "Sluice keeps at most the active and the preview revision running", w);
    bg.drop("previewMetadata", "Sluice labels each revision's pods with sluice.dev/revision instead", w);
    bg.drop("activeMetadata", "Sluice labels each revision's pods with sluice.dev/revision instead", w);
    bg.drop("antiAffinity", "set pod anti-affinity in the pod template", w);
    bg.drop("maxUnavailable", "Sluice keeps the active revision at full size until the switch", w);
    bg.finish(w);
    out
}

fn rollout_analysis(mut analysis: Fields, w: &mut Warnings) -> Option<RolloutAnalysis> {
    let mut out = RolloutAnalysis::default();
    for (path, template) in analysis.list("templates") {
        let mut template = Fields::new(path, template);
        let reference = AnalysisTemplateRef {
            template_name: template.string("templateName").unwrap_or_default(),
            cluster_scope: template.bool("clusterScope").unwrap_or(false),
        };
        template.finish(w);
        if !reference.template_name.is_empty() {
            out.templates.push(reference);
        }
    }
    for (path, arg) in analysis.list("args") {
        let mut arg = Fields::new(path, arg);
        let name = arg.string("name").unwrap_or_default();
        let mut value = arg.string("value");
        let mut value_from = None;
        if let Some(mut from) = arg.object("valueFrom") {
            (value, value_from) = argument_source(&mut from, w);
            from.finish(w);
        }
        arg.finish(w);
        out.args.push(AnalysisArg { name, value, value_from });
    }
    analysis.drop("dryRun", "mark the metric dryRun: true in the AnalysisTemplate instead", w);
    analysis.drop("measurementRetention", "Sluice keeps a bounded number of recent measurements per metric", w);
    let path = analysis.path.clone();
    analysis.finish(w);
    if out.templates.is_empty() {
        w.warn(&path, "names no analysis template; dropped");
        return None;
    }
    Some(out)
}

/// Where an Argo argument's value comes from, in Sluice's terms: a pod-template hash is the
/// built-in revision argument, a field or a Secret key stays one.
fn argument_source(from: &mut Fields, w: &mut Warnings) -> (Option<String>, Option<ArgValueFrom>) {
    if let Some(mut field) = from.object("fieldRef") {
        let path = field.string("fieldPath").unwrap_or_default().replace("[\"", "['").replace("\"]", "']");
        field.finish(w);
        let supported = ["metadata.name", "metadata.namespace"].contains(&path.as_str())
            || ["metadata.labels['", "metadata.annotations['"].iter().any(|p| path.starts_with(p) && path.ends_with("']"));
        if !supported {
            w.warn(
                &from.at("fieldRef"),
                format!(
                    "{path} is not a field Sluice reads (metadata.name, namespace, a label or an annotation); the argument has no value"
                ),
            );
            return (None, None);
        }
        return (None, Some(ArgValueFrom { field_ref: Some(FieldRef { field_path: path }), secret_key_ref: None }));
    }
    if let Some(mut secret) = from.object("secretKeyRef") {
        let reference = SecretKeyRef { name: secret.string("name").unwrap_or_default(), key: secret.string("key").unwrap_or_default() };
        secret.finish(w);
        return (None, Some(ArgValueFrom { secret_key_ref: Some(reference), field_ref: None }));
    }
    match from.string("podTemplateHashValue").as_deref() {
        Some("Stable") => (Some(format!("{{{{args.{}}}}}", builtins::STABLE_REVISION)), None),
        Some("Latest") => (Some(format!("{{{{args.{}}}}}", builtins::CANARY_REVISION)), None),
        Some(other) => {
            w.warn(&from.at("podTemplateHashValue"), format!("`{other}` is neither Stable nor Latest; the argument has no value"));
            (None, None)
        }
        None => (None, None),
    }
}

/// The argument values the Rollouts in the input pass to each analysis template (by template
/// name); an argument given different values by different references has none here.
pub fn rollout_args(source: &Source) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    fn walk(value: &Value, out: &mut BTreeMap<String, BTreeMap<String, Option<String>>>) {
        match value {
            Value::Object(map) => {
                if let (Some(Value::Array(templates)), Some(Value::Array(args))) = (map.get("templates"), map.get("args")) {
                    for template in templates.iter().filter_map(|t| t["templateName"].as_str()) {
                        let known = out.entry(template.to_string()).or_default();
                        for arg in args {
                            let (Some(name), value) = (arg["name"].as_str(), arg["value"].as_str()) else { continue };
                            let value = value.map(String::from);
                            known
                                .entry(name.to_string())
                                .and_modify(|v| {
                                    if *v != value {
                                        *v = None
                                    }
                                })
                                .or_insert(value);
                        }
                    }
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    for rollout in source.of_kind(super::ARGO_GROUP, "Rollout") {
        walk(&rollout["spec"], &mut out);
    }
    out
}

/// `{{args.NAME}}` (the whole text), the argument's name.
fn templated_arg(text: &str) -> Option<&str> {
    text.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim().strip_prefix("args.")
}

/// An AnalysisTemplate; `passed` holds the argument values the input's Rollouts give it.
pub fn template(document: Value, passed: &BTreeMap<String, Option<String>>, w: &mut Warnings) -> AnalysisTemplate {
    let mut top = Fields::new("", document);
    top.ignore(&["apiVersion", "kind", "status"]);
    let meta = metadata(&mut top, w);
    let mut spec = top.object("spec").unwrap_or_else(|| Fields::new("spec", Value::Null));
    top.finish(w);
    let mut out = AnalysisTemplateSpec::default();
    let mut arg_paths = Vec::new();
    for (path, arg) in spec.list("args") {
        let mut arg = Fields::new(path.clone(), arg);
        let name = arg.string("name").unwrap_or_default();
        let value = arg.string("value");
        arg.drop(
            "valueFrom",
            "Sluice arguments are plain values; a secret belongs in provider.prometheus.authHeader or a web header's secretKeyRef",
            w,
        );
        arg.finish(w);
        arg_paths.push(path);
        out.args.push(ArgumentSpec { name, value });
    }
    // What a templated field resolves to at import: the Rollouts' value, else the default.
    let values: BTreeMap<String, String> = out
        .args
        .iter()
        .filter_map(|a| {
            let passed = passed.get(&a.name).cloned().flatten();
            Some((a.name.clone(), passed.or_else(|| a.value.clone())?))
        })
        .collect();
    let mut dry_run = Vec::new();
    for (path, entry) in spec.list("dryRun") {
        let mut entry = Fields::new(path, entry);
        dry_run.extend(entry.string("metricName"));
        entry.finish(w);
    }
    spec.drop("measurementRetention", "Sluice keeps a bounded number of recent measurements per metric", w);
    for (path, metric) in spec.list("metrics") {
        if let Some(mut metric) = metric_of(Fields::new(path, metric), &values, w) {
            metric.dry_run = dry_run.iter().any(|n| n == "*" || *n == metric.name);
            out.metrics.push(metric);
        }
    }
    // An argument only a dropped metric used would have no value and fail every run.
    let used = serde_json::to_string(&out.metrics).unwrap_or_default();
    let mut kept = Vec::new();
    for (arg, path) in out.args.drain(..).zip(arg_paths) {
        if used.contains(&format!("{{{{args.{}}}}}", arg.name)) {
            kept.push(arg);
        } else {
            w.warn(&path, format!("argument {} is used by no imported metric; dropped", arg.name));
        }
    }
    out.args = kept;
    let path = spec.path.clone();
    spec.finish(w);
    if out.metrics.is_empty() {
        w.warn(&path, "no metric could be imported: the template has none, so the API server will refuse it until one is added");
    }
    let mut template = AnalysisTemplate::new(&meta.name.clone().unwrap_or_default(), out);
    template.metadata = meta;
    template
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Prometheus,
    CloudWatch,
    Web,
    /// Decided by how the Job ends: Argo evaluates no condition.
    Job,
}

/// Resolves a field written as `{{args.NAME}}` from the argument values known at import, in
/// place. One without a value there is kept: the AnalysisRun replaces it when it is built.
fn resolve_templated(metric: &mut Fields, key: &str, values: &BTreeMap<String, String>, w: &mut Warnings) {
    let Some(text) = metric.peek(key).and_then(Value::as_str).map(String::from) else { return };
    let Some(arg) = templated_arg(&text) else { return };
    match values.get(arg) {
        Some(value) => metric.put(key, Value::String(value.clone())),
        None => w.warn(
            &metric.at(key),
            format!(
                "{text}: argument {arg} has no value at import (neither a default nor one value from the Rollouts); kept, \
                 so each AnalysisRun takes the value its Rollout passes"
            ),
        ),
    }
}

/// A field still written as `{{args.NAME}}`, taken as it is.
fn arg_reference(metric: &mut Fields, key: &str) -> Option<String> {
    let text = metric.peek(key)?.as_str()?;
    let reference = format!("{{{{args.{}}}}}", templated_arg(text)?);
    metric.take(key);
    Some(reference)
}

/// A duration field, or the argument it names.
fn templated_duration(metric: &mut Fields, key: &str, w: &mut Warnings) -> Option<DurationString> {
    arg_reference(metric, key).map(DurationString).or_else(|| duration_field(metric, key, w))
}

/// A number field, or the argument it names.
fn templated_number(
    metric: &mut Fields,
    key: &str,
    w: &mut Warnings,
    read: fn(&mut Fields, &str, &mut Warnings) -> Option<i32>,
) -> Option<IntOrArg> {
    arg_reference(metric, key).map(IntOrArg::Arg).or_else(|| read(metric, key, w).map(IntOrArg::Int))
}

/// A limit where -1 is Argo's "no limit", which Sluice keeps; below that nothing is meant.
fn limit_field(metric: &mut Fields, key: &str, minus_one: bool, w: &mut Warnings) -> Option<i32> {
    let path = metric.at(key);
    let value = metric.int(key, w)?;
    if value >= 0 || (value == -1 && minus_one) {
        return Some(value);
    }
    w.warn(&path, format!("{value} is not a limit Sluice takes; dropped"));
    None
}

fn metric_of(mut metric: Fields, values: &BTreeMap<String, String>, w: &mut Warnings) -> Option<Metric> {
    let name = metric.string("name").unwrap_or_default();
    for key in ["interval", "initialDelay", "count", "failureLimit", "inconclusiveLimit", "consecutiveErrorLimit"] {
        resolve_templated(&mut metric, key, values, w);
    }
    let mut out = Metric {
        name,
        interval: templated_duration(&mut metric, "interval", w),
        initial_delay: templated_duration(&mut metric, "initialDelay", w),
        count: templated_number(&mut metric, "count", w, |m, key, w| m.int(key, w)),
        failure_limit: templated_number(&mut metric, "failureLimit", w, |m, key, w| limit_field(m, key, true, w)),
        inconclusive_limit: templated_number(&mut metric, "inconclusiveLimit", w, |m, key, w| limit_field(m, key, true, w)),
        consecutive_error_limit: templated_number(&mut metric, "consecutiveErrorLimit", w, |m, key, w| limit_field(m, key, false, w)),
        ..Default::default()
    };
    let conditions = [("successCondition", metric.string("successCondition")), ("failureCondition", metric.string("failureCondition"))];
    let mut providers = metric.object("provider").unwrap_or_else(|| Fields::new(metric.at("provider"), Value::Null));
    let shape = if let Some(prometheus) = providers.object("prometheus") {
        out.provider.prometheus = Some(prometheus_of(prometheus, w));
        Shape::Prometheus
    } else if let Some(cloudwatch) = providers.object("cloudWatch") {
        out.provider.cloud_watch = Some(cloudwatch_of(cloudwatch, w));
        Shape::CloudWatch
    } else if let Some(web) = providers.object("web") {
        out.provider.web = Some(web_of(web, values, w));
        Shape::Web
    } else if let Some(datadog) = providers.object("datadog") {
        out.provider.datadog = Some(datadog_of(datadog, w));
        Shape::Web
    } else if let Some(new_relic) = providers.object("newRelic") {
        out.provider.new_relic = Some(new_relic_of(new_relic, w));
        Shape::Web
    } else if let Some(job) = providers.object("job") {
        let Some(job) = job_of(job, w) else {
            metric.finish(w);
            return None;
        };
        out.provider.job = Some(job);
        Shape::Job
    } else {
        let path = metric.path.clone();
        let which = providers_named(&providers);
        w.warn(
            &path,
            format!(
                "{which}: Sluice measures with prometheus, cloudWatch, cloudWatchAlarm, web, datadog, newRelic or job; metric {} dropped",
                out.name
            ),
        );
        metric.finish(w);
        return None;
    };
    providers.finish(w);
    for (key, condition) in conditions {
        let Some(condition) = condition else { continue };
        if shape == Shape::Job {
            w.warn(&metric.at(key), "Argo decides a Job metric by how the Job ends, as Sluice does without a condition");
            continue;
        }
        let translated = match shape {
            Shape::CloudWatch if condition.contains("result[") || condition.contains("result.") => Translation::Kept {
                expression: condition.clone(),
                reason: "Argo hands CloudWatch conditions a list of query results, Sluice the first query's values".into(),
            },
            _ => translate_condition(&condition, shape == Shape::Prometheus),
        };
        let text = match translated {
            Translation::Cel(cel) => cel,
            Translation::Kept { expression, reason } => {
                w.warn(&metric.at(key), format!("kept as written, {reason}: rewrite it in CEL (see docs/analysis.md)"));
                expression
            }
        };
        match key {
            "successCondition" => out.success_condition = Some(text),
            _ => out.failure_condition = Some(text),
        }
    }
    metric.finish(w);
    Some(out)
}

fn providers_named(providers: &Fields) -> String {
    let names: Vec<&str> =
        ["wavefront", "kayenta", "graphite", "influxdb", "skywalking", "plugin"].into_iter().filter(|p| providers.has(p)).collect();
    if names.is_empty() { "no provider".into() } else { names.join(", ") }
}

/// Argo's Datadog metric. Its keys are in a Secret (`datadog` unless `secretRef` names another)
/// under `api-key` and `app-key`, with the site's `address` beside them, as Sluice reads them.
fn datadog_of(mut d: Fields, w: &mut Warnings) -> DatadogMetric {
    let secret = d.object("secretRef").and_then(|mut reference| {
        let name = reference.string("name");
        // Argo's `namespaced` picks the Rollout's namespace, which is the only one Sluice reads.
        reference.ignore(&["namespaced"]);
        reference.finish(w);
        name
    });
    let secret = secret.unwrap_or_else(|| DATADOG_SECRET.into());
    let key = |key: &str| SecretKeyRef { name: secret.clone(), key: key.into() };
    // Sluice always asks API v2's scalar endpoint, which takes the same metrics queries.
    d.ignore(&["apiVersion"]);
    let aggregator = d.take("aggregator").and_then(|value| match serde_json::from_value(value.clone()) {
        Ok(aggregator) => Some(aggregator),
        Err(_) => {
            w.warn(&d.at("aggregator"), format!("{value} is not an aggregator Sluice knows; dropped, so `last` applies"));
            None
        }
    });
    let queries = d.take("queries").and_then(|q| serde_json::from_value(q).ok()).unwrap_or_default();
    let out = DatadogMetric {
        query: d.string("query"),
        queries,
        formula: d.string("formula"),
        interval: duration_field(&mut d, "interval", w),
        aggregator,
        api_key: key("api-key"),
        application_key: key("app-key"),
        ..Default::default()
    };
    d.finish(w);
    out
}

/// Argo's New Relic metric. Its key and account are in the Secret `profile` names (`newrelic` by
/// default) under `personal-api-key` and `account-id`; NerdGraph's address (`base-url-nerdgraph`,
/// else `region`) is read from it as Argo reads it.
fn new_relic_of(mut n: Fields, w: &mut Warnings) -> NewRelicMetric {
    let secret = n.string("profile").unwrap_or_else(|| NEW_RELIC_SECRET.into());
    let key = |key: &str| SecretKeyRef { name: secret.clone(), key: key.into() };
    let out = NewRelicMetric {
        query: n.string("query").unwrap_or_default(),
        account_id_secret_key_ref: Some(key("account-id")),
        api_key: key("personal-api-key"),
        timeout: n.take("timeout").and_then(|v| super::duration(&v)).map(|d| d.as_str().into()),
        ..Default::default()
    };
    n.finish(w);
    out
}

/// Argo's Job metric: its labels, annotations and spec. Argo names the Job after the run, as
/// Sluice does, so the rest of its metadata has no use.
fn job_of(mut job: Fields, w: &mut Warnings) -> Option<JobMetric> {
    let metadata = job.object("metadata").map(|mut meta| {
        let mut map = |key: &str| meta.take(key).and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
        let (labels, annotations) = (map("labels"), map("annotations"));
        for key in ["name", "generateName", "namespace"] {
            meta.drop(key, "Sluice names the Job after the run, in the rollout's namespace", w);
        }
        meta.finish(w);
        JobMetadata { labels, annotations }
    });
    let path = job.at("spec");
    let spec: k8s_openapi::api::batch::v1::JobSpec = match job.take("spec").map(serde_json::from_value) {
        Some(Ok(spec)) => spec,
        Some(Err(e)) => {
            w.warn(&path, format!("not a Job spec Sluice can read ({e}); metric dropped"));
            job.finish(w);
            return None;
        }
        None => {
            w.warn(&path, "missing: a Job metric needs a Job spec; metric dropped");
            job.finish(w);
            return None;
        }
    };
    job.finish(w);
    // Argo waits for the Job however long it runs; its own deadline, if it has one, is the limit.
    let timeout = match spec.active_deadline_seconds {
        Some(seconds) => Some(DurationString(format!("{seconds}s"))),
        None => {
            let default = crate::api::format_duration(crate::analysis::providers::job::DEFAULT_TIMEOUT);
            w.warn(
                &path,
                format!(
                    "Argo waits for a Job without activeDeadlineSeconds however long it runs; Sluice fails it after provider.job.timeout (default {default}): set one if it runs longer"
                ),
            );
            None
        }
    };
    let metadata = metadata.filter(|m| !m.labels.is_empty() || !m.annotations.is_empty());
    Some(JobMetric { metadata, spec, timeout })
}

fn prometheus_of(mut p: Fields, w: &mut Warnings) -> PrometheusMetric {
    let mut address = p.string("address").unwrap_or_default();
    if !address.starts_with("http://") && !address.starts_with("https://") {
        w.warn(&p.at("address"), format!("`{address}` is not an http(s) URL; replaced by a placeholder to fill in"));
        address = super::PLACEHOLDER_PROMETHEUS.into();
    }
    let timeout = p.take("timeout").and_then(|v| super::duration(&v)).map(|d| d.as_str().into());
    p.drop("headers", "Sluice sends one header, from a Secret: set provider.prometheus.authHeader", w);
    let sigv4 = p.object("authentication").and_then(|mut authentication| {
        let sigv4 = authentication.object("sigv4").map(|mut sigv4| {
            let region = sigv4.string("region");
            sigv4.drop("roleArn", "Sluice signs with the controller's own credentials (its IRSA or Pod Identity role)", w);
            sigv4.drop("profile", "Sluice signs with the controller's own credentials (the default chain)", w);
            sigv4.finish(w);
            PrometheusSigV4 { region, service: None }
        });
        authentication.drop("oauth2", "Sluice sends one header from a Secret: set provider.prometheus.authHeader", w);
        authentication.finish(w);
        sigv4
    });
    p.drop("insecure", "Sluice always verifies TLS certificates", w);
    p.drop("rangeQuery", "use provider.prometheus.range (window and step)", w);
    let query = p.string("query").unwrap_or_default();
    p.finish(w);
    PrometheusMetric { address, query, timeout, sigv4, ..Default::default() }
}

fn cloudwatch_of(mut c: Fields, w: &mut Warnings) -> CloudWatchMetric {
    // Argo's `interval` is how far back the queries look (default 5m): Sluice's window.
    let window = duration_field(&mut c, "interval", w).unwrap_or_else(|| "5m".into());
    let mut queries = Vec::new();
    for (path, query) in c.list("metricDataQueries") {
        let mut q = Fields::new(path, query);
        let mut out = MetricDataQuery { id: q.string("id").unwrap_or_default(), expression: q.string("expression"), ..Default::default() };
        if let Some(mut stat) = q.object("metricStat") {
            let mut metric = stat.object("metric").unwrap_or_else(|| Fields::new(stat.at("metric"), Value::Null));
            let mut dimensions = Vec::new();
            for (path, d) in metric.list("dimensions") {
                let mut d = Fields::new(path, d);
                dimensions
                    .push(MetricDimension { name: d.string("name").unwrap_or_default(), value: d.string("value").unwrap_or_default() });
                d.finish(w);
            }
            out.metric_stat = Some(MetricStat {
                namespace: metric.string("namespace").unwrap_or_default(),
                metric_name: metric.string("metricName").unwrap_or_default(),
                dimensions,
                period: stat.int("period", w).unwrap_or(60),
                stat: stat.string("stat").unwrap_or_else(|| "Average".into()),
                unit: stat.string("unit"),
            });
            metric.finish(w);
            stat.finish(w);
        }
        out.return_data = q.bool("returnData");
        q.drop("label", "Sluice names queries by id only", w);
        q.drop("period", "set the period on metricStat", w);
        q.finish(w);
        queries.push(out);
    }
    c.finish(w);
    CloudWatchMetric { window, metric_data_queries: queries, region: None }
}

fn web_of(mut web: Fields, values: &BTreeMap<String, String>, w: &mut Warnings) -> WebMetric {
    let mut url = web.string("url").unwrap_or_default();
    // A URL that starts with an argument is resolved now when its value is known; otherwise it
    // stays templated and the AnalysisRun substitutes it.
    let leading = url.starts_with("{{").then(|| url.find("}}")).flatten();
    if let Some((end, value)) = leading.and_then(|end| Some((end, templated_arg(&url[..end + 2]).and_then(|arg| values.get(arg))?))) {
        url = format!("{value}{}", &url[end + 2..]);
    }
    let method = match web.string("method").as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("GET") => None,
        Some("POST") => Some(HttpMethod::Post),
        Some(other) => {
            w.warn(&web.at("method"), format!("{other}: Sluice's web provider sends GET or POST; GET is used"));
            None
        }
    };
    let mut headers = Vec::new();
    for (path, header) in web.list("headers") {
        let mut header = Fields::new(path, header);
        headers.push(WebHeader { name: header.string("key").unwrap_or_default(), value: header.string("value"), secret_key_ref: None });
        header.finish(w);
    }
    let mut body = web.string("body");
    if let Some(json) = web.take("jsonBody") {
        body = Some(json.to_string());
    }
    let timeout = web.take("timeoutSeconds").and_then(|v| super::duration(&v)).map(|d| d.as_str().into());
    // Argo writes Kubernetes JSONPath in braces (`{$.data.ok}`); Sluice takes the bare path.
    let json_path = web.string("jsonPath").map(|p| p.trim().trim_start_matches('{').trim_end_matches('}').to_string());
    web.drop("insecure", "Sluice always verifies TLS certificates", w);
    web.finish(w);
    WebMetric { url, method, headers, body, json_path, timeout }
}

/// Flagger reuses the web provider for its webhooks.
pub(super) fn web_metric(name: &str, url: String, body: Option<String>, timeout: Option<String>) -> Metric {
    Metric {
        name: name.to_string(),
        provider: MetricProvider {
            web: Some(WebMetric {
                url,
                method: Some(HttpMethod::Post),
                body,
                timeout: timeout.map(|t| t.as_str().into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}
