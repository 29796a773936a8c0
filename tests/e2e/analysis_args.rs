//! Analysis timing and limits written as `{{args.NAME}}`, as Argo users write them: the API
//! server admits the reference and refuses anything else, and each AnalysisRun takes the values
//! its Rollout passes; a value that is not a number errs the run and aborts the Rollout, saying
//! which field and value.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};
use sluice::api::{AnalysisPhase, AnalysisRun, AnalysisTemplate, IntOrArg, RolloutPhase};

use crate::controller::Harness;
use crate::scenarios::rollout;
use crate::support::scene::Scene;

/// A web metric whose count, interval and failure limit are the Rollout's to choose.
fn templated_metric(url: &str) -> Value {
    json!({"name": "reachable", "count": "{{args.samples}}", "interval": "{{args.every}}",
        "failureLimit": "{{args.tolerated}}", "successCondition": "result == 1.0",
        "provider": {"web": {"url": url, "timeout": "10s"}}})
}

fn template_object(metric: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "reachable"},
        "spec": {"args": [{"name": "samples"}, {"name": "every"}, {"name": "tolerated", "value": "0"}], "metrics": [metric]}
    }))
    .unwrap()
}

/// A canary at 50 % analysed with `samples` and `every` passed as arguments.
fn analysed(samples: &str, every: &str) -> sluice::api::Rollout {
    rollout(
        2,
        "web:1",
        json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary", "steps": [
            {"setWeight": 50},
            {"analysis": {"templates": [{"templateName": "reachable"}],
                "args": [{"name": "samples", "value": samples}, {"name": "every", "value": every}]}}
        ]}}),
    )
}

async fn run_of(s: &Scene) -> AnalysisRun {
    let api: Api<AnalysisRun> = Api::namespaced(s.client.clone(), &s.ns);
    let runs = api.list(&ListParams::default().labels("sluice.dev/rollout=web")).await.unwrap().items;
    let [run] = runs.as_slice() else { panic!("one run expected: {runs:?}") };
    run.clone()
}

register_test!(485, templated_analysis_fields_take_each_rollouts_values);
pub async fn templated_analysis_fields_take_each_rollouts_values(h: Arc<Harness>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = Router::new().route(
        "/ok",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { "1" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ok", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let services = ["web-stable", "web-canary"];
    let (good, bad) = tokio::join!(Scene::new(&h.stack, "argsgood", &services), Scene::new(&h.stack, "argsbad", &services));

    // The API server admits a reference and refuses anything else, naming the field.
    let templates: Api<DynamicObject> =
        Api::namespaced_with(good.client.clone(), &good.ns, &kube::api::ApiResource::erase::<AnalysisTemplate>(&()));
    for (field, value, expected) in [
        ("count", json!("three"), "count is a number from 1, or `{{args.NAME}}`"),
        ("count", json!(0), "count is a number from 1"),
        ("failureLimit", json!(-2), "failureLimit is a number from -1"),
        ("interval", json!("{{args.every}}s"), "interval"),
    ] {
        let mut metric = templated_metric(&url);
        metric[field] = value.clone();
        let refused = templates.create(&PostParams::default(), &template_object(metric)).await.expect_err(field);
        assert!(refused.to_string().contains(expected), "{field}: {value}: {refused}");
    }
    for s in [&good, &bad] {
        let api: Api<DynamicObject> =
            Api::namespaced_with(s.client.clone(), &s.ns, &kube::api::ApiResource::erase::<AnalysisTemplate>(&()));
        api.create(&PostParams::default(), &template_object(templated_metric(&url))).await.expect("a templated template is admitted");
    }

    good.create(&analysed("3", "1s")).await;
    bad.create(&analysed("three", "1s")).await;
    tokio::join!(good.wait_phase(RolloutPhase::Healthy), bad.wait_phase(RolloutPhase::Healthy));
    tokio::join!(good.set_image("web:2"), bad.set_image("web:2"));
    let (_, degraded) = tokio::join!(
        async {
            good.wait_phase(RolloutPhase::Healthy).await;
            good.wait_replicas(&[("web:2", 2)]).await;
        },
        bad.wait_phase(RolloutPhase::Degraded)
    );

    let run = run_of(&good).await;
    let metric = &run.spec.metrics[0];
    assert_eq!((metric.count.clone(), metric.failure_limit.clone()), (Some(IntOrArg::Int(3)), Some(IntOrArg::Int(0))), "{metric:?}");
    assert_eq!(metric.interval.as_ref().map(|d| d.0.as_str()), Some("1s"));
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, AnalysisPhase::Successful, "{status:?}");
    assert_eq!(status.metric_results[0].count, 3, "three measurements, as the Rollout asked: {status:?}");
    assert!(hits.load(Ordering::SeqCst) >= 3);

    let failed = run_of(&bad).await;
    let expected = "count is `three`, not a whole number of at least 1";
    let failed_status = failed.status.clone().unwrap();
    assert_eq!(failed_status.phase, AnalysisPhase::Error, "{failed_status:?}");
    assert!(failed_status.message.as_deref().unwrap_or_default().contains(expected), "{failed_status:?}");
    let said = degraded.status.as_ref().and_then(|st| st.message.clone()).unwrap_or_default();
    assert!(said.contains(expected) && said.contains("metric reachable"), "{said}");
    bad.wait_replicas(&[("web:1", 2)]).await;
    server.abort();
}

register_test!(487, the_canary_target_group_argument_follows_the_ecs_swap_and_fails_the_run);
/// A CloudWatch metric on the current canary target group (`{{args.sluice.canaryTargetGroup}}`)
/// after an ECS promotion swapped the groups' roles: v2 promoted onto green, so v3's canary
/// runs on blue. Blue answers 5xx, green does not: the run reads blue, fails, and the rollout
/// goes back to v2 on green.
pub async fn the_canary_target_group_argument_follows_the_ecs_swap_and_fails_the_run(h: Arc<Harness>) {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    use kube::api::{Patch, PatchParams};
    use sluice::engine::builtins::{load_balancer_dimension, target_group_dimension};

    let s = Scene::new(&h.stack, "builtin-args", &[]).await;
    let world = crate::scenarios::EcsWorld::new(&h, &format!("builtin-{}", std::process::id())).await;
    world.allow_in(&s, &[]).await;
    let template: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "target-5xx"},
        "spec": {"metrics": [{"name": "canary-5xx", "successCondition": "result < 5", "provider": {"cloudWatch": {
            "window": "10m", "metricDataQueries": [{"id": "errors", "metricStat": {
                "namespace": "AWS/ApplicationELB", "metricName": "HTTPCode_Target_5XX_Count", "period": 60, "stat": "Sum",
                "dimensions": [{"name": "TargetGroup", "value": "{{args.sluice.canaryTargetGroup}}"},
                               {"name": "LoadBalancer", "value": "{{args.sluice.loadBalancer}}"}]}}]}}}]}
    }))
    .unwrap();
    let resource = kube::discovery::ApiResource::erase::<AnalysisTemplate>(&());
    let templates: Api<DynamicObject> = Api::namespaced_with(s.client.clone(), &s.ns, &resource);
    templates.create(&PostParams::default(), &template).await.expect("template created");

    let v1 = world.task_definition("orders:1").await;
    let mut r = world.rollout(&v1);
    r.spec.strategy = serde_json::from_value(json!({"canary": {"scaleDownDelaySeconds": 0, "abortScaleDownDelaySeconds": 0,
        "steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}}))
    .unwrap();
    s.create(&r).await;
    s.wait("v1 Healthy", |r| r.status.as_ref().is_some_and(|st| st.phase == Some(RolloutPhase::Healthy))).await;
    let v2 = world.task_definition("orders:2").await;
    s.patch(json!({"spec": {"workload": {"ecs": {"taskDefinition": v2}}}})).await;
    crate::support::wait_for("v2 promoted onto green", crate::support::scene::DEADLINE * 2, || async {
        let r = s.rollouts.get("web").await.ok()?;
        let status = r.status?;
        let promoted = status.phase == Some(RolloutPhase::Healthy) && status.observed_generation == r.metadata.generation;
        (promoted && world.weights().await == (0, 100)).then_some(())
    })
    .await;

    // Blue, now the canary's group, answers 5xx; green, the stable one, does not.
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&h.stack.aws().to_builder().endpoint_url(&h.cloudwatch.address).build());
    let balancer = load_balancer_dimension(&world.listener).expect("a listener ARN");
    for (group, errors) in [(&world.blue, 50.0), (&world.green, 0.0)] {
        let datum = MetricDatum::builder()
            .metric_name("HTTPCode_Target_5XX_Count")
            .dimensions(Dimension::builder().name("TargetGroup").value(target_group_dimension(group).unwrap()).build())
            .dimensions(Dimension::builder().name("LoadBalancer").value(&balancer).build())
            .value(errors)
            .timestamp(DateTime::from_millis(jiff::Timestamp::now().as_millisecond() - 60_000))
            .build();
        cloudwatch.put_metric_data().namespace("AWS/ApplicationELB").metric_data(datum).send().await.expect("PutMetricData");
    }
    let steps = json!({"spec": {"strategy": {"canary": {"steps": [{"setWeight": 25},
        {"analysis": {"templates": [{"templateName": "target-5xx"}]}}, {"pause": {}}]}}}});
    s.rollouts.patch("web", &PatchParams::default(), &Patch::Merge(&steps)).await.expect("steps patched");
    let v3 = world.task_definition("orders:3").await;
    s.patch(json!({"spec": {"workload": {"ecs": {"taskDefinition": v3}}}})).await;

    let aborted = s
        .wait("v3 aborted by its analysis", |r| r.status.as_ref().is_some_and(|st| st.abort && st.phase == Some(RolloutPhase::Degraded)))
        .await;
    let message = aborted.status.and_then(|st| st.message).unwrap_or_default();
    assert!(message.contains("canary-5xx"), "the abort names the metric: {message}");
    let runs: Api<AnalysisRun> = Api::namespaced(s.client.clone(), &s.ns);
    let listed = runs.list(&ListParams::default()).await.unwrap().items;
    let run = listed.iter().find(|r| r.status.as_ref().is_some_and(|st| st.phase == AnalysisPhase::Failed)).expect("a failed run");
    let arg = |name: &str| run.spec.args.iter().find(|a| a.name == name).and_then(|a| a.value.clone());
    assert_eq!(arg("sluice.canaryTargetGroup").as_deref(), target_group_dimension(&world.blue), "after the swap the canary is on blue");
    assert_eq!(arg("sluice.stableTargetGroupArn").as_deref(), Some(world.green.as_str()));
    crate::support::wait_for("traffic back on green", crate::support::scene::DEADLINE, || async {
        (world.weights().await == (0, 100)).then_some(())
    })
    .await;
}
