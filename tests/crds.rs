//! The committed CRDs match the Rust types, fit client-side apply, and refuse bad Rollouts
//! with messages a person can act on. (The local-stack tests apply them to a real API server.)

use serde_json::{Value, json};
use sluice::api::crd;

fn rollout_schema() -> Value {
    let crd = serde_json::to_value(crd::rollout()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn committed_crds_match_the_types() {
    for (file, definition) in crd::all() {
        let path = format!("{}/crds/{file}", env!("CARGO_MANIFEST_DIR"));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == crd::to_yaml(&definition),
            "crds/{file} is stale: run `cargo run -- crd --write crds --write charts/sluice/files/crds`"
        );
    }
}

#[test]
fn the_chart_ships_the_same_crds() {
    for (file, _) in crd::all() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let chart = std::fs::read_to_string(format!("{dir}/charts/sluice/files/crds/{file}")).unwrap_or_default();
        let committed = std::fs::read_to_string(format!("{dir}/crds/{file}")).unwrap();
        assert!(
            chart == committed,
            "charts/sluice/files/crds/{file} differs from crds/{file}: run `cargo run -- crd --write crds --write charts/sluice/files/crds`"
        );
    }
}

#[test]
fn every_crd_fits_the_client_side_apply_annotation() {
    for (file, definition) in crd::all() {
        let json = serde_json::to_vec(&definition).unwrap().len();
        let yaml = crd::to_yaml(&definition).len();
        println!("{file}: {json} bytes as JSON, {yaml} as YAML (limit {})", crd::MAX_CRD_BYTES);
        assert!(json < crd::MAX_CRD_BYTES, "{file} is {json} bytes, over the {} kubectl apply can store", crd::MAX_CRD_BYTES);
    }
}

fn canary_rollout() -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": {
            "workload": {"kubernetes": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "checkout"}},
                "template": {"metadata": {"labels": {"app": "checkout"}}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
            }},
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "1m"}}]}}
        }
    })
}

fn refusal(rollout: &Value) -> String {
    match kube::core::cel::Validator::new().validate(&rollout_schema(), rollout, None) {
        Ok(()) => String::new(),
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; "),
    }
}

#[test]
fn a_valid_canary_passes_every_rule() {
    assert_eq!(refusal(&canary_rollout()), "");
}

#[test]
fn the_examples_pass_every_rule() {
    let dir = format!("{}/examples", env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let docs: Vec<Value> = serde_saphyr::from_multiple(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for doc in docs.iter().filter(|d| d["kind"] == "Rollout") {
            assert_eq!(refusal(doc), "", "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} example rollouts found");
}

#[test]
fn weight_outside_0_to_100_is_refused() {
    let mut rollout = canary_rollout();
    rollout["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = json!(150);
    assert!(refusal(&rollout).contains("setWeight is a percentage: use a value from 0 to 100"), "{}", refusal(&rollout));
}

#[test]
fn two_strategies_are_refused() {
    let mut rollout = canary_rollout();
    rollout["spec"]["strategy"]["rolling"] = json!({"maxSurge": 1});
    assert!(refusal(&rollout).contains("set exactly one of strategy.canary, strategy.blueGreen or strategy.rolling"));
}

#[test]
fn a_step_with_two_actions_is_refused() {
    let mut rollout = canary_rollout();
    rollout["spec"]["strategy"]["canary"]["steps"][0]["pause"] = json!({});
    assert!(
        refusal(&rollout).contains("each canary step sets exactly one of setWeight, pause, analysis, setCanaryScale or setHeaderRoute")
    );
}

#[test]
fn two_workloads_are_refused_and_a_workload_is_required() {
    let mut rollout = canary_rollout();
    rollout["spec"]["workload"]["ecs"] = json!({"cluster": "c", "service": "s", "taskDefinition": "t", "desiredCount": 1, "loadBalancer": {"containerName": "a", "containerPort": 80}});
    assert!(refusal(&rollout).contains("set exactly one of workload.kubernetes or workload.ecs"));
    let required = rollout_schema()["properties"]["spec"]["required"].clone();
    assert!(required.as_array().unwrap().contains(&json!("workload")), "spec.workload must be required: {required}");
    assert!(required.as_array().unwrap().contains(&json!("strategy")));
}

#[test]
fn ecs_and_rolling_and_router_rules() {
    let mut rolling_with_alb = canary_rollout();
    rolling_with_alb["spec"]["strategy"] = json!({"rolling": {}});
    rolling_with_alb["spec"]["traffic"] = json!({"alb": {
        "listenerArn": "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/a/b/c",
        "stableTargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/s/1",
        "canaryTargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/c/2"
    }});
    assert!(refusal(&rolling_with_alb).contains("a rolling update splits traffic by replica ratio"));

    let mut both_listener_and_rule = canary_rollout();
    both_listener_and_rule["spec"]["traffic"] = rolling_with_alb["spec"]["traffic"].clone();
    both_listener_and_rule["spec"]["traffic"]["alb"]["ruleArn"] =
        json!("arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/a/b/c/d");
    assert!(refusal(&both_listener_and_rule).contains("set exactly one of traffic.alb.listenerArn"));

    let mut same_groups = canary_rollout();
    same_groups["spec"]["traffic"] = rolling_with_alb["spec"]["traffic"].clone();
    same_groups["spec"]["traffic"]["alb"]["canaryTargetGroupArn"] = same_groups["spec"]["traffic"]["alb"]["stableTargetGroupArn"].clone();
    assert!(refusal(&same_groups).contains("must be different target groups"));

    let mut ecs_without_alb = canary_rollout();
    ecs_without_alb["spec"]["workload"] = json!({"ecs": {"cluster": "c", "service": "s", "taskDefinition": "t", "desiredCount": 1, "loadBalancer": {"containerName": "a", "containerPort": 80}}});
    assert!(refusal(&ecs_without_alb).contains("an ECS workload needs spec.traffic.alb"));
}

#[test]
fn analysis_providers_are_exactly_one() {
    let crd = serde_json::to_value(sluice::api::crd::all()[1].1.clone()).unwrap();
    let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    let template = |provider: Value| {
        json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "t"},
            "spec": {"metrics": [{"name": "m", "provider": provider}]}
        })
    };
    let prometheus = json!({"prometheus": {"address": "http://p:9090", "query": "up"}});
    assert!(kube::core::cel::Validator::new().validate(&schema, &template(prometheus.clone()), None).is_ok());
    let mut two = prometheus;
    two["web"] = json!({"url": "http://x"});
    let errors = kube::core::cel::Validator::new().validate(&schema, &template(two), None).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("exactly one of prometheus, cloudWatch, cloudWatchAlarm, web, datadog, newRelic, lambda or job")),
        "{errors:?}"
    );

    let new_relic =
        json!({"query": "SELECT count(*) FROM Transaction", "apiKey": {"name": "nr", "key": "personal-api-key"}, "accountId": "1234567"});
    assert!(kube::core::cel::Validator::new().validate(&schema, &template(json!({"newRelic": new_relic.clone()})), None).is_ok());
    let mut both_accounts = new_relic.clone();
    both_accounts["accountIdSecretKeyRef"] = json!({"name": "nr", "key": "account-id"});
    let errors = kube::core::cel::Validator::new().validate(&schema, &template(json!({"newRelic": both_accounts})), None).unwrap_err();
    assert!(errors.iter().any(|e| e.message.contains("exactly one of accountId or accountIdSecretKeyRef")), "{errors:?}");
    let mut both_places = new_relic;
    both_places["region"] = json!("EU");
    both_places["address"] = json!("https://proxy.example/graphql");
    let errors = kube::core::cel::Validator::new().validate(&schema, &template(json!({"newRelic": both_places})), None).unwrap_err();
    assert!(errors.iter().any(|e| e.message.contains("set one of address or region")), "{errors:?}");

    let lambda = json!({"lambda": {"functionArn": "smoke"}});
    let errors = kube::core::cel::Validator::new().validate(&schema, &template(lambda), None).unwrap_err();
    assert!(errors.iter().any(|e| e.message.contains("functionArn is the function's ARN")), "{errors:?}");
    let job = json!({"job": {"spec": {"backoffLimit": 0}}});
    let errors = kube::core::cel::Validator::new().validate(&schema, &template(job), None).unwrap_err();
    assert!(errors.iter().any(|e| e.message.contains("provider.job.spec needs a pod template")), "{errors:?}");

    let keys = json!({"apiKey": {"name": "dd", "key": "api"}, "applicationKey": {"name": "dd", "key": "app"}});
    let mut datadog = keys.clone();
    datadog["query"] = json!("avg:x{*}");
    assert!(kube::core::cel::Validator::new().validate(&schema, &template(json!({"datadog": datadog.clone()})), None).is_ok());
    let mut both = datadog;
    both["queries"] = json!({"a": "avg:x{*}"});
    let errors = kube::core::cel::Validator::new().validate(&schema, &template(json!({"datadog": both})), None).unwrap_err();
    assert!(errors.iter().any(|e| e.message.contains("exactly one of query or queries")), "{errors:?}");
    let mut loose = keys;
    loose["query"] = json!("avg:x{*}");
    loose["formula"] = json!("a / b");
    let errors = kube::core::cel::Validator::new().validate(&schema, &template(json!({"datadog": loose})), None).unwrap_err();
    assert!(errors.iter().any(|e| e.message.contains("formula combines named queries")), "{errors:?}");
}

#[test]
fn hooks_set_one_check_each_under_names_of_their_own() {
    let hook =
        |name: &str| json!({"name": name, "stage": "PostScaleUp", "lambda": {"functionArn": "arn:aws:lambda:us-east-1:1:function:f"}});
    let mut valid = canary_rollout();
    valid["spec"]["hooks"] = json!([hook("smoke"), hook("load")]);
    assert_eq!(refusal(&valid), "", "two hooks with names of their own pass");
    let mut twice = canary_rollout();
    twice["spec"]["hooks"] = json!([hook("smoke"), hook("smoke")]);
    assert!(refusal(&twice).contains("each hook needs a name of its own"), "{}", refusal(&twice));
    let mut both = canary_rollout();
    let mut two_checks = hook("smoke");
    two_checks["analysis"] = json!({"templates": [{"templateName": "t"}]});
    both["spec"]["hooks"] = json!([two_checks]);
    assert!(refusal(&both).contains("a hook sets exactly one of lambda, job or analysis"), "{}", refusal(&both));
}

#[test]
fn printer_columns_and_short_names() {
    let crd = crd::rollout();
    assert_eq!(crd.spec.names.short_names, Some(vec!["sro".to_string()]), "must not collide with Argo Rollouts' `ro`");
    let columns: Vec<String> = crd.spec.versions[0].additional_printer_columns.iter().flatten().map(|c| c.name.clone()).collect();
    assert_eq!(columns, ["Phase", "Step", "Weight", "Desired", "Updated", "Ready", "Available", "Age"]);
    let scale = crd.spec.versions[0].subresources.as_ref().unwrap().scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.workload.kubernetes.replicas");
}
