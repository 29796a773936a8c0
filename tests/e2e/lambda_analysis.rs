//! Analysis by Lambda function (`provider.lambda`) from the controller, through the real AWS
//! SDK, against AWS's runtime interface emulator running a real handler process (moto's Lambda
//! needs Docker). A function is invoked only when the run's namespace is allowed its ARN, as
//! every AWS resource a tenant names: the controller's identity is not theirs to spend.

use std::sync::Arc;

use kube::api::{Api, DynamicObject, ListParams, PostParams};
use serde_json::json;
use sluice::api::{AnalysisPhase, AnalysisRun, AnalysisTemplate, RolloutPhase};

use crate::controller::{HOOK_FUNCTION, Harness};
use crate::scenarios::rollout;
use crate::support::scene::Scene;

fn lambda_template() -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "smoke"},
        "spec": {"metrics": [{"name": "smoke-hook", "provider": {"lambda": {
            "functionArn": HOOK_FUNCTION, "timeout": "1m",
            "details": {"inProgress": "1", "revision": "{{args.sluice.canaryRevision}}"}
        }}}]}
    }))
    .unwrap()
}

fn analysed() -> sluice::api::Rollout {
    rollout(
        2,
        "web:1",
        json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary", "steps": [
            {"setWeight": 50}, {"analysis": {"templates": [{"templateName": "smoke"}]}}
        ]}}),
    )
}

async fn the_run(s: &Scene) -> AnalysisRun {
    let api: Api<AnalysisRun> = Api::namespaced(s.client.clone(), &s.ns);
    let runs = api.list(&ListParams::default().labels("sluice.dev/rollout=web")).await.unwrap().items;
    let [run] = runs.as_slice() else { panic!("one run expected: {runs:?}") };
    run.clone()
}

register_test!(530, a_lambda_metric_is_invoked_only_where_its_arn_is_allowed);
async fn a_lambda_metric_is_invoked_only_where_its_arn_is_allowed(h: Arc<Harness>) {
    let services = ["web-stable", "web-canary"];
    let (allowed, refused) = tokio::join!(Scene::new(&h.stack, "lambdaok", &services), Scene::new(&h.stack, "lambdano", &services));
    allowed.allow_aws(&[HOOK_FUNCTION]).await;
    for s in [&allowed, &refused] {
        let api = Api::<DynamicObject>::namespaced_with(s.client.clone(), &s.ns, &kube::api::ApiResource::erase::<AnalysisTemplate>(&()));
        api.create(&PostParams::default(), &lambda_template()).await.expect("the template is admitted");
        s.create(&analysed()).await;
    }
    tokio::join!(allowed.wait_phase(RolloutPhase::Healthy), refused.wait_phase(RolloutPhase::Healthy));
    tokio::join!(allowed.set_image("web:2"), refused.set_image("web:2"));
    let (promoted, degraded) = tokio::join!(
        async {
            allowed.wait_replicas(&[("web:2", 2)]).await;
            allowed.wait_phase(RolloutPhase::Healthy).await
        },
        refused.wait_phase(RolloutPhase::Degraded)
    );

    let run = the_run(&allowed).await;
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, AnalysisPhase::Successful, "{status:?}");
    assert_eq!(status.metric_results[0].count, 1, "one measurement of two calls: {status:?}");
    let calls: Vec<_> = h.lambda.payloads(HOOK_FUNCTION).into_iter().filter(|p| p["namespace"] == json!(allowed.ns)).collect();
    assert_eq!(calls.len(), 2, "IN_PROGRESS once, then SUCCEEDED: {calls:#?}");
    assert_eq!(calls[1]["hookDetails"], json!({"calls": 1}), "the second call is given what the first answered");
    let canary = promoted.status.as_ref().and_then(|st| st.stable_revision.clone()).expect("the promoted revision");
    assert_eq!(calls[0]["args"]["sluice.canaryRevision"], json!(canary), "the payload names the canary's revision: {calls:#?}");
    assert_eq!(calls[0]["details"]["revision"], json!(canary), "details take the run's arguments");
    assert_eq!(calls[0]["analysisRun"], json!(run.metadata.name.clone().unwrap()));

    let never: Vec<_> = h.lambda.payloads(HOOK_FUNCTION).into_iter().filter(|p| p["namespace"] == json!(refused.ns)).collect();
    assert!(never.is_empty(), "a namespace not allowed the ARN never invokes it: {never:#?}");
    let errored = the_run(&refused).await.status.unwrap();
    assert_eq!(errored.phase, AnalysisPhase::Error, "{errored:?}");
    let said = degraded.status.as_ref().and_then(|st| st.message.clone()).unwrap_or_default();
    assert!(said.contains("provider.lambda.functionArn") && said.contains("not allowed to use"), "{said}");
    refused.wait_replicas(&[("web:1", 2)]).await;
}
