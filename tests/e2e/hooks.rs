//! Lifecycle hooks (`spec.hooks`) from the controller, at ECS's named stages, the same for a
//! Kubernetes canary and an ECS blue/green: Jobs run by the real Job controller (kwok finishes
//! their pods), and a Lambda function through the real AWS SDK against the runtime interface
//! emulator running a real handler process.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use sluice::api::{AnalysisPhase, AnalysisRun, RolloutPhase};

use crate::controller::{HOOK_FUNCTION, Harness};
use crate::scenarios::{EcsWorld, rollout};
use crate::support::scene::Scene;

fn job_hook(name: &str, stage: &str) -> Value {
    json!({"name": name, "stage": stage, "job": {"metadata": {"labels": {"hook": name}}, "spec": {"backoffLimit": 0,
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "check", "image": "check:1"}]}}}}})
}

fn lambda_hook(name: &str, stage: &str, details: Value) -> Value {
    json!({"name": name, "stage": stage, "lambda": {"functionArn": HOOK_FUNCTION, "timeout": "1m", "details": details}})
}

/// The hook runs of the rollout, by hook name (the `sluice.hook` argument), oldest first.
async fn hook_runs(s: &Scene) -> Vec<(String, AnalysisRun)> {
    let api: Api<AnalysisRun> = Api::namespaced(s.client.clone(), &s.ns);
    let mut runs = api.list(&ListParams::default().labels("sluice.dev/rollout=web")).await.unwrap().items;
    runs.sort_by_key(|r| r.metadata.creation_timestamp.clone().map(|t| t.0));
    runs.into_iter()
        .filter_map(|run| {
            let hook = run.spec.args.iter().find(|a| a.name == "sluice.hook").and_then(|a| a.value.clone())?;
            Some((hook, run))
        })
        .collect()
}

register_test!(540, a_kubernetes_canary_passes_its_hooks_stage_by_stage);
async fn a_kubernetes_canary_passes_its_hooks_stage_by_stage(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "hookscanary", &["web-stable", "web-canary"]).await;
    s.allow_aws(&[HOOK_FUNCTION]).await;
    let mut r = rollout(
        2,
        "web:1",
        json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary", "steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}}),
    );
    r.spec.hooks = serde_json::from_value(json!([
        job_hook("verify", "PostPromotion"),
        lambda_hook("smoke", "PostScaleUp", json!({"inProgress": "1"})),
        job_hook("pre", "PreScaleUp"),
    ]))
    .unwrap();
    s.create(&r).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    assert!(hook_runs(&s).await.is_empty(), "the first revision goes straight to stable, without hooks");

    s.set_image("web:2").await;
    s.wait_replicas(&[("web:2", 2)]).await;
    let healthy = s.wait_phase(RolloutPhase::Healthy).await;
    let canary = healthy.status.as_ref().and_then(|st| st.stable_revision.clone()).unwrap();

    let runs = hook_runs(&s).await;
    let order: Vec<&str> = runs.iter().map(|(hook, _)| hook.as_str()).collect();
    assert_eq!(order, ["pre", "smoke", "verify"], "stage by stage, whatever the order in the spec");
    for (hook, run) in &runs {
        let status = run.status.as_ref().unwrap();
        assert_eq!(status.phase, AnalysisPhase::Successful, "{hook}: {status:?}");
    }
    // Nothing of the canary existed before its PreScaleUp hook had passed.
    let pre_done = runs[0].1.status.as_ref().unwrap().metric_results[0].measurements[0].finished_at.clone().unwrap().0;
    let sets: Api<ReplicaSet> = Api::namespaced(s.client.clone(), &s.ns);
    let canary_set = sets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|rs| rs.metadata.labels.as_ref().and_then(|l| l.get("sluice.dev/revision")) == Some(&canary))
        .expect("the canary's ReplicaSet");
    let made = canary_set.metadata.creation_timestamp.unwrap().0;
    assert!(made.as_second() >= pre_done.as_second(), "ReplicaSet made {made}, PreScaleUp passed {pre_done}");

    let calls: Vec<Value> = h.lambda.payloads(HOOK_FUNCTION).into_iter().filter(|p| p["namespace"] == json!(s.ns)).collect();
    assert_eq!(calls.len(), 2, "IN_PROGRESS, then SUCCEEDED: {calls:#?}");
    let args = &calls[0]["args"];
    assert_eq!((args["sluice.hook"].as_str(), args["sluice.lifecycleStage"].as_str()), (Some("smoke"), Some("PostScaleUp")));
    assert_eq!((args["sluice.rollout"].as_str(), args["sluice.canaryRevision"].as_str()), (Some("web"), Some(canary.as_str())));
}

register_test!(545, an_ecs_blue_green_whose_hook_fails_after_the_switch_goes_back_to_blue);
async fn an_ecs_blue_green_whose_hook_fails_after_the_switch_goes_back_to_blue(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "hooksecs", &[]).await;
    let world = EcsWorld::new(&h, &format!("hooksecs-{}", std::process::id())).await;
    let test_listener = world.test_listener().await;
    world.allow_in(&s, &[&test_listener, HOOK_FUNCTION]).await;
    let v1 = world.task_definition("orders:1").await;
    let mut rollout = world.rollout(&v1);
    let spec = &mut rollout.spec;
    spec.traffic.as_mut().unwrap().alb.as_mut().unwrap().test_listener_arn = Some(test_listener.clone());
    spec.strategy = serde_json::from_value(json!({"blueGreen": {"activeService": "orders", "scaleDownDelaySeconds": 0}})).unwrap();
    spec.hooks = serde_json::from_value(json!([
        lambda_hook("tested", "PostTestTrafficShift", json!({})),
        lambda_hook("verify", "PostProductionTrafficShift", json!({"outcome": "FAILED"})),
    ]))
    .unwrap();
    s.create(&rollout).await;
    s.wait_phase(RolloutPhase::Healthy).await;

    let v2 = world.task_definition("orders:2").await;
    let world = Arc::new(world);
    let production = EcsWorld::record_weights(&world);
    EcsWorld::set_task_definition(&s, &v2).await;
    let degraded = s.wait_phase(RolloutPhase::Degraded).await;
    let message = degraded.status.as_ref().and_then(|st| st.message.clone()).unwrap_or_default();
    assert!(message.contains("hook verify (PostProductionTrafficShift) failed"), "{message}");
    assert!(message.contains(r#""hookStatus":"FAILED""#), "the function's answer is quoted: {message}");
    assert_eq!(world.weights().await, (100, 0), "production back on blue");
    assert_eq!(production.stop(), vec![(100, 0), (0, 100), (100, 0)], "switched once, then back once");

    let stages: Vec<(String, String)> = h
        .lambda
        .payloads(HOOK_FUNCTION)
        .into_iter()
        .filter(|p| p["namespace"] == json!(s.ns))
        .map(|p| (p["args"]["sluice.hook"].as_str().unwrap().to_string(), p["args"]["sluice.lifecycleStage"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        stages,
        [("tested".to_string(), "PostTestTrafficShift".to_string()), ("verify".to_string(), "PostProductionTrafficShift".to_string())],
        "each hook called once, in stage order"
    );
}
