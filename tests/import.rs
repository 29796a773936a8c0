//! `sluice import` on Argo Rollouts and Flagger manifests: the fields that map, the exact
//! warnings for those that do not, and output that parses as Sluice's own types, passes the
//! engine's validation and every rule of the CRDs' schemas (kube's client-side CEL validator,
//! which evaluates the rules as the API server does; tests/e2e applies one import to the real
//! API server).

use serde_json::Value;
use sluice::api::{AnalysisArg, AnalysisTemplateSpec, IntOrArg, Rollout, crd};
use sluice::cli::load_manifests;
use sluice::import::{Imported, import};

fn fixture(name: &str) -> (String, String) {
    let path = format!("{}/tests/fixtures/import/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (name.to_string(), text)
}

fn run(names: &[&str]) -> Imported {
    let files: Vec<(String, String)> = names.iter().map(|n| fixture(n)).collect();
    import(&files).expect("imports")
}

/// A number field's value, once no argument is left in it.
fn n(field: &Option<IntOrArg>) -> Option<i32> {
    field.as_ref().and_then(IntOrArg::value)
}

fn warnings(imported: &Imported) -> Vec<String> {
    imported.warnings.iter().map(ToString::to_string).collect()
}

fn schema(kind: &str) -> Value {
    let file = match kind {
        "Rollout" => "rollouts.yaml",
        "AnalysisTemplate" => "analysistemplates.yaml",
        "ClusterAnalysisTemplate" => "clusteranalysistemplates.yaml",
        other => panic!("no CRD for {other}"),
    };
    let (_, definition) = crd::all().into_iter().find(|(f, _)| *f == file).unwrap();
    serde_json::to_value(definition).unwrap()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Parses the printed YAML back as Sluice's types and checks it as the controller and the API
/// server would; returns the Rollout and the templates.
fn accepted(imported: &Imported) -> (Rollout, std::collections::BTreeMap<String, AnalysisTemplateSpec>) {
    let (rollouts, templates) = accepted_all(imported);
    let [rollout] = rollouts.as_slice() else { panic!("one Rollout expected:\n{}", imported.to_yaml()) };
    (rollout.clone(), templates)
}

/// [`accepted`] for an input of several Rollouts.
fn accepted_all(imported: &Imported) -> (Vec<Rollout>, std::collections::BTreeMap<String, AnalysisTemplateSpec>) {
    let yaml = imported.to_yaml();
    let documents: Vec<Value> = serde_saphyr::from_multiple(&yaml).expect("the output is YAML");
    for document in &documents {
        let kind = document["kind"].as_str().unwrap();
        if let Err(errors) = kube::core::cel::Validator::new().validate(&schema(kind), document, None) {
            // Kube's client-side CEL has no `type()`: the API server evaluates those rules
            // (tests/e2e/analysis_args.rs); every other rule must pass here.
            let errors: Vec<_> = errors.into_vec().into_iter().filter(|e| !e.rule.contains("type(self)")).collect();
            assert!(errors.is_empty(), "{kind} refused by the CRD's rules: {errors:?}\n{yaml}");
        }
    }
    let manifests = load_manifests(&yaml).expect("the output parses as Sluice's types");
    for rollout in &manifests.rollouts {
        sluice::engine::validate(&rollout.spec).unwrap_or_else(|e| panic!("the engine refuses the import: {e}\n{yaml}"));
    }
    (manifests.rollouts, manifests.templates)
}

fn step_kinds(rollout: &Rollout) -> Vec<String> {
    let canary = rollout.spec.strategy.canary.as_ref().expect("a canary");
    canary
        .steps
        .iter()
        .map(|s| match (s.set_weight, &s.pause, &s.analysis, &s.set_canary_scale) {
            _ if s.set_header_route.is_some() => format!("setHeaderRoute {}", s.set_header_route.as_ref().unwrap().name),
            (Some(w), ..) => format!("setWeight {w}"),
            (_, Some(p), ..) => format!("pause {}", p.duration.as_ref().map_or("manual", |d| d.0.as_str())),
            (_, _, Some(a), _) => {
                format!("analysis {}", a.templates.iter().map(|t| t.template_name.as_str()).collect::<Vec<_>>().join(","))
            }
            (_, _, _, Some(s)) => format!("setCanaryScale {:?}", s.replicas),
            _ => "empty".into(),
        })
        .collect()
}

#[test]
fn argo_canary_with_analysis() {
    let imported = run(&["argo-canary-analysis.yaml"]);
    let (rollout, templates) = accepted(&imported);
    assert_eq!(rollout.metadata.namespace.as_deref(), Some("store"));
    let workload = rollout.spec.workload.kubernetes.as_ref().unwrap();
    assert_eq!((workload.replicas, workload.min_ready_seconds, workload.revision_history_limit), (8, Some(10), Some(4)));
    assert_eq!(workload.template.spec.as_ref().unwrap().containers[0].image.as_deref(), Some("registry.example.com/store/basket:3.1.0"));
    assert_eq!(rollout.spec.traffic, None);
    let canary = rollout.spec.strategy.canary.as_ref().unwrap();
    assert_eq!((canary.stable_service.as_deref(), canary.canary_service.as_deref()), (Some("basket-stable"), Some("basket-canary")));
    assert_eq!(canary.scale_down_delay_seconds, Some(60));
    assert_eq!(
        step_kinds(&rollout),
        ["setCanaryScale Some(2)", "setWeight 10", "pause 2m", "analysis basket-errors", "setWeight 40", "pause 90s", "pause manual"]
    );
    let step_args: Vec<(&str, Option<&str>, Option<&str>)> = canary.steps[3]
        .analysis
        .as_ref()
        .unwrap()
        .args
        .iter()
        .map(|a| {
            let field = a.value_from.as_ref().and_then(|f| f.field_ref.as_ref()).map(|f| f.field_path.as_str());
            (a.name.as_str(), a.value.as_deref(), field)
        })
        .collect();
    assert_eq!(
        step_args,
        [
            ("service", None, Some("metadata.labels['team']")),
            ("namespace", None, Some("metadata.namespace")),
            ("revision", Some("{{args.sluice.canaryRevision}}"), None)
        ],
        "fieldRefs stay fieldRefs, read when each run is created; the latest pod-template hash is the canary revision"
    );
    assert_eq!(canary.analysis.as_ref().unwrap().templates[0].template_name, "basket-errors");

    let template = &templates["basket-errors"];
    let names: Vec<&str> = template.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["success-rate", "p99-latency", "smoke", "apdex"], "the Datadog metric too");
    let datadog = template.metrics[3].provider.datadog.as_ref().expect("a Datadog metric");
    assert_eq!(datadog.query.as_deref(), Some("avg:trace.http.request.apdex{service:basket}"));
    assert_eq!(
        (datadog.api_key.name.as_str(), datadog.api_key.key.as_str(), datadog.application_key.key.as_str(), &datadog.address),
        ("datadog", "api-key", "app-key", &None),
        "Argo's Secret and keys; the site's address is read from the Secret as Argo reads it"
    );
    let rate = &template.metrics[0];
    assert_eq!(rate.success_condition.as_deref(), Some("result >= 0.95"));
    assert_eq!((rate.interval.as_ref().unwrap().0.as_str(), n(&rate.count), n(&rate.failure_limit)), ("1m", Some(5), Some(1)));
    let prometheus = rate.provider.prometheus.as_ref().unwrap();
    assert_eq!(prometheus.address, "http://prometheus.monitoring:9090");
    assert_eq!(prometheus.timeout.as_ref().unwrap().0, "20s");
    assert!(prometheus.query.contains(r#"service="{{args.service}}""#));
    assert_eq!(template.metrics[1].success_condition.as_deref(), Some("len(result) == 0 || result[0] < 0.4"), "kept as written");
    let smoke = &template.metrics[2];
    assert_eq!(smoke.success_condition.as_deref(), Some("result.healthy == true && result.failures < 3.0"));
    let web = smoke.provider.web.as_ref().unwrap();
    assert_eq!((web.json_path.as_deref(), web.body.as_deref()), (Some("$.summary"), Some(r#"{"suite":"quick"}"#)));
    assert_eq!((web.headers[0].name.as_str(), web.headers[0].value.as_deref()), ("X-Requested-By", Some("rollout")));

    assert_eq!(
        warnings(&imported),
        [
            "warning: Rollout/basket: spec.strategy.canary.analysis.startingStep: Sluice's background analysis runs from the first step; dropped",
            "warning: Rollout/basket: spec.strategy.canary.trafficRouting.istio: Sluice routes traffic through an ALB or by replica ratio; dropped",
            "warning: Rollout/basket: spec.strategy.canary.steps: 1 setHeaderRoute step(s) dropped: a header route is an ALB listener rule, and this Rollout has no ALB",
            "warning: Rollout/basket: spec.strategy.canary.steps: step 1 (setWeight 10): with 8 replicas and no traffic router the replica ratio reaches 25% (2 canary, 6 stable pods); raise the replicas or route through an ALB for finer weights",
            "warning: Rollout/basket: spec.strategy.canary.steps: step 4 (setWeight 40): with 8 replicas and no traffic router the replica ratio reaches 25% (2 canary, 6 stable pods); raise the replicas or route through an ALB for finer weights",
            "warning: AnalysisTemplate/basket-errors: spec.args[2].valueFrom: Sluice arguments are plain values; a secret belongs in provider.prometheus.authHeader or a web header's secretKeyRef; dropped",
            "warning: AnalysisTemplate/basket-errors: spec.metrics[1].successCondition: kept as written, it uses `len`, which has no safe CEL equivalent: rewrite it in CEL (see docs/analysis.md)",
            "warning: AnalysisTemplate/basket-errors: spec.args[1]: argument namespace is used by no imported metric; dropped",
            "warning: AnalysisTemplate/basket-errors: spec.args[2]: argument api-token is used by no imported metric; dropped",
        ]
    );
}

#[test]
fn argo_blue_green_with_cluster_template() {
    let imported = run(&["argo-blue-green.yaml"]);
    let (rollout, templates) = accepted(&imported);
    let bg = rollout.spec.strategy.blue_green.as_ref().unwrap();
    assert_eq!((bg.active_service.as_str(), bg.preview_service.as_deref()), ("ledger-active", Some("ledger-preview")));
    assert_eq!((bg.auto_promotion_enabled, bg.preview_replica_count, bg.scale_down_delay_seconds), (Some(false), Some(1), Some(120)));
    assert_eq!(bg.pre_promotion_analysis.as_ref().unwrap().templates[0].template_name, "ledger-smoke");
    let post = bg.post_promotion_analysis.as_ref().unwrap();
    assert!(post.templates[0].cluster_scope);
    assert_eq!(post.args[0].value.as_deref(), Some("app/ledger/0123456789abcdef"));
    assert_eq!(rollout.spec.progress_deadline_seconds, Some(900));
    assert_eq!(templates["ledger-smoke"].metrics[0].success_condition.as_deref(), Some(r#"result == "pass""#));

    let yaml = imported.to_yaml();
    assert!(yaml.contains("kind: ClusterAnalysisTemplate"), "{yaml}");
    let elb = &templates["elb-5xx"].metrics[0];
    let cloudwatch = elb.provider.cloud_watch.as_ref().unwrap();
    assert_eq!(cloudwatch.window.0, "10m", "Argo's CloudWatch interval is the window looked back over");
    let stat = cloudwatch.metric_data_queries[0].metric_stat.as_ref().unwrap();
    assert_eq!((stat.metric_name.as_str(), stat.period, stat.stat.as_str()), ("HTTPCode_Target_5XX_Count", 60, "Sum"));
    assert_eq!(stat.dimensions[0].value, "{{args.load-balancer}}");
    assert_eq!((n(&elb.count), n(&elb.consecutive_error_limit)), (Some(3), Some(2)));

    assert_eq!(
        warnings(&imported),
        [
            "warning: Rollout/ledger: spec.strategy.blueGreen.abortScaleDownDelaySeconds: Sluice has no abort scale-down delay for blue/green; dropped",
            "warning: Rollout/ledger: spec.strategy.blueGreen.antiAffinity: set pod anti-affinity in the pod template; dropped",
            "warning: ClusterAnalysisTemplate/elb-5xx: spec.metrics[0].successCondition: kept as written, Argo hands CloudWatch conditions a list of query results, Sluice the first query's values: rewrite it in CEL (see docs/analysis.md)",
        ]
    );
}

#[test]
fn argo_alb_canary_over_a_referenced_deployment() {
    let imported = run(&["argo-alb-canary.yaml"]);
    let (rollout, _) = accepted(&imported);
    let workload = rollout.spec.workload.kubernetes.as_ref().unwrap();
    assert_eq!(workload.replicas, 6);
    let reference = workload.deployment_ref.as_ref().expect("the Deployment stays where it is");
    assert_eq!((reference.name.as_str(), reference.scale_down), ("search", sluice::api::ScaleDown::Progressively));
    assert!(workload.template.spec.is_none(), "its template is not copied");
    let alb = rollout.spec.traffic.as_ref().unwrap().alb.as_ref().unwrap();
    assert_eq!(alb.rule_arn.as_deref(), Some(sluice::import::PLACEHOLDER_RULE_ARN));
    assert_ne!(alb.stable_target_group_arn, alb.canary_target_group_arn);
    assert_eq!(
        step_kinds(&rollout),
        ["setHeaderRoute qa", "setWeight 5", "pause 1h", "setWeight 25", "pause 30m", "setHeaderRoute qa", "setWeight 60", "pause manual"]
    );
    let steps = &rollout.spec.strategy.canary.as_ref().unwrap().steps;
    let qa = steps[0].set_header_route.as_ref().unwrap();
    let values: Vec<(&str, Option<&str>, Option<&str>)> =
        qa.matches.iter().map(|m| (m.header_name.as_str(), m.header_value.exact.as_deref(), m.header_value.prefix.as_deref())).collect();
    assert_eq!(values, [("x-qa", Some("on"), None), ("user-agent", None, Some("Mozilla"))], "exact and prefix matches carry over");
    assert!(steps[5].set_header_route.as_ref().unwrap().matches.is_empty(), "a route named without a match is removed");
    assert_eq!(rollout.spec.strategy.canary.as_ref().unwrap().abort_scale_down_delay_seconds, Some(30));
    assert_eq!(
        warnings(&imported),
        [
            "warning: Rollout/search: spec.strategy.canary.trafficRouting.alb: the steps set header routes, which Sluice makes as listener rules beside a rule it names, so it sets the weights on the load balancer itself, not through Ingress search-ingress: fill in spec.traffic.alb.ruleArn with the ARN of the listener rule that forwards to Service search-root port 80 (or replace it by listenerArn for a listener's default action), stableTargetGroupArn with the target group of Service search-stable and canaryTargetGroupArn with the target group of Service search-canary",
        ]
    );
}

#[test]
fn flagger_canary_becomes_explicit_steps() {
    let imported = run(&["flagger-canary.yaml"]);
    let (rollout, templates) = accepted(&imported);
    let workload = rollout.spec.workload.kubernetes.as_ref().unwrap();
    assert_eq!(workload.replicas, 4, "the Deployment's replicas");
    let reference = workload.deployment_ref.as_ref().expect("the Deployment is adopted where it is");
    assert_eq!(
        (reference.name.as_str(), reference.scale_down),
        ("catalog", sluice::api::ScaleDown::OnSuccess),
        "as Flagger scales its target down"
    );
    assert_eq!(
        step_kinds(&rollout),
        [
            "analysis catalog-pre-rollout",
            "setWeight 10",
            "pause 30s",
            "setWeight 20",
            "pause 30s",
            "setWeight 30",
            "pause 30s",
            "pause manual",
        ],
        "stepWeight 10 up to maxWeight 30, one interval each, confirm-promotion as a manual pause"
    );
    let canary = rollout.spec.strategy.canary.as_ref().unwrap();
    let background: Vec<&str> = canary.analysis.iter().flat_map(|a| &a.templates).map(|t| t.template_name.as_str()).collect();
    assert_eq!(background, ["catalog-analysis"], "threshold 3: the checks run beside the steps, so failures add up as in Flagger");
    assert_eq!(
        (canary.stable_service.as_deref(), canary.canary_service.as_deref()),
        (Some("catalog-primary"), Some("catalog-canary")),
        "Flagger's Service names, which its webhooks call"
    );
    assert_eq!(rollout.spec.progress_deadline_seconds, Some(120));
    assert_eq!(rollout.metadata.annotations.as_ref().unwrap()["sluice.dev/notify-webhook"], "http://notifier.test/flagger");

    let checks = &templates["catalog-analysis"].metrics;
    let names: Vec<&str> = checks.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["request-success-rate", "error-ratio", "load"]);
    for check in checks {
        let every = (check.interval.as_ref().map(|d| d.0.as_str()), n(&check.count));
        assert_eq!(every, (Some("30s"), None), "{}: one measurement an interval until promotion", check.name);
    }
    let limits: Vec<_> = checks.iter().map(|m| n(&m.failure_limit)).collect();
    assert_eq!(limits, [Some(2); 3], "threshold 3: two failed checks tolerated, the third rolls back");
    assert_eq!(checks[0].success_condition.as_deref(), Some("result >= 99.0"));
    assert!(checks[0].provider.prometheus.as_ref().unwrap().query.contains(r#"destination_service_name="catalog""#));
    let ratio = &checks[1];
    assert_eq!(ratio.success_condition.as_deref(), Some("result <= 1.5"));
    let prometheus = ratio.provider.prometheus.as_ref().unwrap();
    assert_eq!(prometheus.address, "http://prometheus.monitoring:9090");
    assert!(
        prometheus.query.contains(r#"{namespace="shop", app="catalog", tier="frontend"}[2m]"#),
        "Flagger's variables filled in with the metric's own interval: {}",
        prometheus.query
    );
    let load = checks[2].provider.web.as_ref().unwrap();
    assert_eq!((load.url.as_str(), load.timeout.as_ref().unwrap().0.as_str()), ("http://loadtester.test/", "5s"));
    let body: Value = serde_json::from_str(load.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["metadata"]["cmd"], "hey -z 1m -q 10 http://catalog-canary.shop/");
    assert_eq!(n(&checks[2].consecutive_error_limit), Some(2), "threshold 3: two errors in a row tolerated");
    assert_eq!(templates["catalog-pre-rollout"].metrics[0].provider.web.as_ref().unwrap().url, "http://loadtester.test/smoke");

    assert_eq!(
        warnings(&imported),
        [
            "warning: Canary/catalog: spec.provider: istio: Sluice routes traffic through an ALB or by replica ratio; weights become replica ratios",
            "warning: Canary/catalog: spec.autoscalerRef: point the HorizontalPodAutoscaler's scaleTargetRef at the Rollout (sluice.dev/v1alpha1, it has a scale subresource); dropped",
            "warning: Canary/catalog: spec.analysis.threshold: Flagger's tolerance of 2 failed checks over the whole canary is kept: the checks run as background analysis (strategy.canary.analysis), once every 30s, and the rollout rolls back at failed check 3; unlike Flagger, a failed check does not hold the weight where it is",
            "warning: Canary/catalog: spec.analysis.metrics[0]: Flagger's builtin request-success-rate check, written for Istio: it measures Service catalog as a whole (stable and canary); fill in the Prometheus address",
            "warning: Canary/catalog: spec.analysis.webhooks[0]: pre-rollout webhook smoke-test is called as a web metric (POST, passes on a 2xx answer; an empty answer is no data and pauses the rollout)",
            "warning: Canary/catalog: spec.analysis.webhooks[1]: rollout webhook load is called as a web metric (POST, passes on a 2xx answer; an empty answer is no data and pauses the rollout)",
            "warning: Canary/catalog: spec.analysis.webhooks[2]: confirm-promotion webhook gate becomes a manual gate: a person runs `kubectl sluice promote`",
            "warning: Canary/catalog: spec.analysis.webhooks[3]: event webhook chat becomes a Sluice notification (sluice.dev/notify-webhook); Sluice posts its own JSON payload, not Flagger's",
            "warning: Canary/catalog: spec.analysis.webhooks[4]: post-rollout webhook cleanup: Sluice calls no hook at this point; its notifications (sluice.dev/notify-webhook) tell a URL about Promoted, Aborted and Healthy; dropped",
            "warning: Canary/catalog: spec.service: Flagger generates its Services and mesh routes from this block; Sluice splits traffic by replica ratio behind Service catalog (port 80), which must select the pod template's labels (the pods of both revisions), and points the Services Flagger names, so webhooks keep working: create catalog-primary (stableService) and catalog-canary (canaryService); Sluice sets their selectors; the rest of the block is dropped",
            "warning: Canary/catalog: spec.analysis: step 1 (setWeight 10): with 4 replicas and no traffic router the replica ratio reaches 20% (1 canary, 4 stable pods); raise the replicas or route through an ALB for finer weights",
            "warning: Canary/catalog: spec.analysis: step 5 (setWeight 30): with 4 replicas and no traffic router the replica ratio reaches 25% (1 canary, 3 stable pods); raise the replicas or route through an ALB for finer weights",
        ]
    );
}

#[test]
fn flagger_iterations_without_a_deployment_become_a_blue_green_over_the_referenced_deployment() {
    let imported = run(&["flagger-blue-green.yaml"]);
    let (rollout, templates) = accepted(&imported);
    let workload = rollout.spec.workload.kubernetes.as_ref().unwrap();
    assert_eq!(workload.deployment_ref.as_ref().map(|r| r.name.as_str()), Some("invoices"), "kept referenced, with no warning");
    let bg = rollout.spec.strategy.blue_green.as_ref().unwrap();
    assert_eq!((bg.active_service.as_str(), bg.preview_service.as_deref()), ("invoices", Some("invoices-canary")), "Flagger's names");
    let metric = &templates[&bg.pre_promotion_analysis.as_ref().unwrap().templates[0].template_name].metrics[0];
    assert_eq!(
        (metric.interval.as_ref().unwrap().0.as_str(), n(&metric.count), n(&metric.failure_limit), metric.success_condition.as_deref()),
        ("1m", Some(5), Some(1), Some("result <= 500.0")),
        "five iterations one interval apart; threshold 2 tolerates one failure"
    );
    assert_eq!(
        warnings(&imported),
        [
            "warning: Canary/invoices: spec.analysis.metrics[0]: Flagger's builtin request-duration check depends on its mesh provider: fill in the PromQL query and the Prometheus address",
            "warning: Canary/invoices: spec.service: Flagger generates its Services from this block; Sluice points existing ones, named as Flagger names them so webhooks keep working: create Services invoices (port 8080) for blueGreen.activeService and invoices-canary for previewService (Sluice sets their selectors); the rest of the block is dropped",
        ]
    );
}

#[test]
fn the_command_reads_several_files_and_writes_warnings_to_stderr() {
    let dir = std::env::temp_dir().join(format!("sluice-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The Deployment and the Canary in two files, as they often live.
    let (_, text) = fixture("flagger-canary.yaml");
    let (deployment, rest) = text.split_once("\n---\n").unwrap();
    std::fs::write(dir.join("deployment.yaml"), deployment).unwrap();
    std::fs::write(dir.join("canary.yaml"), rest).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["import", "-f"])
        .arg(dir.join("canary.yaml"))
        .arg("-f")
        .arg(dir.join("deployment.yaml"))
        .output()
        .unwrap();
    let empty =
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice")).args(["import", "-f"]).arg(dir.join("deployment.yaml")).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stdout.contains("deploymentRef:") && stdout.contains("replicas: 4"),
        "the Deployment's replicas from the other file:\n{stdout}"
    );
    assert!(!stdout.contains("warning:"), "warnings stay off stdout");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("warning: Canary/catalog: ")).count(), 12, "{stderr}");
    assert!(!stderr.contains("not in the input"), "{stderr}");
    assert!(!empty.status.success(), "a Deployment alone is nothing to import");
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no Argo Rollouts Rollout or Flagger Canary"));
}

/// One leaf of a JSON value: its path (`spec.steps[0].setWeight`), its key, and the name of the
/// nearest object around it that has one (a metric's, an argument's, a container's), if any.
#[derive(Clone, Debug)]
struct Leaf {
    path: String,
    key: String,
    value: Value,
    anchor: Option<String>,
}

fn leaves(value: &Value, path: String, out: &mut Vec<Leaf>) {
    walk_leaves(value, path, None, out);
}

fn walk_leaves(value: &Value, path: String, anchor: Option<String>, out: &mut Vec<Leaf>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let anchor = map.get("name").and_then(Value::as_str).map(String::from).or(anchor);
            for (key, v) in map {
                let at = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                walk_leaves(v, at, anchor.clone(), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                walk_leaves(v, format!("{path}[{i}]"), anchor.clone(), out);
            }
        }
        other => {
            let key = path.rsplit(['.', '[']).next().unwrap_or_default().trim_end_matches(']').to_string();
            let key = if key.chars().all(|c| c.is_ascii_digit()) { path.rsplit('.').next().unwrap_or_default().to_string() } else { key };
            let key = key.split('[').next().unwrap_or_default().to_string();
            out.push(Leaf { path, key, value: other.clone(), anchor });
        }
    }
}

/// Input keys whose values reach the output under another name (or once transformed).
const RENAMED: &[(&str, &[&str])] = &[
    ("stepWeight", &["setWeight"]),
    ("stepWeights", &["setWeight"]),
    ("maxWeight", &["setWeight"]),
    ("iterations", &["count"]),
    ("interval", &["duration", "interval", "window"]),
    ("duration", &["duration"]),
    ("timeout", &["timeout"]),
    ("timeoutSeconds", &["timeout"]),
    ("suspend", &["paused"]),
    ("previewReplicaCount", &["previewReplicaCount"]),
    ("key", &["name"]),
];

fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), String::from)
}

/// Whether an input leaf reaches the output objects made from its object: its text in an output
/// string, a templated string's literal parts, a condition as translated, or, for anything
/// shorter, a duration as Sluice writes it or the same value under the same (or a renamed) key,
/// inside the output object with the same name around it (the same metric, argument, container).
fn reaches(leaf: &Leaf, output: &[Leaf]) -> bool {
    let (key, value) = (leaf.key.as_str(), &leaf.value);
    let written = text(value);
    let strings = || output.iter().filter_map(|o| o.value.as_str());
    if value.is_string() && written.len() >= 3 {
        if written.contains("{{") {
            let literal: Vec<&str> = written.split("{{").flat_map(|p| p.split("}}").last()).filter(|p| p.trim().len() >= 3).collect();
            if !literal.is_empty() && literal.iter().all(|part| strings().any(|s| s.contains(part.trim()))) {
                return true;
            }
            // A field that is only a reference, resolved at import: the same field in the same place.
            let resolved_in_place =
                output.iter().any(|o| o.key == leaf.key && o.anchor == leaf.anchor && o.value.as_str() != Some(&written));
            if literal.is_empty() && written.trim().starts_with("{{args.") && resolved_in_place {
                return true;
            }
        }
        if strings().any(|s| s.contains(&written)) {
            return true;
        }
        if let sluice::import::Translation::Cel(cel) = sluice::import::translate_condition(&written, true)
            && strings().any(|s| s.contains(&cel))
        {
            return true;
        }
    }
    // Flagger appends a metric's interval to a New Relic query, as Sluice's import does.
    let seconds = sluice::import::duration(value).and_then(|d| sluice::api::parse_duration(&d).ok()).map(|d| d.as_secs());
    if key == "interval" && seconds.is_some_and(|n| strings().any(|s| s.ends_with(&format!(" SINCE {n} seconds ago")))) {
        return true;
    }
    let mut forms = vec![written.clone(), written.trim_start_matches('{').trim_end_matches('}').to_string()];
    forms.extend(sluice::import::duration(value));
    if let Some(n) = value.as_f64() {
        forms.push(format!("{n:.1}"));
    }
    // Argo's "never scale the aborted canary down" is Sluice's -1.
    if key == "abortScaleDownDelaySeconds" && value == 0 {
        forms = vec!["-1".into()];
    }
    let keys: Vec<&str> = RENAMED.iter().find(|(k, _)| *k == key).map_or(vec![key], |(_, to)| to.to_vec());
    // Flagger's blue/green threshold: failed checks before rollback, one more than tolerated.
    let tolerated = (key == "threshold").then(|| value.as_i64().map(|n| (n - 1).to_string())).flatten();
    let same_place = |o: &&Leaf| key == "name" || leaf.anchor.is_none() || o.anchor == leaf.anchor;
    output.iter().filter(same_place).any(|o| {
        let (k, v) = (o.key.as_str(), &o.value);
        (k == "failureLimit" && tolerated.as_deref() == Some(text(v).as_str()))
            || (keys.contains(&k) && forms.iter().any(|f| f.eq_ignore_ascii_case(&text(v))))
            || (matches!(k, "successCondition" | "failureCondition")
                && value.is_number()
                && forms.iter().any(|f| text(v).contains(f.as_str())))
    })
}

/// The walk the issue asks for: every field of every input object either reaches the output
/// objects made from it or is named (it or a field holding it) in a warning about that object.
#[test]
fn every_input_field_is_mapped_or_warned_over_the_whole_corpus() {
    let dir = format!("{}/tests/fixtures/import", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert!(names.len() >= 10, "{names:?}");
    let mut lost = Vec::new();
    for name in &names {
        let (file, text) = fixture(name);
        let imported = import(&[(file, text.clone())]).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Each output object's leaves, by the object's name.
        let mut output: Vec<(String, Vec<Leaf>)> = Vec::new();
        for object in &imported.objects {
            let value = serde_json::to_value(object).unwrap();
            let mut object_leaves = Vec::new();
            leaves(&value, String::new(), &mut object_leaves);
            output.push((value["metadata"]["name"].as_str().unwrap_or_default().to_string(), object_leaves));
        }
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        // A Deployment or MetricTemplate is read through the Canary; its warnings name it in the path.
        let canary = documents.iter().find(|d| d["kind"] == "Canary").map(|d| d["metadata"]["name"].as_str().unwrap().to_string());
        let adopting = |deployment: &Value| {
            output.iter().flat_map(|(_, l)| l).any(|l| l.path.ends_with("deploymentRef.name") && l.value == deployment["metadata"]["name"])
        };
        for document in documents.iter().filter(|d| !d.is_null()) {
            let kind = document["kind"].as_str().unwrap();
            let own_name = document["metadata"]["name"].as_str();
            let object = format!("{kind}/{}", own_name.unwrap_or("(unnamed)"));
            // A Deployment the Rollout adopts stays in the cluster as it is: nothing of it is lost.
            if kind == "Deployment" && adopting(document) {
                continue;
            }
            let (owner, prefix, made_from) = match kind {
                "Deployment" | "MetricTemplate" => {
                    let canary = canary.clone().unwrap_or_default();
                    (format!("Canary/{canary}"), format!("{object}."), vec![canary, own_name.unwrap_or_default().to_string()])
                }
                _ => (object.clone(), String::new(), own_name.map(String::from).into_iter().collect()),
            };
            // The output objects made from this one: named as it is, or after it (`NAME-...`).
            let made: Vec<Leaf> = output
                .iter()
                .filter(|(out_name, _)| {
                    made_from.is_empty() || made_from.iter().any(|n| out_name == n || out_name.starts_with(&format!("{n}-")))
                })
                .flat_map(|(_, l)| l.iter().cloned())
                .collect();
            let deployment_ref = made.iter().any(|l| l.path.ends_with("deploymentRef.name"));
            let mut fields = Vec::new();
            leaves(document, String::new(), &mut fields);
            for leaf in fields {
                let path = leaf.path.as_str();
                if path == "apiVersion" || path == "kind" || path.starts_with("status") {
                    continue;
                }
                // A reference to a Deployment is Sluice's deploymentRef, which names only Deployments.
                let reference = ["spec.workloadRef.", "spec.targetRef."]
                    .iter()
                    .any(|r| [format!("{r}apiVersion"), format!("{r}kind")].contains(&path.to_string()));
                let same_reference = reference && deployment_ref && (leaf.value == "apps/v1" || leaf.value == "Deployment");
                // Flagger's plain Kubernetes provider is the replica-ratio split Sluice makes anyway;
                // Sluice always asks Datadog's API v2, from the Rollout's namespace.
                let same_meaning = (path == "spec.provider" && leaf.value == "kubernetes")
                    || (path.ends_with("datadog.apiVersion") && leaf.value == "v2")
                    || (path.ends_with("datadog.secretRef.namespaced") && leaf.value == true);
                // A Flagger metric's MetricTemplate is read into the metric: the name is only the link.
                let templates: Vec<&Value> =
                    documents.iter().filter(|d| d["kind"] == "MetricTemplate").map(|d| &d["metadata"]["name"]).collect();
                let referenced = documents
                    .iter()
                    .filter(|d| d["kind"] == "Canary")
                    .flat_map(|d| d["spec"]["analysis"]["metrics"].as_array().cloned().unwrap_or_default())
                    .any(|m| m["templateRef"]["name"] == leaf.value);
                let linked = (path.ends_with("templateRef.name") && templates.contains(&&leaf.value))
                    || (kind == "MetricTemplate" && path == "metadata.name" && referenced);
                if same_reference || same_meaning || linked {
                    continue;
                }
                let full = format!("{prefix}{path}");
                let warned = imported.warnings.iter().any(|w| {
                    w.object == owner
                        && (w.path == "."
                            || full == w.path
                            || full.starts_with(&format!("{}.", w.path))
                            || full.starts_with(&format!("{}[", w.path)))
                });
                if !warned && !reaches(&leaf, &made) {
                    lost.push(format!("{name}: {object}: {path} = {}", leaf.value));
                }
            }
        }
    }
    assert!(lost.is_empty(), "fields that neither reach the output nor are named in a warning:\n{}", lost.join("\n"));
}

#[test]
fn argo_special_values_keep_their_meaning() {
    let imported = run(&["argo-special-values.yaml"]);
    let (rollout, templates) = accepted(&imported);
    let workload = rollout.spec.workload.kubernetes.as_ref().unwrap();
    assert_eq!(workload.replicas, 1, "Argo's default replica count");
    assert_eq!(
        step_kinds(&rollout),
        [
            "setCanaryScale Some(1)",
            "pause 1h30m",
            "setWeight 20",
            "pause 45m30s",
            "analysis ledger-checks",
            "analysis ledger-checks",
            "pause 300ms",
            "setWeight 30"
        ],
        "the two-action items split in the order written, 1.5h kept as a timed pause, the experiment that measures its own pods dropped, \
         the other one an analysis step"
    );
    let canary = rollout.spec.strategy.canary.as_ref().unwrap();
    assert_eq!(canary.abort_scale_down_delay_seconds, Some(-1), "Argo's 0: the aborted canary keeps running");
    let experiment = canary.steps[4].analysis.as_ref().unwrap();
    assert_eq!(experiment.args[0].value.as_deref(), Some("2m"));

    let checks = &templates["ledger-checks"];
    let budget = &checks.metrics[0];
    assert_eq!(
        (
            budget.interval.as_ref().unwrap().0.as_str(),
            budget.initial_delay.as_ref().unwrap().0.as_str(),
            n(&budget.count),
            n(&budget.failure_limit)
        ),
        ("5m", "30s", Some(6), Some(2)),
        "{{{{args.x}}}} fields resolved from the template's defaults and the Rollout's one value for each"
    );
    assert_eq!(budget.success_condition.as_deref(), Some("result < 0.02"));
    let never = &checks.metrics[1];
    assert_eq!((n(&never.failure_limit), n(&never.inconclusive_limit)), (Some(-1), Some(-1)), "-1 is no limit, in both");
    assert_eq!(never.provider.web.as_ref().unwrap().url, "http://ledger-api.finance.svc/healthz", "a templated URL resolved");
    let args: Vec<&str> = checks.args.iter().map(|a| a.name.as_str()).collect();
    assert!(!args.contains(&"graphite-target"), "the dropped graphite metric's argument goes with it: {args:?}");

    let warnings = warnings(&imported);
    let about = |path: &str| warnings.iter().filter(|w| w.contains(&format!(": {path}: "))).cloned().collect::<Vec<_>>();
    assert!(about("spec.strategy.canary.steps[0]")[0].contains("split into 2 steps, in this order: setCanaryScale, pause"), "{warnings:?}");
    assert!(about("spec.strategy.canary.steps[6]")[0].contains("in this order: pause, setWeight"), "{warnings:?}");
    assert!(about("spec.strategy.canary.abortScaleDownDelaySeconds").is_empty(), "kept as it means: {warnings:?}");
    let dropped = &about("spec.strategy.canary.steps[3].experiment")[0];
    assert!(dropped.contains("pods-compared") && dropped.contains("baseline (stable pods), candidate (canary pods)"), "{dropped}");
    assert!(about("spec.strategy.canary.steps[4].experiment")[0].contains("becomes an analysis step"));
    assert!(about("spec.args[6]")[0].contains("graphite-target is used by no imported metric"));
}

#[test]
fn a_rollout_without_a_name_is_named_for_filling_in() {
    let imported = run(&["argo-unnamed.yaml"]);
    let (rollout, _) = accepted(&imported);
    assert_eq!(rollout.metadata.name.as_deref(), Some("reports-fill-in-name"));
    assert!(warnings(&imported).iter().any(|w| w.contains("metadata.name: missing")), "{:?}", warnings(&imported));
}

#[test]
fn flagger_gates_thresholds_and_default_replicas() {
    let imported = run(&["flagger-gates.yaml"]);
    let (rollout, templates) = accepted(&imported);
    assert_eq!(rollout.spec.workload.kubernetes.as_ref().unwrap().replicas, 1, "a Deployment without replicas runs one");
    assert_eq!(
        step_kinds(&rollout),
        [
            "pause manual",
            "pause manual",
            "setWeight 50",
            "pause 1m",
            "analysis checkout-analysis",
            "pause manual",
            "setWeight 100",
            "pause 1m",
            "analysis checkout-analysis",
            "pause manual"
        ],
        "confirm-rollout first, confirm-traffic-increase before each weight, confirm-promotion last"
    );
    let checks = &templates["checkout-analysis"].metrics;
    assert_eq!(checks[0].success_condition.as_deref(), Some("result >= 99.0"), "threshold is a minimum for the success rate");
    assert_eq!(checks[1].success_condition.as_deref(), Some("result <= 500.0"), "and a maximum for the duration");
    assert_eq!(checks[2].provider.web.as_ref().unwrap().url, "http://loadtester.shop/", "the load test, once per step");
}

/// Fails `error-ratio` for its first `failures` measurements; every other check passes.
struct FailingChecks {
    failures: u32,
}

impl sluice::simulate::world::MetricSource for FailingChecks {
    fn sample(&mut self, metric: &str, _: std::time::Duration) -> sluice::simulate::world::Sample {
        let value = match metric {
            "error-ratio" if self.failures > 0 => {
                self.failures -= 1;
                5.0
            }
            "error-ratio" => 0.5,
            _ => 99.5,
        };
        sluice::simulate::world::Sample::Value(serde_json::json!(value))
    }
}

/// The imported Flagger canary, rolled out in the simulated world: where it stops.
fn simulate_flagger_canary(failures: u32) -> sluice::api::RolloutStatus {
    use jiff::SignedDuration;
    use sluice::api::RolloutPhase;
    use sluice::simulate::world::{PassOutcome, World};
    let (_, templates) = accepted(&run(&["flagger-canary.yaml"]));
    // The Rollout as the controller runs it: with the template of the Deployment it adopts.
    let (_, fixture_text) = fixture("flagger-canary.yaml");
    let with_deployment = format!("{}\n---\n{}", run(&["flagger-canary.yaml"]).to_yaml(), fixture_text.split_once("\n---\n").unwrap().0);
    let manifests = load_manifests(&with_deployment).expect("the import and its Deployment");
    let rollout = manifests.rollouts[0].clone();
    assert!(rollout.spec.workload.kubernetes.as_ref().unwrap().template.spec.is_some(), "the Deployment's template");
    let start = jiff::Timestamp::from_second(1_767_225_600).unwrap();
    let mut world = World::at_rest("catalog", &rollout.spec, start, Box::new(FailingChecks { failures }));
    world.templates = templates;
    world.set_spec(sluice::simulate::scenario::with_version(&rollout.spec, "catalog:5.3.0"));
    for _ in 0..500 {
        let outcome = world.pass();
        if let PassOutcome::Interrupted { reason, .. } = &outcome {
            panic!("no call fails here: {reason}");
        }
        let requeue = outcome.next_pass_after();
        let status = &world.status;
        let manual = status.phase == Some(RolloutPhase::Paused) && status.message.as_deref().is_some_and(|m| m.contains("until promoted"));
        if status.abort || manual {
            return status.clone();
        }
        let next = [requeue.map(|r| world.now + SignedDuration::try_from(r).unwrap()), world.next_change()].into_iter().flatten().min();
        world.now = next.expect("something is due").max(world.now);
    }
    panic!("the canary neither stopped nor rolled back: {:?}", world.status.message);
}

#[test]
fn flagger_threshold_tolerates_its_failed_checks_over_the_whole_canary() {
    let tolerated = simulate_flagger_canary(2);
    assert!(!tolerated.abort, "two failed checks, threshold 3: {:?}", tolerated.abort_reason);
    assert_eq!(tolerated.current_step_index, Some(7), "every weight passed; the confirm-promotion gate waits");
    let rolled_back = simulate_flagger_canary(3);
    assert!(rolled_back.abort, "the third failed check rolls back: {:?}", rolled_back.message);
    assert!(rolled_back.abort_reason.as_deref().is_some_and(|r| r.contains("error-ratio")), "{:?}", rolled_back.abort_reason);
}

#[test]
fn templated_fields_without_one_value_at_import_are_replaced_in_each_run() {
    let imported = run(&["argo-runtime-args.yaml"]);
    let (rollouts, templates) = accepted_all(&imported);
    let budget = &templates["latency-budget"];
    let metric = &budget.metrics[0];
    let arg = |name: &str| Some(IntOrArg::Arg(format!("{{{{args.{name}}}}}")));
    assert_eq!(
        (&metric.count, &metric.failure_limit, &metric.inconclusive_limit, &metric.consecutive_error_limit),
        (&arg("samples"), &arg("tolerated"), &arg("unclear"), &arg("errors-in-a-row")),
        "two Rollouts pass different values: the fields stay templated"
    );
    assert_eq!(metric.interval.as_ref().unwrap().0, "{{args.every}}");
    assert_eq!(metric.initial_delay.as_ref().unwrap().0, "{{args.warmup}}");
    let args: Vec<&str> = budget.args.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(args, ["service", "samples", "every", "warmup", "tolerated", "unclear", "errors-in-a-row"], "every argument is kept");
    let kept: Vec<String> = warnings(&imported).into_iter().filter(|w| w.contains("kept, so each AnalysisRun takes")).collect();
    assert_eq!(kept.len(), 6, "each templated field is named: {kept:?}");

    // Each Rollout's run takes its own values, as Argo's AnalysisRuns do.
    let policy_of = |rollout: &Rollout| {
        let step = rollout.spec.strategy.canary.as_ref().unwrap().steps.iter().find_map(|s| s.analysis.clone()).unwrap();
        let args: Vec<AnalysisArg> = step.args.clone();
        let run = sluice::analysis::run::build(&[("latency-budget".into(), budget.clone())], &args, &[]).unwrap();
        sluice::analysis::verdict::MetricPolicy::of(&run.metrics[0]).unwrap()
    };
    let by_name: std::collections::BTreeMap<String, _> =
        rollouts.iter().map(|r| (r.metadata.name.clone().unwrap(), policy_of(r))).collect();
    let summary = |p: &sluice::analysis::verdict::MetricPolicy| {
        (
            p.count,
            p.interval.map(|d| d.as_secs()),
            p.initial_delay.as_secs(),
            p.failure_limit,
            p.inconclusive_limit,
            p.consecutive_error_limit,
        )
    };
    assert_eq!(summary(&by_name["bookings"]), (Some(5), Some(60), 30, 1, 2, 3));
    assert_eq!(summary(&by_name["flights"]), (Some(10), Some(30), 60, i32::MAX, 0, 1), "-1 from an argument is no limit too");

    let share = templates["error-share"].metrics[0].provider.datadog.clone().expect("Argo's Datadog metric");
    assert_eq!((share.formula.as_deref(), share.queries.len()), (Some("errors / requests"), 2));
    assert_eq!((share.api_key.name.as_str(), share.aggregator), ("dd-travel", Some(sluice::api::DatadogAggregator::Sum)));
    let amp = templates["amp-errors"].metrics[0].provider.prometheus.clone().unwrap();
    assert_eq!(amp.sigv4, Some(sluice::api::PrometheusSigV4 { region: Some("eu-west-1".into()), service: None }), "signed as in Argo");
    let warned = warnings(&imported);
    assert!(
        warned.iter().any(|w| w.contains("sigv4.roleArn") && w.contains("the controller's own credentials")),
        "the role Argo assumes is named: {warned:?}"
    );
}

#[test]
fn flagger_confirm_rollout_on_a_blue_green_waits_before_the_preview() {
    let imported = run(&["flagger-blue-green-gated.yaml"]);
    let (rollout, templates) = accepted(&imported);
    let bg = rollout.spec.strategy.blue_green.as_ref().unwrap();
    assert_eq!(
        (bg.approve_before_preview, bg.auto_promotion_enabled),
        (Some(true), Some(false)),
        "confirm-rollout: approval before the preview; confirm-promotion: approval before the switch"
    );
    let latency = &templates[&bg.pre_promotion_analysis.as_ref().unwrap().templates[0].template_name]
        .metrics
        .iter()
        .find_map(|m| m.provider.datadog.clone())
        .expect("the Datadog MetricTemplate imported");
    assert_eq!(
        (latency.query.as_deref(), latency.interval.as_ref().map(|d| d.0.as_str()), latency.address.as_deref()),
        (Some("avg:trace.http.request.duration{service:receipts}"), Some("30s"), Some("https://api.datadoghq.eu")),
        "the query over the analysis interval, on the template's site"
    );
    assert_eq!((latency.api_key.name.as_str(), latency.api_key.key.as_str()), ("datadog-keys", "datadog_api_key"), "Flagger's keys");
    let warnings = warnings(&imported);
    assert!(!warnings.iter().any(|w| w.contains("Datadog") || w.contains("datadog")), "mapped without a warning: {warnings:?}");
    assert!(!warnings.iter().any(|w| w.contains("starts every blue/green at once")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("confirm-rollout webhook approve-rollout becomes a manual gate")), "{warnings:?}");
}

#[test]
fn argo_alb_ingresses_without_header_routes_stay_ingresses() {
    let imported = run(&["argo-alb-ingresses.yaml"]);
    let (rollout, _) = accepted(&imported);
    let alb = rollout.spec.traffic.as_ref().unwrap().alb.as_ref().unwrap();
    assert_eq!(alb.ingresses, ["checkout-public", "checkout-internal"], "both Ingresses, in order");
    assert_eq!(alb.service_port, Some(8080));
    assert!(alb.rule_arn.is_none() && alb.stable_target_group_arn.is_empty(), "nothing to fill in: the controller makes them");
    assert_eq!(
        warnings(&imported),
        [
            "warning: Rollout/checkout: spec.strategy.canary.trafficRouting.alb.rootService: Sluice writes the weighted action under the stable Service's name: point the Ingress rule's backend at Service checkout-stable with port name use-annotation (instead of checkout-root)",
        ]
    );
}

#[test]
fn argo_new_relic_and_job_metrics_map_without_a_warning() {
    use serde_json::json;
    use sluice::analysis::condition::{MeasuredValue, judge};
    use sluice::api::{AnalysisPhase, SecretKeyRef};

    let imported = run(&["argo-newrelic-job.yaml"]);
    let (_, templates) = accepted(&imported);
    assert_eq!(warnings(&imported), Vec::<String>::new());
    let reference = |name: &str, key: &str| SecretKeyRef { name: name.into(), key: key.into() };

    let health = &templates["checkout-health"];
    let rate = &health.metrics[0];
    let new_relic = rate.provider.new_relic.as_ref().expect("Argo's New Relic metric");
    assert!(new_relic.query.contains("appName = '{{args.app}}' SINCE 5 minutes ago"), "{}", new_relic.query);
    assert_eq!(
        (&new_relic.api_key, new_relic.account_id_secret_key_ref.as_ref(), new_relic.region, &new_relic.address),
        (&reference("newrelic", "personal-api-key"), Some(&reference("newrelic", "account-id")), None, &None),
        "Argo's default profile and keys; NerdGraph's address is read from the Secret as Argo reads it"
    );
    let condition = rate.success_condition.as_deref().unwrap();
    assert_eq!(condition, "result.errorRate < 0.01");
    let row = MeasuredValue::Json(json!({"errorRate": 0.004}));
    assert_eq!(judge(Some(condition), None, &row), Ok(AnalysisPhase::Successful), "the value is the query's row");

    let smoke = health.metrics[1].provider.job.as_ref().expect("Argo's Job metric");
    let metadata = smoke.metadata.as_ref().unwrap();
    assert_eq!((metadata.labels["purpose"].as_str(), metadata.annotations["team"].as_str()), ("smoke", "shop"));
    assert_eq!(smoke.spec.backoff_limit, Some(1));
    let pod = smoke.spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some("registry.example.com/shop/smoke:1.4.0"));
    assert_eq!(smoke.timeout.as_ref().map(|t| t.0.as_str()), Some("900s"), "the Job's own deadline");
    assert_eq!(health.metrics[1].success_condition, None, "decided by how the Job ends");

    let apdex = templates["checkout-apdex"].metrics[0].provider.new_relic.clone().unwrap();
    assert_eq!((apdex.api_key.name.as_str(), apdex.timeout.as_ref().map(|t| t.0.as_str())), ("newrelic-shop", Some("20s")));
}

#[test]
fn flagger_new_relic_template_asks_nerdgraph_over_the_metric_interval() {
    use serde_json::json;
    use sluice::analysis::condition::{MeasuredValue, judge};
    use sluice::api::{AnalysisPhase, SecretKeyRef};

    let imported = run(&["flagger-newrelic.yaml"]);
    let (_, templates) = accepted(&imported);
    let metric = templates.values().flat_map(|t| &t.metrics).find(|m| m.provider.new_relic.is_some()).expect("the New Relic metric");
    let new_relic = metric.provider.new_relic.as_ref().unwrap();
    assert!(new_relic.query.contains("WHERE appName = 'search'"), "{}", new_relic.query);
    assert!(new_relic.query.ends_with("FROM Transaction WHERE appName = 'search' SINCE 120 seconds ago"), "{}", new_relic.query);
    let reference = |key: &str| Some(SecretKeyRef { name: "newrelic-catalog".into(), key: key.into() });
    assert_eq!(new_relic.account_id_secret_key_ref, reference("newrelic_account_id"));
    assert_eq!(Some(new_relic.api_key.clone()), reference("newrelic_api_key"), "a User API key beside Flagger's Insights key");

    // Flagger judges the one number of the one row, whatever NRQL names it.
    let condition = metric.success_condition.as_deref().unwrap();
    assert_eq!(condition, "result.all(field, result[field] <= 5.0)");
    assert_eq!(judge(Some(condition), None, &MeasuredValue::Json(json!({"result": 2.5}))), Ok(AnalysisPhase::Successful));
    assert_eq!(judge(Some(condition), None, &MeasuredValue::Json(json!({"filter": 7}))), Ok(AnalysisPhase::Failed));

    let about_new_relic: Vec<String> =
        warnings(&imported).into_iter().filter(|w| w.contains("newrelic") || w.contains("New Relic") || w.contains("NerdGraph")).collect();
    assert_eq!(
        about_new_relic,
        [
            "warning: Canary/search: MetricTemplate/newrelic-errors.spec.provider.secretRef: Flagger's newrelic_query_key is an Insights query key, which NerdGraph does not take: add a User API key (NRAK-…) to Secret newrelic-catalog under newrelic_api_key"
        ],
        "only the key Flagger does not have"
    );
}
